"""Block moments (means, variances, co-deviations) that give the same bits whatever the
thread count, and their merges.

Multithreaded reductions (torch's ``sum``, BLAS ``gemv`` and ``dot``) split their
work by the number of threads, so the order in which floats are added, and with it
the last bits of the result, changes with ``torch.set_num_threads``, the BLAS pool
and the scheduler a block runs on. Here a block's sums are one compiled single-threaded
pass in a fixed order (:func:`queries.kernels.moments`); torch only decodes float16
into a reused float32 buffer (an elementwise copy, exact on any thread count), so a
block's moments depend on its values only. Merges (:func:`merge_moments`) run in
float64 in the engine's fixed tree order, so a whole pass is reproducible bit for bit
on threads, processes or a cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from scipy import stats

from queries import kernels

Moments = tuple[float, np.ndarray, float, np.ndarray, float, np.ndarray]
PIECE_BYTES = 2 << 20  # float32 decoded and summed at a time (stays in cache)
_buffers = threading.local()


def as_float32(x: np.ndarray) -> np.ndarray:
    """``x`` (float16 or float32 site values) as C-ordered float32: itself if it already
    is, else converted by torch into a reused per-thread buffer (valid until this
    thread's next call; float64 would be rounded).

    Examples
    --------
    >>> as_float32(np.array([[1.5, -2.0]], np.float16)).tolist()
    [[1.5, -2.0]]
    """
    if x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    buffer: torch.Tensor | None = getattr(_buffers, "float32", None)
    if buffer is None or buffer.numel() < x.size:
        buffer = torch.empty(max(x.size, 1 << 16), dtype=torch.float32)
        _buffers.float32 = buffer
    out = buffer[: x.size].view(x.shape)
    out.copy_(torch.from_numpy(np.ascontiguousarray(x)))  # float16 -> float32: fast, exact
    return out.numpy()


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


def value_moments(x: np.ndarray | Iterable[np.ndarray], y: np.ndarray) -> Moments:
    """:func:`block_moments` of site values, summed in one compiled pass.

    ``x`` is a block (rows x units), or its rows in consecutive float32 pieces (a
    :class:`queries.engine.Stream` of the block). A block is decoded to float32 in
    pieces of about 2 MiB (:func:`as_float32`), as a stream delivers it, and each piece
    is summed while it is in cache (:func:`queries.kernels.moments`): runs of 256 rows
    in float32 around a per-unit shift near the mean (the first run's, so the sums keep
    about six significant digits, more than a 16-bit site stores), the runs in float64.
    Pieces are cut by the number of units only, so a block's moments depend on its
    values alone, whichever way they come.

    Examples
    --------
    >>> x = np.array([[1.0, 0.0], [2.0, 1.0], [4.0, 0.0]], np.float16)
    >>> n, mx, my, sxx, syy, sxy = value_moments(x, np.array([1.0, 2.0, 3.0]))
    >>> n, mx.round(4).tolist(), sxy.round(4).tolist()
    (3.0, [2.3333, 0.3333], [3.0, 0.0])
    """
    target = np.asarray(y, np.float64)
    n = float(target.size)
    my = float(target.mean()) if target.size else 0.0
    dy = target - my
    sums: np.ndarray | None = None
    shift = np.zeros(0, np.float32)
    start = 0
    for piece in _pieces(x) if isinstance(x, np.ndarray) else x:
        if sums is None:
            sums = np.zeros((3, piece.shape[1]))
            shift = kernels.column_mean(piece[: kernels.RUN])
        if start + len(piece) > dy.size:
            raise ValueError(f"value_moments: more rows of values than the {dy.size} of y")
        kernels.moments(piece, dy[start : start + len(piece)], shift, sums)
        start += len(piece)
    if start != dy.size:
        raise ValueError(f"value_moments: {start} rows of values for the {dy.size} of y")
    if sums is None or start == 0:
        zeros = np.zeros(x.shape[1] if isinstance(x, np.ndarray) else 0)
        return 0.0, zeros, 0.0, zeros, 0.0, zeros
    s1, s2, sxy = sums
    return (
        n,
        shift + s1 / n,
        my,
        s2 - s1 * s1 / n,
        float((dy * dy).sum()),
        sxy - s1 * (float(dy.sum()) / n),
    )


def _pieces(x: np.ndarray) -> Iterator[np.ndarray]:
    """A block as float32 pieces of about :data:`PIECE_BYTES`, as a stream cuts them."""
    step = max(1, PIECE_BYTES // (4 * x.shape[1]))  # as SiteReader.pieces cuts float32
    for lo in range(0, len(x), step):
        yield as_float32(x[lo : lo + step])


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
