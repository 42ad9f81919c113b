"""Type means, top types and the lexical map's PCA against pandas and scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA

import actstore
from actstore.cli import main
from queries.selectivity import principal_components, top_types, type_means


def test_type_means_and_top_types_against_pandas(toy_store: Path) -> None:
    where = "upos IN ('NOUN', 'VERB')"
    with actstore.open(toy_store) as store:
        got = type_means(store, "toy/layer.3", "lemma", where, min_count=4)
        frame = store.sql(f"SELECT row, lemma FROM tokens WHERE {where} ORDER BY row")
        x = store.acts("toy/layer.3", frame["row"].to_numpy()).values.astype(np.float64)
    wide = pd.DataFrame(x).assign(lemma=frame["lemma"].to_numpy())
    grouped = wide.groupby("lemma")
    counts = grouped.size()
    expected = grouped.mean()[counts >= 4]
    assert got.types == list(expected.index)
    np.testing.assert_array_equal(got.counts, counts[counts >= 4].to_numpy())
    np.testing.assert_allclose(got.means, expected.to_numpy(), rtol=1e-9, atol=1e-9)
    table = top_types(got, 3)
    for unit in (0, 200):
        ranked = expected[unit].sort_values(ascending=False, kind="stable")
        top = table[(table.unit == unit) & (table.metric == "top")]
        assert top["type"].tolist() == ranked.index[:3].tolist()
        np.testing.assert_allclose(top["value"], ranked.to_numpy()[:3], rtol=1e-12)
        bottom = table[(table.unit == unit) & (table.metric == "bottom")]
        assert set(bottom["type"]) == set(ranked.index[-3:])


def test_principal_components_against_scikit_learn() -> None:
    x = np.random.default_rng(0).normal(size=(200, 12)) @ np.diag(np.arange(12, 0, -1))
    got = principal_components(x, 3)
    expected = PCA(3).fit_transform(x)
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-8, atol=1e-8)


def test_cli_table_and_lexical_map(
    toy_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "map.png"
    args = ["selectivity", str(toy_store), "--sites", "toy/layer.3", "--top", "2"]
    assert main([*args, "--units", "5,7", "--format", "csv", "--plot", str(plot)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "site,target,unit,metric,rank,type,value,n"
    assert [line.split(",")[2] for line in lines[1:]] == ["5"] * 4 + ["7"] * 4
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main([*args, "--units", "999"]) == 2
    assert "units [999] are outside 0..383" in capsys.readouterr().err
    assert main([*args, "--min-count", "100000"]) == 2
    # the library names the parameter; the command line shows its flag
    assert "--min-count 100000 is too high" in capsys.readouterr().err
