"""Compiled block kernels (numba): one pass over a block, one thread, a fixed order.

Each kernel loops over rows in order and over units innermost, so the compiler
vectorises across units and every unit's arithmetic is the same sequence of IEEE
operations whatever the block's other units, the thread count or the machine's core
count (no fast-math, no reassociation). Kernels release the GIL, so dask's threads run
them in parallel; they are compiled on first use and cached beside this module.

- :func:`moments`: sums for Pearson's r in one pass over float32 values: runs of
  :data:`RUN` rows are summed in float32 around a per-unit shift (the mean of the
  block's first run, :func:`column_mean`, so the float32 sums stay small) and added up
  in float64.
- :func:`transpose_units`, :func:`count_keys` and :func:`rank_sums`: exact Spearman on
  16-bit sites. Every value is one of 65,536 bit patterns, so per unit a table of how
  often each pattern occurs (and the sum of the covariate's centred ranks over the
  rows where it occurs) gives every value's mid-rank and the rank covariance without
  a second pass over the data. Counts and sums of half-integer ranks are exact, so the
  tables, and the correlations, do not depend on how the rows were split into tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

RUN = 256  # rows summed in float32 before the float64 running sum
N_KEYS = 1 << 16

F = TypeVar("F", bound=Callable[..., Any])


def _jit(function: F) -> F:
    """Compile ``function`` (nopython, GIL released, cached on disk)."""
    return cast(F, numba.njit(cache=True, nogil=True)(function))


@_jit
def moments(x: np.ndarray, dy: np.ndarray, shift: np.ndarray, sums: np.ndarray) -> None:
    """Add sum(x - shift), sum((x - shift)**2) and sum((x - shift) * dy) per unit to
    ``sums`` (float64, 3 x units), summing runs of :data:`RUN` rows in float32.

    ``x`` is rows x units float32 (C order), ``dy`` float64 per row, ``shift`` float32
    per unit (near the units' means, so the float32 sums stay small).
    """
    rows, units = x.shape
    a1 = np.empty(units, np.float32)
    a2 = np.empty(units, np.float32)
    a3 = np.empty(units, np.float32)
    for lo in range(0, rows, RUN):
        a1[:] = 0
        a2[:] = 0
        a3[:] = 0
        for r in range(lo, min(lo + RUN, rows)):
            d = np.float32(dy[r])
            for u in range(units):
                v = x[r, u] - shift[u]
                a1[u] += v
                a2[u] += v * v
                a3[u] += v * d
        for u in range(units):
            sums[0, u] += a1[u]
            sums[1, u] += a2[u]
            sums[2, u] += a3[u]


@_jit
def column_mean(x: np.ndarray) -> np.ndarray:
    """The mean of every column (float64 sums in row order), as float32."""
    rows, units = x.shape
    total = np.zeros(units)
    for r in range(rows):
        for u in range(units):
            total[u] += x[r, u]
    out = np.empty(units, np.float32)
    for u in range(units):
        out[u] = np.float32(total[u] / max(rows, 1))
    return out


@_jit
def transpose_units(keys: np.ndarray, first_unit: int, out: np.ndarray, at: int) -> None:
    """``out[g, at + r] = keys[r, first_unit + g]``: a block's units, one row each."""
    rows = keys.shape[0]
    group = out.shape[0]
    for r0 in range(0, rows, 64):  # 64-row tiles: the tile's source lines stay in L1
        r1 = min(r0 + 64, rows)
        for g in range(group):
            for r in range(r0, r1):
                out[g, at + r] = keys[r, first_unit + g]


@_jit
def count_keys(
    keys: np.ndarray, n: int, weight: np.ndarray, counts: np.ndarray, sums: np.ndarray
) -> None:
    """Per unit (row of ``keys``), over its first ``n`` keys: how often each occurs, and
    the sum of ``weight`` over the places it occurs."""
    for g in range(keys.shape[0]):
        row = keys[g]
        count = counts[g]
        total = sums[g]
        for i in range(n):
            k = row[i]
            count[k] += 1
            total[k] += weight[i]


@_jit
def rank_sums(
    counts: np.ndarray, sums: np.ndarray, order: np.ndarray, centre: float, out: np.ndarray
) -> None:
    """Per unit: sum of (mid-rank - centre)**2 over rows, and sum of (mid-rank - centre)
    times the summed weights; keys visited in value ``order``; ``out`` is 2 x units."""
    for g in range(counts.shape[0]):
        before = 0.0
        sxx = 0.0
        sxy = 0.0
        for j in range(order.size):
            k = order[j]
            c = counts[g, k]
            if c == 0:
                continue
            rank = before + (c + 1) / 2.0 - centre
            sxx += c * rank * rank
            sxy += rank * sums[g, k]
            before += c
        out[0, g] = sxx
        out[1, g] = sxy


def value_order() -> np.ndarray:
    """The 16-bit float patterns (float16 or bfloat16) from the most negative value to
    the largest; -0 (0x8000) is left out: it is counted as +0.

    Examples
    --------
    >>> values = value_order().astype(np.uint16).view(np.float16)
    >>> finite = values[np.isfinite(values)]
    >>> finite[[0, -1]].tolist(), bool(np.all(np.diff(finite) > 0))
    ([-65504.0, 65504.0], True)
    """
    return np.concatenate([np.arange(0xFFFF, 0x8000, -1), np.arange(0, 0x8000)]).astype(np.int64)
