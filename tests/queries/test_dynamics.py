"""Sentence-level dynamics against scipy's pearsonr, sentence by sentence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import actstore
from actstore.data import corpus_path
from queries.dynamics import layout, sentence_dynamics


@pytest.fixture
def two_languages(tmp_path: Path, ewt_dev: Path) -> actstore.Store:
    """EWT dev and Portuguese Bosque dev with a random site (several chunks, straddling)."""
    store = actstore.create(tmp_path / "two.actstore")
    actstore.ingest_conllu(store, [ewt_dev, corpus_path("pt_bosque", "dev")])
    n = store.n_rows("tokens")
    depth = store.sql("SELECT depth FROM tokens ORDER BY row")["depth"].to_numpy(np.float32)
    values = np.random.default_rng(3).normal(size=(n, 6)).astype(np.float32)
    values[:, 0] += 0.3 * depth
    writer = store.create_site("toy/layer.0", n_units=6, dtype="float32", chunk_rows=3000)
    writer.write(0, values)
    writer.commit()
    return store


def test_matches_per_sentence_pearsonr(two_languages: actstore.Store) -> None:
    store = two_languages
    where = "upos <> 'PUNCT'"
    got = sentence_dynamics(store, "toy/layer.0", "depth", where).set_index("lang")
    frame = store.sql(
        f"SELECT row, sentence_id, lang, depth FROM tokens WHERE {where} ORDER BY row"
    )
    means = store.acts("toy/layer.0").values.astype(np.float64).mean(axis=1)[frame["row"]]
    frame["m"] = means
    for lang, part in frame.groupby("lang"):
        rs, skipped = [], 0
        for _, sentence in part.groupby("sentence_id"):
            if len(sentence) < 3 or sentence["depth"].nunique() == 1:
                skipped += 1
                continue
            rs.append(stats.pearsonr(sentence["m"], sentence["depth"])[0])
        assert got.loc[lang, "n"] == len(rs)
        assert got.loc[lang, "skipped"] == skipped
        assert got.loc[lang, "value"] == pytest.approx(np.mean(rs), rel=1e-9)
        assert got.loc[lang, "sd"] == pytest.approx(np.std(rs, ddof=1), rel=1e-9)
    assert set(got.index) == {"en", "pt"}
    wide = layout(got.reset_index())
    assert list(wide.columns) == ["lang", "toy/layer.0"]


def test_bad_covariate(two_languages: actstore.Store) -> None:
    with pytest.raises(actstore.SchemaError, match="'upos' is not numeric"):
        sentence_dynamics(two_languages, "toy/layer.0", "upos")
    with pytest.raises(actstore.SchemaError, match="no tokens with a 'depth' value"):
        sentence_dynamics(two_languages, "toy/layer.0", "depth", "row < 0")
