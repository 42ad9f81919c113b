"""Block kernels give the same bits whatever the thread count or the block's other units,
and the right numbers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from queries.moments import block_moments, merge_moments, value_moments


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """Restore torch's thread count after a test changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def sample(rows: int = 9000, units: int = 384) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    y = rng.integers(1, 12, rows).astype(np.float64)
    x = rng.normal(2, 3, (rows, units)) + 0.1 * y[:, None]
    return x.astype(np.float16), y


@pytest.mark.usefixtures("torch_threads")
def test_value_moments_do_not_depend_on_torch_threads() -> None:
    x, y = sample()
    results = []
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)
        results.append(value_moments(x, y))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_block_moments_do_not_depend_on_blas_threads() -> None:
    x, y = sample(5000, 64)
    x64 = x.astype(np.float64)
    with threadpool_limits(1):
        one = block_moments(x64, y)
    with threadpool_limits(2):
        two = block_moments(x64, y)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


def test_value_moments_match_float64_moments() -> None:
    x, y = sample()
    x64 = x.astype(np.float64)  # the float16 values, exactly
    n, mx, my, sxx, syy, sxy = value_moments(x, y)
    dx, dy = x64 - x64.mean(axis=0), y - y.mean()
    assert n == len(y)
    np.testing.assert_allclose(mx, x64.mean(axis=0), rtol=1e-6, atol=1e-6)
    assert my == pytest.approx(y.mean(), rel=1e-14)
    np.testing.assert_allclose(sxx, (dx**2).sum(axis=0), rtol=1e-5)
    assert syy == pytest.approx(float((dy**2).sum()), rel=1e-12)
    np.testing.assert_allclose(sxy, dx.T @ dy, rtol=1e-4, atol=1e-2)


def test_a_units_moments_do_not_depend_on_the_other_units() -> None:
    """Spearman's unit groups and column subsets must give each unit the same bits."""
    x, y = sample(3000, 37)
    whole = value_moments(x, y)
    for units in (slice(0, 1), slice(5, 22), slice(30, 37)):
        part = value_moments(np.ascontiguousarray(x[:, units]), y)
        for a, b in zip(whole, part, strict=True):
            np.testing.assert_array_equal(np.asarray(a)[units] if np.ndim(a) else a, b)


def test_value_moments_keep_precision_far_from_zero() -> None:
    """A unit with mean 1000 and spread 0.5 (float32 runs are summed around a shift)."""
    rng = np.random.default_rng(5)
    y = rng.normal(size=20000)
    x = (1000 + 0.5 * rng.normal(size=(20000, 3)) + 0.2 * y[:, None]).astype(np.float32)
    x64 = x.astype(np.float64)
    _, mx, _, sxx, _, sxy = value_moments(x, y)
    dx = x64 - x64.mean(axis=0)
    np.testing.assert_allclose(mx, x64.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sxx, (dx**2).sum(axis=0), rtol=1e-4)
    np.testing.assert_allclose(sxy, dx.T @ (y - y.mean()), rtol=1e-4)


def test_merges() -> None:
    x, y = sample(300, 4)
    x64 = x.astype(np.float64)
    merged = merge_moments(block_moments(x64[:100], y[:100]), block_moments(x64[100:], y[100:]))
    for a, b in zip(merged, block_moments(x64, y), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
