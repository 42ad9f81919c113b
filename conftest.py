"""Names the docstring examples use (``--doctest-modules``): a tiny real store.

Every doctest gets its own copy, so examples may write to it:

- ``store``: the first 30 sentences of UD English-EWT dev, open for writing, with two
  complete sites ``toy/layer.0`` and ``toy/layer.1`` (16 seeded random float16 units);
- ``store_path``: where that copy lies; ``tmp``: an empty folder of the test's own;
- ``sample_conllu``: the 30 sentences as a CoNLL-U file; ``actstore`` and ``np``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _pytest.doctest import DoctestItem

import actstore
from actstore.data import corpus_path


@pytest.fixture(scope="session")
def doctest_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("doctest")
    blocks = corpus_path("en_ewt", "dev").read_text(encoding="utf-8").split("\n\n")
    sample = root / "en_ewt-ud-sample.conllu"
    sample.write_text("\n\n".join(blocks[:30]) + "\n\n", encoding="utf-8")
    path = root / "template.actstore"
    rng = np.random.default_rng(0)
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [sample], corpus="en_ewt", lang="en", split="dev")
        n = store.n_rows("tokens")
        for layer in range(2):
            writer = store.create_site(
                f"toy/layer.{layer}", n_units=16, provenance={"model": "toy"}
            )
            writer.write(0, rng.standard_normal((n, 16)).astype(np.float16))
            writer.commit()
    return path, sample


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    if not isinstance(request.node, DoctestItem):
        yield
        return
    template, sample = request.getfixturevalue("doctest_template")
    namespace = request.getfixturevalue("doctest_namespace")
    path = shutil.copytree(template, tmp_path / "store.actstore")
    (tmp_path / "work").mkdir()
    store = actstore.open(path, mode="a")
    namespace.update(
        actstore=actstore, np=np, store=store, store_path=path, tmp=tmp_path / "work",
        sample_conllu=sample,
    )  # fmt: skip
    yield
    store.close()
