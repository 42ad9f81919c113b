"""Stores for the analysis tests.

Synthetic sites, written through ``Store.create_site``, wherever a test checks the
arithmetic against an independent computation; a real MiniLM store, built through the
registered ``extract`` verb (queries never import extractors), only where a real
model's representations are what is tested.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import actstore
from actstore.verbs import verb

N_UNITS = 384


def write_site(
    store: actstore.Store,
    name: str,
    values: np.ndarray,
    *,
    dtype: str = "float32",
    chunk_rows: int | None = None,
    **provenance: object,
) -> np.ndarray:
    """Write ``values`` as a complete float16 or float32 site; return them as stored
    (rounded to ``dtype``), computed here rather than read back."""
    writer = store.create_site(
        name, n_units=values.shape[1], dtype=dtype, chunk_rows=chunk_rows, provenance=provenance
    )
    writer.write(0, values)
    writer.commit()
    return values.astype(dtype).astype(np.float64)


SiteWriter = Callable[..., np.ndarray]


@pytest.fixture(scope="session")
def site_writer() -> SiteWriter:
    """:func:`write_site`, for test modules (conftest is not importable by name)."""
    return write_site


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory: pytest.TempPathFactory, ewt_slice: Path) -> Path:
    """The first 1,000 sentences of EWT dev with two synthetic float16 sites of 384 units,
    ``toy/layer.0`` and ``toy/layer.3`` (provenance: model toy, hidden_state 0 and 3).

    Each unit is a fixed random function of the word's lemma, part of speech and depth,
    plus noise, so type means, correlations and sentence dynamics all have something to
    find. Open it read-only; tests that write make their own copy.
    """
    path = tmp_path_factory.mktemp("toy") / "ewt.actstore"
    shutil.copytree(ewt_slice, path)
    rng = np.random.default_rng(5)
    with actstore.open(path, mode="a") as store:
        frame = store.sql("SELECT lemma, upos, depth FROM tokens ORDER BY row")
        lemma = frame["lemma"].astype("category").cat.codes.to_numpy()
        upos = frame["upos"].astype("category").cat.codes.to_numpy()
        depth = frame["depth"].to_numpy(np.float64)
        for layer in (0, 3):
            lexical = rng.normal(size=(lemma.max() + 1, N_UNITS))[lemma]
            grammatical = rng.normal(size=(upos.max() + 1, N_UNITS))[upos]
            slope = rng.normal(0, 0.2, N_UNITS)
            noise = rng.normal(size=(len(frame), N_UNITS))
            values = lexical + grammatical + depth[:, None] * slope + noise
            write_site(
                store, f"toy/layer.{layer}", values.astype(np.float32), dtype="float16",
                chunk_rows=2048, model="toy", hidden_state=layer,
            )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def minilm_store(tmp_path_factory: pytest.TempPathFactory, ewt_slice: Path) -> Path:
    """The first 1,000 sentences of EWT dev with MiniLM's layer.0 and layer.3 (float16),
    extracted through the registered ``extract`` verb."""
    path = tmp_path_factory.mktemp("minilm") / "ewt.actstore"
    shutil.copytree(ewt_slice, path)
    verb("extract")(store=path, model="minilm", sites="layer.[03]", quiet=True)
    return path


@pytest.fixture(scope="session")
def german_minilm_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 300 sentences of UD German-GSD dev (4,203 words) with MiniLM's layer.3,
    the case the probing issue was reported on."""
    from actstore.data import corpus_path

    folder = tmp_path_factory.mktemp("german")
    blocks = corpus_path("de_gsd", "dev").read_text(encoding="utf-8").split("\n\n")
    sample = folder / "de_gsd-ud-dev300.conllu"
    sample.write_text("\n\n".join(blocks[:300]) + "\n\n", encoding="utf-8")
    path = folder / "de.actstore"
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [sample], corpus="de_gsd", lang="de", split="dev")
    verb("extract")(store=path, model="minilm", sites="layer.3", quiet=True)
    return path


@pytest.fixture(scope="session")
def ewt_dev_minilm(tmp_path_factory: pytest.TempPathFactory, dev_store_path: Path) -> Path:
    """UD English-EWT dev (2,001 sentences, 25,147 words) with MiniLM's layer.3."""
    path = tmp_path_factory.mktemp("ewt-dev-minilm") / "ewt.actstore"
    shutil.copytree(dev_store_path, path)
    verb("extract")(store=path, model="minilm", sites="layer.3", quiet=True)
    return path
