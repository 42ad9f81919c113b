"""Feeding a probe: standardisation sums over blocks, and mini-batches shuffled through
a pool of blocks (from memory or read from the store while the model trains)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator

import numpy as np
import torch

from queries.linear import Batches

POOL_ROWS = 32768
POOL_BYTES = 96 << 20  # a pool of wide rows holds fewer (it is copied once when cut)


def moments(x: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    x64 = torch.from_numpy(x).double().numpy()  # torch converts float16 fast
    return len(x64), x64.sum(axis=0), (x64 * x64).sum(axis=0)


def add(
    a: tuple[int, np.ndarray, np.ndarray], b: tuple[int, np.ndarray, np.ndarray]
) -> tuple[int, np.ndarray, np.ndarray]:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def scale(sums: tuple[int, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every unit from its count, sum and sum of squares."""
    n, total, squares = sums
    mean = total / n
    scale = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    scale[scale == 0] = 1.0
    return mean, scale


def pooled_batches(
    block: Callable[[int], np.ndarray],
    spans: list[slice],
    codes: np.ndarray,
    batch: int,
    rng: np.random.Generator,
) -> Batches:
    """Endless mini-batches: each epoch takes the blocks in a random order into a pool of
    about ``POOL_ROWS`` rows (fewer if they pass ``POOL_BYTES``), shuffles the pool and
    cuts it into batches; the rows left over start the next pool. ``block(i)`` gives
    block ``i`` (from memory, or read from the store while the model trains on the
    previous one): the batches are the same."""
    pool_x: list[np.ndarray] = []
    pool_y: list[np.ndarray] = []
    with concurrent.futures.ThreadPoolExecutor(1) as ahead:
        while True:
            order = rng.permutation(len(spans))
            pending = ahead.submit(block, order[0])
            for i, index in enumerate(order):
                x = pending.result()
                if i + 1 < len(order):
                    pending = ahead.submit(block, order[i + 1])
                pool_x.append(x)
                pool_y.append(codes[spans[index]])
                pool_rows = min(POOL_ROWS, max(1, POOL_BYTES // max(1, x[:1].nbytes)))
                if sum(len(p) for p in pool_x) >= max(pool_rows, batch) or i + 1 == len(order):
                    yield from _cut(pool_x, pool_y, batch, rng)


def _cut(
    pool_x: list[np.ndarray], pool_y: list[np.ndarray], batch: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffle the pool, yield its full batches and keep the remainder in the pool."""
    x, y = np.concatenate(pool_x), np.concatenate(pool_y)
    order = rng.permutation(len(x))
    full = len(x) - len(x) % batch if len(x) >= batch else len(x)
    for lo in range(0, full, batch):
        take = order[lo : lo + batch]
        yield x[take], y[take]
    rest = order[full:]
    pool_x[:] = [x[rest]] if rest.size else []
    pool_y[:] = [y[rest]] if rest.size else []
