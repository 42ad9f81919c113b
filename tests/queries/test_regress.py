"""Regression probes against scikit-learn's Ridge on the same words, and a unit that
carries the target."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

import actstore
from queries.options import ProbeOptions
from queries.probe import probe
from queries.regress import fit_regression, prepare_targets


def test_ridge_matches_scikit_learn(toy_store: Path) -> None:
    """Depth from toy/layer.3 (whose units carry depth with random slopes): the same
    training words (the held-out ones, which chose the penalty, included), standardised
    as StandardScaler does: R2, Pearson and Spearman on the test words agree with
    scikit-learn's Ridge at that penalty."""
    with actstore.open(toy_store) as store:
        options = ProbeOptions("depth", device="cpu", where="upos <> 'PUNCT'")
        targets = prepare_targets(store, options)
        fitted = fit_regression(store, "toy/layer.3", options, targets)
        table = fitted.table().set_index("metric")["value"]
        x = store.acts("toy/layer.3", targets.rows).values.astype(np.float64)
    y = targets.values[:, 0]
    train = ~targets.test
    scaler = StandardScaler().fit(x[train])
    alpha = table["ridge_alpha"] * train.sum()
    reference = Ridge(alpha=alpha).fit(scaler.transform(x[train]), y[train])
    predicted = reference.predict(scaler.transform(x[targets.test]))
    truth = y[targets.test]
    r2 = 1 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert table["r2"] == pytest.approx(r2, abs=1e-8)
    assert table["pearson"] == pytest.approx(stats.pearsonr(truth, predicted)[0], abs=1e-8)
    assert table["spearman"] == pytest.approx(stats.spearmanr(truth, predicted)[0], abs=1e-8)
    assert table["r2"] > 0.5
    with actstore.open(toy_store) as store:  # held-out words pick the penalty regardless
        again = probe(store, "toy/layer.3", replace(options, patience=0))
    assert again.set_index("metric")["value"]["ridge_alpha"] == table["ridge_alpha"]


def test_a_unit_that_carries_the_target(writable_store: actstore.Store) -> None:
    """Unit 3 = position + noise (sd 1), the others noise: R2 near var(position) /
    (var(position) + 1), and the penalty chosen is small; with offset +1 (position of
    the next word = position + 1 inside a sentence) it is as good."""
    n = writable_store.n_rows()
    position = writable_store.columns(["position"]).column("position").to_numpy()
    rng = np.random.default_rng(4)
    values = rng.normal(size=(n, 6))
    values[:, 3] += position
    writer = writable_store.create_site("toy/pos", n_units=6, dtype="float32")
    writer.write(0, values.astype(np.float32))
    writer.commit()
    options = ProbeOptions("position", offsets=(0, 1), device="cpu")
    table = probe(writable_store, "toy/pos", options)
    r2 = table[table.metric == "r2"].set_index("word_offset")["value"]
    expected = position.var() / (position.var() + 1)
    assert r2[0] == pytest.approx(expected, abs=0.01) and r2[1] == pytest.approx(expected, abs=0.01)
    assert set(table["scoring"]) == {"regression"} and (table["warning"] == "").all()
    as_classes = probe(writable_store, "toy/pos", replace(options, kind="classify"))
    assert "accuracy" in set(as_classes["metric"])
