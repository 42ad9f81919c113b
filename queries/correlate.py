"""Unit-level correlations with a token covariate, out of core (METHODS.md, "Correlations
with sequence and tree statistics", unit-level).

For every unit of a site, Pearson and Spearman correlation with a covariate such as
``depth``, ``position`` or ``sentence_length`` over the selected tokens, with two-sided
p-values and Benjamini-Hochberg adjusted q-values.

Pearson is one pass: each block yields its count, means, sums of squared deviations
and co-deviation (computed in float32 on centred sub-blocks, see :func:`value_moments`),
merged with Chan et al.'s pairwise update in float64.

Spearman is Pearson on ranks, and a unit's ranks need all its values, so per-chunk
ranks would be wrong. Sites are stored in 16 bits (float16 or bfloat16), so a unit
takes at most 65,536 distinct values: a first pass counts, per unit, how often each
16-bit pattern occurs; the counts give every value's exact mid-rank (ties averaged,
-0 equal to +0); a second pass replaces values by those ranks and runs the Pearson
pass. Memory is units x 65,536 counts, independent of the number of rows. float32
sites are ranked by sorting groups of units that fit a memory budget.

Every pass is a dask graph of per-block partial results merged by a tree
(``queries.reduce``), so it runs unchanged on the threaded scheduler or a
``dask.distributed`` client.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import torch
from dask.delayed import delayed
from scipy import stats

import actstore
from actstore.errors import SchemaError
from queries.reduce import block_bounds, blocks, broadcast, compute, tree
from queries.select import natural_key, numeric_column

RANK_BUDGET_BYTES = 256 << 20
SUB_ROWS = 2048
_BINS = 1 << 16

Moments = tuple[float, np.ndarray, float, np.ndarray, float, np.ndarray]


def block_moments(x: np.ndarray, y: np.ndarray) -> Moments:
    """(n, mean_x, mean_y, M2_x, M2_y, C_xy) of one block; x is rows x units."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = float(len(y))
    if n == 0:
        zeros = np.zeros(x.shape[1])
        return 0.0, zeros, 0.0, zeros, 0.0, zeros
    mx, my = x.mean(axis=0), float(y.mean())
    dx, dy = x - mx, y - my
    return n, mx, my, np.einsum("ij,ij->j", dx, dx), float(dy @ dy), dy @ dx


def value_moments(x: np.ndarray, y: np.ndarray) -> Moments:
    """:func:`block_moments` of site values, computed in float32 by torch.

    The block is decoded ``SUB_ROWS`` rows at a time into one reused float32 buffer,
    centred on that sub-block's means (so the float32 sums of squares and products keep
    about six significant digits, more than a 16-bit site stores) and the sub-blocks'
    moments are merged in float64. Several times faster than float64 numpy, which
    must first convert float16 at about 1 GB/s.
    """
    values = torch.from_numpy(np.ascontiguousarray(x))
    target = np.asarray(y, np.float64)
    total: Moments = block_moments(np.zeros((0, values.shape[1])), np.zeros(0))
    shape = (min(SUB_ROWS, len(target)), values.shape[1])
    buffer, squares = torch.empty(shape), torch.empty(shape)
    for lo in range(0, len(target), SUB_ROWS):
        xs = buffer[: min(SUB_ROWS, len(target) - lo)]
        xs.copy_(values[lo : lo + len(xs)])
        mx = xs.mean(dim=0)
        xs -= mx
        ys = target[lo : lo + len(xs)]
        my = float(ys.mean())
        dy = ys - my
        dy32 = torch.from_numpy(dy.astype(np.float32))
        part = (
            float(len(xs)),
            mx.double().numpy(),
            my,
            # not einsum: torch runs "ij,ij->j" as a batched product, 40x slower
            torch.mul(xs, xs, out=squares[: len(xs)]).sum(dim=0).double().numpy(),
            float(dy @ dy),
            (dy32 @ xs).double().numpy(),
        )
        total = merge_moments(total, part)
    return total


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Chan, Golub and LeVeque's pairwise update of two blocks' moments."""
    na, mxa, mya, sxa, sya, ca = a
    nb, mxb, myb, sxb, syb, cb = b
    n = na + nb
    if nb == 0:
        return a
    if na == 0:
        return b
    ddx, ddy = mxb - mxa, myb - mya
    w = na * nb / n
    return (
        n,
        mxa + ddx * nb / n,
        mya + ddy * nb / n,
        sxa + sxb + ddx * ddx * w,
        sya + syb + ddy * ddy * w,
        ca + cb + ddx * ddy * w,
    )


def pearson_from_moments(m: Moments) -> tuple[np.ndarray, np.ndarray]:
    """Correlation per unit and its two-sided p-value (t test, n - 2 degrees of freedom)."""
    n, _, _, sxx, syy, sxy = m
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0)
        t = r * np.sqrt((n - 2) / np.maximum(1.0 - r * r, 1e-300))
    p = 2 * stats.t.sf(np.abs(t), n - 2)
    return r, np.where(np.isnan(r), np.nan, p)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN stays NaN."""
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    values = p[ok]
    order = np.argsort(values)
    ranked = values[order] * len(values) / np.arange(1, len(values) + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(values)
    out[order] = np.minimum(adjusted, 1.0)
    q[ok] = out
    return q


def _order_keys(bits: np.ndarray) -> np.ndarray:
    """16-bit float patterns -> integers in the order of their values (-0 equals +0)."""
    bits = np.where(bits == 0x8000, 0, bits).astype(np.int64)
    return np.where(bits & 0x8000, 0xFFFF - bits, bits | 0x8000)


def _bits16(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.float16:
        return block.view(np.uint16)
    return (np.ascontiguousarray(block, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _histogram(block: np.ndarray) -> np.ndarray:
    """Per unit, how often each 16-bit key occurs in the block (int32: < 2**31 rows)."""
    keys = np.ascontiguousarray(_order_keys(_bits16(block)).T)
    out = np.empty((keys.shape[0], _BINS), np.int32)
    for u, column in enumerate(keys):
        out[u] = np.bincount(column, minlength=_BINS)
    return out


def _rank_table(counts: np.ndarray) -> np.ndarray:
    """Mid-rank (1-based, ties averaged) of every 16-bit key, per unit."""
    before = np.cumsum(counts, axis=1) - counts
    return np.asarray(before + (counts + 1) / 2.0)


def _ranked_moments(block: np.ndarray, y_rank: np.ndarray, table: np.ndarray) -> Moments:
    """Moments of (rank of x, rank of y); one unit at a time so its table stays in cache."""
    keys = np.ascontiguousarray(_order_keys(_bits16(block)).T)
    ranks = np.empty(keys.shape[::-1], np.float64)
    for u, column in enumerate(keys):
        ranks[:, u] = table[u, column]
    return block_moments(ranks, y_rank)


def unit_correlations(
    store: actstore.Store,
    site: str,
    covariate: str,
    where: str | None = None,
    *,
    spearman: bool = True,
) -> pd.DataFrame:
    """Pearson and Spearman correlation of every unit of ``site`` with a token column.

    Parameters
    ----------
    store
        An open store.
    site
        Site name (aligned to ``tokens``).
    covariate
        A numeric column of ``tokens``: ``depth``, ``position``, ``sentence_length`` ...
    where
        Optional SQL condition selecting tokens (rows with a NULL covariate are left out).
    spearman
        Also compute the exact Spearman correlation (a second and third pass).

    Returns
    -------
    pandas.DataFrame
        One row per unit and metric: ``site, target, unit, metric, value, p, q, n``.

    Examples
    --------
    >>> unit_correlations(store, "minilm/layer.6", "depth", "upos = 'NOUN'")  # doctest: +SKIP
    """
    frame = numeric_column(store, covariate, where)
    rows, y = frame["row"].to_numpy(np.int64), frame["y"].to_numpy(np.float64)
    if rows.size < 3:
        raise SchemaError(f"only {rows.size} tokens selected; correlations need at least 3")
    acts = store.acts(site, rows, dtype=None)
    x_blocks = blocks(acts)
    bounds = block_bounds(acts)
    y_blocks = [y[a:b] for a, b in itertools.pairwise(bounds)]
    parts = [delayed(value_moments)(xb, yb) for xb, yb in zip(x_blocks, y_blocks, strict=True)]
    r, p = pearson_from_moments(compute(tree(parts, merge_moments))[0])
    results = [("pearson", r, p)]
    if spearman:
        rho, p_s = _spearman(acts, y, bounds)
        results.append(("spearman", rho, p_s))
    n_units = acts.sizes["unit"]
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "site": site,
                    "target": covariate,
                    "unit": np.arange(n_units),
                    "metric": metric,
                    "value": value,
                    "p": pval,
                    "q": benjamini_hochberg(pval),
                    "n": rows.size,
                }
            )
            for metric, value, pval in results
        ],
        ignore_index=True,
    )


def _spearman(acts: Any, y: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact Spearman per unit, by groups of units whose rank tables fit the budget."""
    y_rank = stats.rankdata(y)
    rank_blocks = [y_rank[a:b] for a, b in itertools.pairwise(bounds)]
    n_units = acts.sizes["unit"]
    sixteen_bit = acts.attrs["stored_dtype"] in ("float16", "bfloat16")
    per_unit = _BINS * 8 if sixteen_bit else len(y) * 8
    group = max(1, RANK_BUDGET_BYTES // per_unit)
    rho, p = np.empty(n_units), np.empty(n_units)
    for u in range(0, n_units, group):
        part = acts.isel(unit=slice(u, u + group))
        if sixteen_bit:
            moments = _ranked_pass(blocks(part), rank_blocks)
        else:  # float32: sort the group's columns in memory
            ranks = stats.rankdata(part.values, axis=0)
            moments = block_moments(ranks, y_rank)
        rho[u : u + group], p[u : u + group] = pearson_from_moments(moments)
    return rho, p


def _ranked_pass(x_blocks: list[Any], rank_blocks: list[np.ndarray]) -> Moments:
    """Pass 1: value counts per unit; pass 2: Pearson moments of (rank x, rank y)."""
    counts = tree([delayed(_histogram)(xb) for xb in x_blocks], np.add)
    table = _rank_table(compute(counts)[0])
    table_d = broadcast(table)  # (units x 65,536): shared, never hashed or copied per block
    parts = [
        delayed(_ranked_moments)(xb, rb, table_d)
        for xb, rb in zip(x_blocks, rank_blocks, strict=True)
    ]
    result: Moments = compute(tree(parts, merge_moments))[0]
    return result


def top_units(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` units of largest |value| per site and metric, strongest first."""
    ranked = table.assign(size=table["value"].abs()).sort_values("size", ascending=False)
    top = ranked.groupby(["site", "metric"], sort=False).head(k).drop(columns="size")
    return top.sort_values(["site", "metric", "value"], key=_order).reset_index(drop=True)


def _order(column: pd.Series) -> pd.Series:
    if column.name == "site":
        return column.map(lambda s: str(natural_key(s)))
    if column.name == "value":
        return -column.abs()
    return column
