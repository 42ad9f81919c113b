"""Block kernels for means, variances and co-deviations that give the same bits whatever
the thread count.

Multithreaded reductions (torch's ``sum``, BLAS ``gemv`` and ``dot``) split their
work by the number of threads, so the order in which floats are added, and with it
the last bits of the result, changes with ``torch.set_num_threads``, the BLAS pool
and the scheduler a block runs on. Here every reduction is a single-threaded numpy
reduction in a fixed order (:func:`column_sums`), torch only decodes float16 (an
elementwise copy, exact on any thread count), and blocks are cut into sub-blocks at
fixed offsets: a block's moments depend on its values only. (Thread-free reductions
also cost nothing when the dask scheduler already keeps every core busy.) Merges
(:func:`merge_moments`) run in float64 in the engine's fixed tree order, so a whole
pass is reproducible bit for bit on threads, processes or a cluster.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

SUB_ROWS = 2048
GROUP = 128

Moments = tuple[float, np.ndarray, float, np.ndarray, float, np.ndarray]


def column_sums(values: np.ndarray) -> np.ndarray:
    """Sums over rows in a fixed order: float32 runs of ``GROUP`` rows, then float64.

    numpy reduces on one thread, row after row within a run, so the result depends on
    the values only; runs of 128 keep the float32 error near that of a pairwise sum.

    Examples
    --------
    >>> column_sums(np.ones((300, 2), np.float32))
    array([300., 300.])
    """
    rows, width = values.shape
    full = rows - rows % GROUP
    runs = values[:full].reshape(-1, GROUP, width).sum(axis=1)
    total: np.ndarray = runs.sum(axis=0, dtype=np.float64)
    if full < rows:
        total += values[full:].sum(axis=0, dtype=np.float64)
    return total


def block_moments(x: np.ndarray, y: np.ndarray) -> Moments:
    """(n, mean_x, mean_y, M2_x, M2_y, C_xy) of one block in float64; x is rows x units.

    numpy reductions only (no BLAS), so the result does not depend on threads.

    Examples
    --------
    >>> n, mx, my, sxx, syy, sxy = block_moments(np.array([[1.0], [2.0], [3.0]]),
    ...                                          np.array([2.0, 4.0, 6.0]))
    >>> n, mx, my, sxx, syy, sxy
    (3.0, array([2.]), 4.0, array([2.]), 8.0, array([4.]))
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = float(len(y))
    if n == 0:
        zeros = np.zeros(x.shape[1])
        return 0.0, zeros, 0.0, zeros, 0.0, zeros
    mx, my = x.mean(axis=0), float(y.mean())
    dx, dy = x - mx, y - my
    return n, mx, my, (dx * dx).sum(axis=0), float((dy * dy).sum()), (dx * dy[:, None]).sum(axis=0)


def value_moments(x: np.ndarray, y: np.ndarray) -> Moments:
    """:func:`block_moments` of site values, computed in float32 by torch.

    The block is decoded ``SUB_ROWS`` rows at a time into a reused float32 buffer (by
    torch, several times faster than numpy's float16 conversion) and centred on that
    sub-block's mean, so the float32 products keep about six significant digits (more
    than a 16-bit site stores); the sub-blocks' moments are merged in float64. Every
    sum is :func:`column_sums`: the same bits on any thread count.

    Examples
    --------
    >>> x = np.array([[1.0, 0.0], [2.0, 1.0], [4.0, 0.0]], np.float16)
    >>> n, mx, my, sxx, syy, sxy = value_moments(x, np.array([1.0, 2.0, 3.0]))
    >>> n, mx.round(4).tolist(), sxy.round(4).tolist()
    (3.0, [2.3333, 0.3333], [3.0, 0.0])
    """
    values = torch.from_numpy(np.ascontiguousarray(x))
    target = np.asarray(y, np.float64)
    total: Moments = block_moments(np.zeros((0, values.shape[1])), np.zeros(0))
    shape = (min(SUB_ROWS, len(target)), values.shape[1])
    buffer, scratch = torch.empty(shape), np.empty(shape, np.float32)
    for lo in range(0, len(target), SUB_ROWS):
        rows = min(SUB_ROWS, len(target) - lo)
        decoded = buffer[:rows]
        decoded.copy_(values[lo : lo + rows])  # float16 -> float32 in torch: fast, exact
        xs, work = decoded.numpy(), scratch[:rows]
        mean = column_sums(xs) / rows
        xs -= mean.astype(np.float32)
        ys = target[lo : lo + rows]
        my = float(ys.mean())
        dy = ys - my
        part = (
            float(rows),
            mean,
            my,
            column_sums(np.multiply(xs, xs, out=work)),
            float((dy * dy).sum()),
            column_sums(np.multiply(xs, dy.astype(np.float32)[:, None], out=work)),
        )
        total = merge_moments(total, part)
    return total


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Chan, Golub and LeVeque's pairwise update of two blocks' moments.

    Examples
    --------
    >>> x, y = np.arange(6.0)[:, None] ** 2, np.arange(6.0)
    >>> merged = merge_moments(block_moments(x[:2], y[:2]), block_moments(x[2:], y[2:]))
    >>> np.allclose(merged[5], block_moments(x, y)[5])
    True
    """
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
    """Correlation per unit and its two-sided p-value (t test, n - 2 degrees of freedom).

    Examples
    --------
    >>> x = np.array([[1.0], [2.0], [3.0], [5.0]])
    >>> r, p = pearson_from_moments(block_moments(x, np.array([1.0, 3.0, 2.0, 5.0])))
    >>> r.round(4).tolist(), p.round(4).tolist()
    ([0.8857], [0.1143])
    """
    n, _, _, sxx, syy, sxy = m
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0)
        t = r * np.sqrt((n - 2) / np.maximum(1.0 - r * r, 1e-300))
    p = 2 * stats.t.sf(np.abs(t), n - 2)
    return r, np.where(np.isnan(r), np.nan, p)
