"""Probes you can keep: saved, read back, applied to other rows or another store,
exported to scikit-learn; each against the probe's own predictions."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import actstore
from actstore.cli import main
from queries.keep import apply_probe, load_probe, save_probe, to_sklearn
from queries.options import ProbeOptions
from queries.probe import fit_probe


@pytest.fixture
def two_stores(tmp_path: Path, toy_store: Path) -> tuple[Path, Path]:
    a = Path(shutil.copytree(toy_store, tmp_path / "a.actstore"))
    b = Path(shutil.copytree(toy_store, tmp_path / "b.actstore"))
    return a, b


def test_a_saved_probe_labels_rows_as_the_fitted_one(two_stores: tuple[Path, Path]) -> None:
    a, b = two_stores
    options = ProbeOptions("upos", offsets=(0, 1), control=True, device="cpu")
    with actstore.open(a, mode="a") as store:
        fitted = fit_probe(store, "toy/layer.3", options)
        save_probe(store, fitted, "upos_probe")
        test_rows = fitted.labels.rows[fitted.labels.test]
        where = f"row IN ({', '.join(map(str, test_rows))})"
        labelled = apply_probe(store, "toy/layer.3", load_probe(store, "upos_probe"), where)
    saved = load_probe(actstore.open(a), "upos_probe")
    assert sorted(saved.heads) == [0, 1]  # the control head is not kept
    for h, head in enumerate(fitted.labels.heads):
        if head.control:
            continue
        got = labelled[labelled.word_offset == head.offset]
        np.testing.assert_array_equal(got["row"], test_rows)
        expected = np.asarray(head.classes, dtype=object)[fitted.predicted[:, h]]
        np.testing.assert_array_equal(got["predicted"].to_numpy(object), expected)
        assert ((got["probability"] > 0) & (got["probability"] <= 1)).all()
    with actstore.open(b) as other:  # the same site, made the same way, in another store
        again = apply_probe(other, "toy/layer.3", saved, where)
    pd.testing.assert_frame_equal(again, labelled)


def test_a_probe_refuses_a_site_made_otherwise(two_stores: tuple[Path, Path]) -> None:
    a, _ = two_stores
    with actstore.open(a, mode="a") as store:
        fitted = fit_probe(store, "toy/layer.3", ProbeOptions("upos", device="cpu"))
        save_probe(store, fitted, "p")
        saved = load_probe(store, "p")
        with pytest.raises(actstore.ParameterError, match="made by another model"):
            apply_probe(store, "toy/layer.0", saved)  # same units, another hidden state
        writer = store.create_site("toy/bare", n_units=384)  # no provenance at all
        writer.write(0, np.zeros((store.n_rows(), 384), np.float32))
        writer.commit()
        with pytest.raises(actstore.ParameterError, match="records no provenance"):
            apply_probe(store, "toy/bare", saved)
        with pytest.raises(actstore.SchemaError, match="not a saved probe"):
            store.write_matrix("m", np.eye(2), rows=["a", "b"], columns=["a", "b"])
            load_probe(store, "m")


@pytest.mark.parametrize("where", [None, "upos IN ('NOUN', 'VERB')"])
def test_scikit_learn_export_predicts_as_the_probe(toy_store: Path, where: str | None) -> None:
    """Raw scoring (every class in the argmax) is what LogisticRegression.predict does;
    two classes exercise scikit-learn's one-row binary form."""
    with actstore.open(toy_store) as store:
        options = ProbeOptions("upos", where=where, scoring="raw", device="cpu")
        fitted = fit_probe(store, "toy/layer.0", options)
        x = store.acts("toy/layer.0", fitted.labels.rows[fitted.labels.test]).values
    model = to_sklearn(fitted)
    expected = np.asarray(fitted.labels.heads[0].classes, dtype=object)[fitted.predicted[:, 0]]
    np.testing.assert_array_equal(model.predict(x), expected)
    assert model.coef_.shape[0] == (1 if where else len(fitted.labels.heads[0].classes))


def test_cli_saves_weights_and_applies_them(
    two_stores: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_stores
    args = ["probe", str(a), "--sites", "toy/layer.3", "--target", "upos", "--device", "cpu"]
    assert main([*args, "--save", "up", "--quiet"]) == 0
    with actstore.open(a) as store:
        assert {"up", "up_confusion", "up_weights", "up_units"} <= set(store.results)
        units = store.sql("SELECT count(*) AS n, min(rank) AS first FROM up_units")
    assert (units["n"].item(), units["first"].item()) == (384, 1)
    apply = ["probe", str(b), "--sites", "toy/layer.3", "--apply", "up_weights"]
    assert main([*apply, "--apply-store", str(a), "--where", "row < 4", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table["row"].tolist() == [0, 1, 2, 3] and set(table["target"]) == {"upos"}
    assert main(["probe", str(b), "--sites", "toy/layer.3"]) == 2
    assert "--target is needed" in capsys.readouterr().err
