"""Stores for the analysis tests: real MiniLM sites over a slice of EWT dev."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from extractors.transformer import ExtractOptions, extract


@pytest.fixture(scope="session")
def minilm_store(tmp_path_factory: pytest.TempPathFactory, ewt_slice: Path) -> Path:
    """The first 1,000 sentences of EWT dev with MiniLM's layer.0 and layer.3 (float16)."""
    path = tmp_path_factory.mktemp("minilm") / "ewt.actstore"
    shutil.copytree(ewt_slice, path)
    extract(path, ExtractOptions(model="minilm", sites="layer.[03]"))
    return path
