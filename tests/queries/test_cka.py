"""Linear CKA against its definition (centred Gram matrices and HSIC) on small data,
its invariances, the debiased variant against a direct n x n unbiased HSIC, bit-for-bit
reproducibility across schedulers, and the ``actstore cka`` verb."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import actstore
from queries import cka as cka_module
from queries.cka import cka_matrix

SiteWriter = Callable[..., np.ndarray]
WHERE = "sentence_id < 40"


def hsic_biased(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """HSIC of two Gram matrices: tr(KHLH) / (n - 1)^2."""
    n = len(k)
    h = np.eye(n) - 1.0 / n
    return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al. (2012)'s unbiased HSIC estimator, straight from its n x n formula."""
    n = len(k)
    k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))  # noqa: E741
    one = np.ones(n)
    value = np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
    value -= 2 / (n - 2) * (one @ k @ l @ one)
    return float(value / (n * (n - 3)))


def reference(x: np.ndarray, y: np.ndarray, *, debiased: bool = False) -> float:
    """CKA from its definition: linear Gram matrices of the centred rows, then HSIC."""
    grams = [(v - v.mean(axis=0)) @ (v - v.mean(axis=0)).T for v in (x, y)]
    hsic = hsic_unbiased if debiased else hsic_biased
    k, l = grams  # noqa: E741
    return float(hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l)))


@pytest.fixture
def small(
    tmp_path: Path, ewt_small: Path, site_writer: SiteWriter
) -> Iterator[tuple[actstore.Store, dict[str, np.ndarray]]]:
    """120 EWT sentences with related sites: x (float16), a nonlinear function of it, an
    orthogonal rotation, a multiple and a shift of it (float32), and noise."""
    path = shutil.copytree(ewt_small, tmp_path / "s.actstore")
    rng = np.random.default_rng(3)
    with actstore.open(path, mode="a") as store:
        n = store.n_rows()
        base = rng.normal(size=(n, 12)) * rng.uniform(0.2, 3.0, 12) + rng.normal(0, 2, 12)
        x = site_writer(store, "m/x", base, dtype="float16", chunk_rows=256)
        q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
        values = {
            "m/x": x,
            "m/tanh": np.tanh(x[:, :8] @ rng.normal(size=(8, 7))) + 0.3 * rng.normal(size=(n, 7)),
            "m/rotated": x @ q,
            "m/scaled": 3.5 * x,
            "m/shifted": x + 1000.0,
            "m/noise": rng.normal(size=(n, 5)),
        }
        for name, v in values.items():
            if name != "m/x":
                values[name] = site_writer(store, name, v, dtype="float32", chunk_rows=256)
        yield store, values


def pick(table: pd.DataFrame, a: str, b: str) -> float:
    match = table[(table.site_a == a) & (table.site_b == b)]
    assert len(match) == 1
    return float(match["cka"].iloc[0])


@pytest.mark.parametrize("debiased", [False, True])
def test_matches_the_definition(
    small: tuple[actstore.Store, dict[str, np.ndarray]], debiased: bool
) -> None:
    store, values = small
    rows = store.rows(WHERE)
    names = ["m/x", "m/tanh", "m/noise"]
    table = cka_matrix(store, names, where=WHERE, debiased=debiased, block_rows=100)
    assert len(table) == 9 and set(table["n"]) == {rows.size}
    assert set(table["debiased"]) == {debiased}
    for a in names:
        for b in names:
            expected = reference(values[a][rows], values[b][rows], debiased=debiased)
            assert pick(table, a, b) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert 0.2 < pick(table, "m/x", "m/tanh") < 0.9  # something to find, not trivially 0 or 1


def test_invariances(small: tuple[actstore.Store, dict[str, np.ndarray]]) -> None:
    store, values = small
    table = cka_matrix(store, "m/x", "m/*", where=WHERE)
    assert len(table) == len(values)
    assert set(table["site_a"]) == {"m/x"}
    assert pick(table, "m/x", "m/x") == pytest.approx(1.0, abs=1e-14)
    # stored as float32: the rotation is orthogonal to about 1e-7
    assert pick(table, "m/x", "m/rotated") == pytest.approx(1.0, abs=1e-6)
    assert pick(table, "m/x", "m/scaled") == pytest.approx(1.0, abs=1e-14)
    # a mean of 1000 against spreads of 0.2 to 3 (float32 rounds the stored values to
    # about 1e-4 of the spread): the centring shift keeps every digit of the definition
    rows = store.rows(WHERE)
    expected = reference(values["m/x"][rows], values["m/shifted"][rows])
    assert pick(table, "m/x", "m/shifted") == pytest.approx(expected, rel=1e-13)
    assert expected == pytest.approx(1.0, abs=1e-8)
    both = cka_matrix(store, ["m/tanh", "m/x"], where=WHERE)
    assert pick(both, "m/x", "m/tanh") == pick(both, "m/tanh", "m/x")  # symmetric
    # the same pair with the sites in the other order: the same value, summed differently
    assert pick(both, "m/tanh", "m/x") == pytest.approx(pick(table, "m/x", "m/tanh"), rel=1e-12)


def test_debiased_diagonal_and_noise(small: tuple[actstore.Store, dict[str, np.ndarray]]) -> None:
    store, _ = small
    table = cka_matrix(store, ["m/x", "m/noise"], debiased=True)
    assert pick(table, "m/noise", "m/noise") == pytest.approx(1.0, abs=1e-12)
    plain = cka_matrix(store, ["m/x", "m/noise"])
    # independent sites: plain CKA is biased up, the debiased estimate sits near 0
    assert abs(pick(table, "m/x", "m/noise")) < pick(plain, "m/x", "m/noise")


def test_the_same_bits_on_every_scheduler(
    small: tuple[actstore.Store, dict[str, np.ndarray]],
) -> None:
    import dask

    store, _ = small
    names = ["m/x", "m/tanh", "m/shifted"]
    threads = cka_matrix(store, names, debiased=True, block_rows=300)
    for config in ({"num_workers": 1}, {"scheduler": "sync"}, {"num_workers": 3}):
        with dask.config.set(config):
            again = cka_matrix(store, names, debiased=True, block_rows=300)
        np.testing.assert_array_equal(again.to_numpy(), threads.to_numpy())
    with dask.config.set(scheduler="processes", num_workers=2):
        procs = cka_matrix(store, names, debiased=True, block_rows=300)
    np.testing.assert_array_equal(procs.to_numpy(), threads.to_numpy())
    # other blocks add the same numbers in another order
    other = cka_matrix(store, names, debiased=True, block_rows=1000)
    np.testing.assert_allclose(other["cka"], threads["cka"], rtol=1e-12)


def test_refusals(
    small: tuple[actstore.Store, dict[str, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = small
    with pytest.raises(actstore.SchemaError, match="debiased CKA needs at least 4 rows; 3 are"):
        cka_matrix(store, "m/x", where="row < 3", debiased=True)
    with pytest.raises(actstore.SiteNotFoundError, match="no complete site matches 'nope/"):
        cka_matrix(store, "m/x", "nope/*")
    monkeypatch.setattr(cka_module, "BUDGET_BYTES", 1000)
    with pytest.raises(actstore.SchemaError, match=r"more than the 0\.0 GiB budget; compare"):
        cka_matrix(store, "m/*")


def test_cli_prints_saves_and_draws(
    small: tuple[actstore.Store, dict[str, np.ndarray]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from actstore.cli import main

    store, values = small
    with store.transaction():  # a second row table, with a site over it
        store.append_table("items", pa.table({"row": np.arange(50)}))
    writer = store.create_site("m/items", table="items", n_units=4, dtype="float32")
    writer.write(0, np.ones((50, 4), np.float32))
    writer.commit()
    path = store.path
    store.close()
    plot = tmp_path / "cka.png"
    args = ["cka", str(path), "--sites", "m/x,m/tanh", "--where", WHERE, "--format", "csv"]
    assert main([*args, "--save", "sim", "--plot", str(plot)]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(printed.columns) == ["site_a", "site_b", "cka", "debiased", "n"]
    assert len(printed) == 4
    with actstore.open(path) as saved:
        rows = saved.rows(WHERE)
        assert saved.results["sim"].provenance["analysis"] == "cka"
        got = saved.sql("SELECT cka FROM sim WHERE site_a = 'm/x' AND site_b = 'm/tanh'")
    expected = reference(values["m/x"][rows], values["m/tanh"][rows])
    assert float(got["cka"].iloc[0]) == pytest.approx(expected, rel=1e-10)
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main(["cka", str(path), "--sites", "m/x", "--against", "m/items"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "actstore: error: sites m/x and m/items are aligned to different tables (tokens, items)"
    ]
