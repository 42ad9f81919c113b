"""Stores made from real slices of UD English-EWT dev for the extractor tests."""

from __future__ import annotations

from pathlib import Path

import pytest

import actstore


def first_sentences(path: Path, n: int) -> str:
    """The first ``n`` sentences of a CoNLL-U file, verbatim."""
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return "\n\n".join(blocks[:n]) + "\n\n"


def slice_store(tmp: Path, source: Path, n: int) -> Path:
    conllu = tmp / f"en_ewt-ud-dev{n}.conllu"
    conllu.write_text(first_sentences(source, n), encoding="utf-8")
    with actstore.create(tmp / f"ewt{n}.actstore") as store:
        actstore.ingest_conllu(store, [conllu], corpus="en_ewt", lang="en", split="dev")
    return tmp / f"ewt{n}.actstore"


@pytest.fixture(scope="session")
def ewt_slice(tmp_path_factory: pytest.TempPathFactory, ewt_dev: Path) -> Path:
    """The first 1,000 sentences of EWT dev (about 12,000 words), no sites yet."""
    return slice_store(tmp_path_factory.mktemp("slice"), ewt_dev, 1000)


@pytest.fixture(scope="session")
def ewt_small(tmp_path_factory: pytest.TempPathFactory, ewt_dev: Path) -> Path:
    """The first 120 sentences of EWT dev, no sites yet."""
    return slice_store(tmp_path_factory.mktemp("small"), ewt_dev, 120)
