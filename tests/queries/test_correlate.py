"""Unit correlations against scipy on the same values held in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import actstore
from queries.correlate import benjamini_hochberg, unit_correlations

N_UNITS = 5


def make_site(store: actstore.Store, name: str, dtype: str, chunk_rows: int = 4096) -> np.ndarray:
    """Units with known relations to depth: linear, monotone, none, coarse (many ties)."""
    depth = store.sql("SELECT depth FROM tokens ORDER BY row")["depth"].to_numpy(np.float64)
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(depth.size, N_UNITS))
    values = np.stack(
        [
            0.3 * depth + noise[:, 0],
            np.exp(0.4 * depth) + noise[:, 1],
            noise[:, 2],
            np.round(depth / 3 + noise[:, 3]),
            -0.01 * depth + noise[:, 4],
        ],
        axis=1,
    )
    writer = store.create_site(name, n_units=N_UNITS, dtype=dtype, chunk_rows=chunk_rows)
    writer.write(0, values)
    writer.commit()
    return np.asarray(store.acts(name).values, np.float64)  # the stored (rounded) values


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_matches_scipy(writable_store: actstore.Store, dtype: str) -> None:
    stored = make_site(writable_store, f"toy/{dtype}", dtype)
    where = "upos IN ('NOUN', 'VERB', 'ADJ')"
    table = unit_correlations(writable_store, f"toy/{dtype}", "depth", where)
    rows = writable_store.rows(where)
    depth = writable_store.sql(f"SELECT depth FROM tokens WHERE {where} ORDER BY row")["depth"]
    x, y = stored[rows], depth.to_numpy(np.float64)
    assert set(table["n"]) == {rows.size}
    # Pearson sums run in float32 (on centred sub-blocks), Spearman's ranks in float64
    tolerance = {"pearson": (2e-6, 1e-3), "spearman": (1e-12, 1e-6)}
    for metric, reference in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):
        got = table[table.metric == metric].sort_values("unit")
        expected = [reference(x[:, u], y) for u in range(N_UNITS)]
        atol, p_rtol = tolerance[metric]
        np.testing.assert_allclose(got["value"], [e[0] for e in expected], rtol=0, atol=atol)
        np.testing.assert_allclose(got["p"], [e[1] for e in expected], rtol=p_rtol, atol=1e-300)
        np.testing.assert_allclose(got["q"], stats.false_discovery_control(got["p"]), rtol=1e-12)


def test_benjamini_hochberg_hand_worked() -> None:
    # p sorted: .01 .02 .03 .04 .2 -> x5/rank: .05 .05 .05 .05 .2 -> running min from the top
    p = np.array([0.04, 0.01, 0.2, 0.03, 0.02, np.nan])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.05, 0.05, 0.2, 0.05, 0.05, np.nan])


def test_bad_covariate(writable_store: actstore.Store) -> None:
    make_site(writable_store, "toy/layer.0", "float16")
    with pytest.raises(actstore.SchemaError, match="no column 'nope' in tokens"):
        unit_correlations(writable_store, "toy/layer.0", "nope")
    with pytest.raises(actstore.SchemaError, match="'upos' is not numeric"):
        unit_correlations(writable_store, "toy/layer.0", "upos")
    with pytest.raises(actstore.SchemaError, match="correlations need at least 3"):
        unit_correlations(writable_store, "toy/layer.0", "depth", "row < 2")


def test_runs_on_the_process_scheduler(writable_store: actstore.Store, tmp_path: Path) -> None:
    import dask

    make_site(writable_store, "toy/layer.0", "float16", chunk_rows=2048)
    threads = unit_correlations(writable_store, "toy/layer.0", "position")
    with dask.config.set(scheduler="processes", num_workers=2):
        procs = unit_correlations(writable_store, "toy/layer.0", "position")
    np.testing.assert_allclose(procs["value"], threads["value"], rtol=1e-12, atol=1e-15)
    # the block kernels and the merge order do not depend on threads: the same bits
    np.testing.assert_array_equal(procs.to_numpy(), threads.to_numpy())


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_spearman_does_not_depend_on_how_units_are_split(
    writable_store: actstore.Store, monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    """One task per unit (a tiny memory budget), several per worker, or one per worker,
    on 1 or 3 workers: the rank tables are exact counts and half-integer sums, so the
    correlations are the same bits."""
    import dask

    from queries import correlate

    make_site(writable_store, "toy/layer.0", dtype, chunk_rows=1000)
    where = "upos <> 'PUNCT'"
    reference = unit_correlations(writable_store, "toy/layer.0", "depth", where)
    for workers, budget in ((1, correlate.RANK_BUDGET_BYTES), (3, 1), (3, 3 << 20)):
        monkeypatch.setattr(correlate, "RANK_BUDGET_BYTES", budget)
        with dask.config.set(num_workers=workers):
            table = unit_correlations(writable_store, "toy/layer.0", "depth", where)
        np.testing.assert_array_equal(table.to_numpy(), reference.to_numpy())


def test_cli_prints_top_units_and_saves_the_table(
    writable_store: actstore.Store, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    import pandas as pd

    from actstore.cli import main

    stored = make_site(writable_store, "toy/layer.0", "float16")
    make_site(writable_store, "toy/layer.1", "float16")
    depth = writable_store.sql("SELECT depth FROM tokens ORDER BY row")["depth"].to_numpy(float)
    strongest = {
        metric: int(np.argmax([abs(f(stored[:, u], depth)[0]) for u in range(N_UNITS)]))
        for metric, f in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr))
    }
    path = writable_store.path
    writable_store.close()
    args = ["correlate", str(path), "--sites", "toy/*", "--with", "depth", "--format", "csv"]
    assert main([*args, "--top", "1", "--save", "depth_corr"]) == 0
    top = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(top.columns[:5]) == ["site", "target", "unit", "metric", "value"]
    assert len(top) == 4
    assert {(m, u) for m, u in zip(top["metric"], top["unit"], strict=True)} == set(
        strongest.items()
    )
    with actstore.open(path) as store:
        saved = store.sql("SELECT site, metric, count(*) AS n FROM depth_corr GROUP BY ALL")
    assert sorted(saved["n"]) == [N_UNITS] * 4
    assert main(["correlate", str(path), "--sites", "nope/*", "--with", "depth"]) == 2
    assert "no complete site matches 'nope/*'" in capsys.readouterr().err
