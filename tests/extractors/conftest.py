"""Fixtures of the extractor tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny matrices: one thread is fastest, and immune to a busy machine's cores (and
    every run of a module's tests uses the same threads: the bytes of a matrix product
    may depend on how many share it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
