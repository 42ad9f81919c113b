"""RDMs, comparisons and inference (queries.rdm, queries.rsa_stats, queries.rsa) against
independent references: scipy and rsatoolbox on the same data, pandas groupby means."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import rsatoolbox as _rsatoolbox
from scipy import stats
from scipy.spatial.distance import pdist

import actstore
from queries import rsa as rsa_module
from queries.rdm import rdm, rdm_to_store, rdm_upper, upper
from queries.rsa import compare_stored, rsa_matrix
from queries.rsa_plots import rdm_figure
from queries.rsa_stats import average_ranks, bootstrap_ci, compare, permutation_test

rsatoolbox: Any = _rsatoolbox  # a test-only reference, typed loosely
RNG = np.random.default_rng(11)
X = RNG.normal(size=(40, 64))
Y = X @ RNG.normal(size=(64, 64)) * 0.3 + RNG.normal(size=(40, 64))


@pytest.mark.parametrize("metric", ["correlation", "cosine", "euclidean", "sqeuclidean"])
def test_rdm_is_scipy_pdist(metric: str) -> None:
    found = rdm(X, metric)
    np.testing.assert_allclose(upper(found), pdist(X, metric), rtol=1e-10, atol=1e-10)
    assert np.array_equal(found, found.T) and not found.diagonal().any()


def test_rdm_is_rsatoolbox_calc_rdm() -> None:
    data = rsatoolbox.data.Dataset(X)
    for metric, scale in (("correlation", 1.0), ("euclidean", X.shape[1])):
        theirs = rsatoolbox.rdm.calc_rdm(data, method=metric).get_vectors()[0]
        mine = upper(rdm(X, "correlation" if metric == "correlation" else "sqeuclidean"))
        np.testing.assert_allclose(mine / scale, theirs, rtol=1e-6, atol=1e-6)


def test_compare_is_scipy_and_rsatoolbox() -> None:
    a, b = upper(rdm(X)), upper(rdm(Y))
    assert compare(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert compare(a, b, "pearson") == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)
    assert len(np.unique(a)) == a.size and len(np.unique(b)) == b.size  # untied: tau-a = tau-b
    assert compare(a, b, "kendall") == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)
    rdm_a, rdm_b = rsatoolbox.rdm.RDMs(a[None]), rsatoolbox.rdm.RDMs(b[None])
    for method, theirs in (("spearman", "spearman"), ("pearson", "corr"), ("kendall", "tau-a")):
        expected = rsatoolbox.rdm.compare(rdm_a, rdm_b, method=theirs)[0, 0]
        assert compare(a, b, method) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_average_ranks_are_rankdata_with_and_without_ties(dtype: type) -> None:
    rng = np.random.default_rng(5)
    untied: np.ndarray = ((rng.permutation(10_000) - 5_000) * 0.37).astype(dtype)
    tied: np.ndarray = np.round(rng.normal(size=10_000) * 20).astype(dtype)  # runs of up to ~400
    signed: np.ndarray = np.array([0.0, -0.0, -1.5, 2.0, -1.5, -0.0, 3.0, -np.inf, np.inf], dtype)
    step = np.finfo(np.float32).eps  # narrow float32 ranges are counted, not sorted
    narrow: np.ndarray = (1 + rng.permutation(10_000) * step).astype(dtype)
    narrow_tied: np.ndarray = (1 - rng.integers(0, 3_000, 10_000) * step / 2).astype(dtype)
    for values in (untied, tied, signed, narrow, narrow_tied, np.ones(5, dtype), untied[:1]):
        found = average_ranks(values)
        assert found.dtype == np.float64
        assert np.array_equal(found, stats.rankdata(values, method="average"))
    with pytest.raises(actstore.SchemaError, match="NaN"):
        average_ranks(np.array([1.0, np.nan], dtype))


@pytest.mark.parametrize("metric", ["correlation", "cosine", "euclidean", "sqeuclidean"])
def test_float32_rdms_are_the_float64_ones(metric: str) -> None:
    exact = upper(rdm(X, metric))
    triangle = rdm_upper(X, metric)
    assert triangle.dtype == np.float32
    np.testing.assert_allclose(triangle, exact, rtol=1e-5, atol=1e-5)
    assert np.array_equal(rdm_upper(X, metric, "float64"), exact)
    full = rdm(X, metric, precision="float32")
    assert np.array_equal(full, full.T) and not full.diagonal().any()
    assert np.array_equal(upper(full), triangle)
    other = upper(rdm(Y, metric))
    for method in ("spearman", "pearson", "kendall"):
        found = compare(triangle, rdm_upper(Y, metric), method)
        assert found == pytest.approx(compare(exact, other, method), abs=1e-6)
    with pytest.raises(actstore.ParameterError, match="precisions: float32, float64"):
        rdm(X, metric, precision="float16")


def test_float32_comparison_is_rsatoolbox_and_repeats_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 256)).astype(np.float32)
    y = x + rng.normal(size=x.shape).astype(np.float32)
    ours = [compare(rdm_upper(x), rdm_upper(y)) for _ in range(2)]
    assert ours[0] == ours[1]
    theirs = rsatoolbox.rdm.compare(
        rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="correlation"),
        rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(y), method="correlation"),
        method="spearman",
    )[0, 0]
    assert ours[0] == pytest.approx(theirs, abs=1e-6)
    assert ours[0] == pytest.approx(compare(upper(rdm(x)), upper(rdm(y))), abs=1e-6)


def test_kendall_tau_a_counts_ties_as_neither() -> None:
    a, b = np.array([1.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 2.0, 3.0])
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    sign = [np.sign(a[j] - a[i]) * np.sign(b[j] - b[i]) for i, j in pairs]
    assert compare(a, b, "kendall") == pytest.approx(sum(sign) / len(pairs))
    tau_a = rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(a[None]), rsatoolbox.rdm.RDMs(b[None]),
                                   method="tau-a")[0, 0]  # fmt: skip
    assert compare(a, b, "kendall") == pytest.approx(tau_a, abs=1e-12)


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
def test_permutation_null_is_the_permuted_rdms(method: str) -> None:
    a, b = rdm(X[:9]), rdm(Y[:9])
    observed, p, null = permutation_test(a, b, method, n=30, seed=4)
    rng = np.random.default_rng(4)
    expected = [compare(upper(a[o][:, o]), upper(b), method) for o in
                (rng.permutation(9) for _ in range(30))]  # fmt: skip
    np.testing.assert_allclose(null, expected, atol=1e-12)
    assert observed == pytest.approx(compare(upper(a), upper(b), method))
    assert p == (1 + int((null >= observed - 1e-12).sum())) / 31


def test_permutation_p_on_a_hand_example() -> None:
    # 3 conditions: every permutation of an RDM with distinct values matches itself only
    # when it maps the triangle onto itself, so p counts the permutations that do.
    a = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0]], float)
    observed, p, null = permutation_test(a, a, "pearson", n=6, seed=0)
    rng = np.random.default_rng(0)
    fixed = sum(list(rng.permutation(3)) == [0, 1, 2] for _ in range(6))
    assert observed == pytest.approx(1.0)
    assert int((null >= 1 - 1e-12).sum()) == fixed
    assert p == pytest.approx((1 + fixed) / 7)


def test_seeds_reproduce_and_differ() -> None:
    a, b = rdm(X[:12]), rdm(Y[:12])
    first, again, other = (permutation_test(a, b, n=50, seed=s)[2] for s in (1, 1, 2))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    low, high, values = bootstrap_ci(a, b, n=40, seed=3)
    assert np.array_equal(values, bootstrap_ci(a, b, n=40, seed=3)[2])
    assert low <= compare(upper(a), upper(b)) <= high


def test_refusals_name_valid_options() -> None:
    with pytest.raises(actstore.ParameterError, match="methods: spearman, pearson, kendall"):
        compare(np.ones(3), np.ones(3), "tau")
    with pytest.raises(actstore.ParameterError, match="metrics: correlation, cosine"):
        rdm(X, "manhattan")
    with pytest.raises(actstore.SchemaError, match="different lengths"):
        compare(np.ones(3), np.ones(4))


@pytest.fixture
def toy_copy(toy_store: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(toy_store, tmp_path / "toy.actstore"))


def test_rsa_matrix_is_groupby_pdist_spearman(toy_copy: Path) -> None:
    where = "upos IN ('NOUN', 'VERB', 'ADJ')"
    with actstore.open(toy_copy, mode="a") as store:
        table = rsa_matrix(store, "toy/*", by="lemma", where=where, min_count=8,
                           permutations=0)  # fmt: skip
        frame = store.sql(f"SELECT row, lemma FROM tokens WHERE {where} ORDER BY row")
        rdms = {}
        for site in ("toy/layer.0", "toy/layer.3"):
            values = store.acts(site, dtype="float32").values.astype(np.float64)
            grouped = pd.DataFrame(values[frame["row"]]).groupby(frame["lemma"].to_numpy())
            means = grouped.mean()[grouped.size() >= 8].sort_index()
            rdms[site] = pdist(means.to_numpy(), "correlation")
        expected = stats.spearmanr(rdms["toy/layer.0"], rdms["toy/layer.3"]).statistic
        row = table[(table.site_a == "toy/layer.0") & (table.site_b == "toy/layer.3")].iloc[0]
        assert row["value"] == pytest.approx(expected, abs=1e-10)
        assert row["n_conditions"] == len(means) and np.isnan(row["p"])
        assert table[table.site_a == table.site_b]["value"].tolist() == pytest.approx([1, 1])
        saved = [n for n in store.results if n.startswith("rdm_toy_layer_0")]
        assert len(saved) == 1


def test_saved_rdms_are_reused_with_the_same_settings(
    toy_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with actstore.open(toy_copy, mode="a") as store:
        first = rsa_matrix(store, "toy/layer.0", "toy/layer.3", by="upos", min_count=5,
                           permutations=20, bootstrap=10, seed=7)  # fmt: skip

        def unread(*args: object, **kwargs: object) -> None:
            raise AssertionError("a saved RDM was recomputed")

        monkeypatch.setattr(rsa_module, "condition_means", unread)
        again = rsa_matrix(store, "toy/layer.0", "toy/layer.3", by="upos", min_count=5,
                           permutations=20, bootstrap=10, seed=7)  # fmt: skip
        pd.testing.assert_frame_equal(first, again)
        with pytest.raises(AssertionError, match="recomputed"):  # other settings: new RDMs
            rsa_matrix(store, "toy/layer.0", "toy/layer.3", by="upos", min_count=6)


def test_sites_over_another_table_meet_on_shared_labels(toy_copy: Path) -> None:
    with actstore.open(toy_copy, mode="a") as store:
        lemmas = store.sql("SELECT lemma, count(*) AS n FROM tokens GROUP BY lemma "
                           "HAVING n >= 10 ORDER BY lemma")["lemma"].tolist()  # fmt: skip
        words = [*lemmas[::2], "zzz-not-a-lemma"]
        with store.transaction():
            store.append_table("words", pa.table({"row": np.arange(len(words)), "word": words}))
        vectors = np.random.default_rng(2).normal(size=(len(words), 20)).astype(np.float32)
        writer = store.create_site("static/vectors", table="words", n_units=20, dtype="float32")
        writer.write(0, vectors)
        writer.commit()
        table = rsa_matrix(store, "toy/*", "static/vectors", by="lemma", by_b="word",
                           min_count=10, method="pearson", permutations=0)  # fmt: skip
        shared = sorted(set(lemmas[::2]))
        assert table["n_conditions"].unique().tolist() == [len(shared)]
        acts = store.acts("toy/layer.3", dtype="float32").values.astype(np.float64)
        frame = store.sql("SELECT row, lemma FROM tokens ORDER BY row")
        means = pd.DataFrame(acts).groupby(frame["lemma"].to_numpy()).mean().loc[shared]
        static = vectors[[words.index(w) for w in shared]].astype(np.float64)
        expected = stats.pearsonr(pdist(means, "correlation"), pdist(static, "correlation"))
        row = table[table.site_a == "toy/layer.3"].iloc[0]
        assert row["value"] == pytest.approx(expected.statistic, abs=1e-10)


def test_blockwise_rdm_on_disk_and_streamed_comparison(
    toy_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with actstore.open(toy_copy, mode="a") as store:
        for name, values, rows in (("rdm_a", X, 7), ("rdm_b", Y, 16)):
            rdm_to_store(store, name, values, block_rows=rows, labels=[f"c{i}" for i in range(40)])
        stored = store.matrix("rdm_a").values.values
        np.testing.assert_allclose(stored, rdm(X), atol=1e-6)
        assert np.array_equal(stored, stored.T)
        expected = compare(upper(rdm(X)), upper(rdm(Y)), "pearson")
        assert compare_stored(store, "rdm_a", "rdm_b") == pytest.approx(expected, abs=1e-6)
        spearman = compare(upper(rdm(X)), upper(rdm(Y)))
        assert compare_stored(store, "rdm_a", "rdm_b", "spearman") == pytest.approx(
            spearman, abs=1e-4
        )  # float32 storage can tie or swap nearly equal dissimilarities
        monkeypatch.setattr(rsa_module, "RANK_BUDGET_BYTES", 1000)
        with pytest.raises(actstore.ParameterError, match="compare them with pearson"):
            compare_stored(store, "rdm_a", "rdm_b", "spearman")


def test_rdm_figure_orders_by_label_or_cluster(tmp_path: Path) -> None:
    labels = [f"w{i:02d}" for i in range(12)][::-1]
    for order in ("label", "cluster"):
        figure = rdm_figure(labels, rdm(X[:12]), order=order)
        ticks = [t.get_text() for t in figure.axes[0].get_xticklabels()]
        assert sorted(ticks) == sorted(labels)
        assert (ticks == sorted(labels)) == (order == "label")
    with pytest.raises(actstore.ParameterError, match="orders: label, cluster"):
        rdm_figure(labels, rdm(X[:12]), order="random")


def test_command_line_saves_and_plots(toy_copy: Path, tmp_path: Path) -> None:
    command = [str(Path(sys.executable).parent / "actstore"), "rsa", str(toy_copy),
               "--sites", "toy/*", "--against", "toy/layer.3", "--by", "upos",
               "--min-count", "5", "--permutations", "9", "--bootstrap", "5",
               "--save", "rsa_upos", "--plot", str(tmp_path / "profile.png"),
               "--format", "csv"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("site_a,site_b,metric,method,value,p,")
    assert "saved result rsa_upos (2 rows)" in done.stderr
    assert (tmp_path / "profile.png").read_bytes()[:4] == b"\x89PNG"
    with actstore.open(toy_copy) as store:
        saved = store.sql("SELECT site_a, p, ci_low FROM rsa_upos ORDER BY site_a")
        assert saved["p"].between(0.1, 1).all() and saved["ci_low"].notna().all()
        assert store.results["rsa_upos"].provenance["parameters"]["permutations"] == 9
        assert sum(n.startswith("rdm_") for n in store.results) == 2
