"""dred, zmean and keep: a hand-worked example and a GRU unrolled step by step."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cosine

import actstore
from actstore.cli import main
from queries.measures import save_measures, token_measures

TWO_SENTENCES = """\
# sent_id = a
# text = Dogs bark loudly
1\tDogs\tdog\tNOUN\tNNS\t_\t2\tnsubj\t_\t_
2\tbark\tbark\tVERB\tVBP\t_\t0\troot\t_\t_
3\tloudly\tloudly\tADV\tRB\t_\t2\tadvmod\t_\t_

# sent_id = b
# text = Cats sleep
1\tCats\tcat\tNOUN\tNNS\t_\t2\tnsubj\t_\t_
2\tsleep\tsleep\tVERB\tVBP\t_\t0\troot\t_\t_

"""


def write_site(store: actstore.Store, name: str, values: np.ndarray, **provenance: str) -> None:
    writer = store.create_site(
        name, n_units=values.shape[1], dtype="float32", provenance=provenance
    )
    writer.write(0, values)
    writer.commit()


@pytest.mark.parametrize("convention", ["torch", "cho"])
def test_hand_worked_two_sentences(tmp_path: Path, convention: str) -> None:
    conllu = tmp_path / "two.conllu"
    conllu.write_text(TWO_SENTENCES, encoding="utf-8")
    with actstore.create(tmp_path / "s.actstore") as store:
        actstore.ingest_conllu(store, [conllu])
        states = np.array([[1, 0], [1, 1], [0, 1], [2, 0], [-1, 0]], np.float32)
        gates = np.array([[0.2, 0.4, 0.6], [0, 0, 0.3], [1, 1, 1], [0.5, 0.5, 0.2], [0, 0, 0]])
        write_site(store, "gru/h", states)
        write_site(store, "gru/z", gates.astype(np.float32), gate_convention=convention)
        got = token_measures(store, "gru/h", "gru/z")
    # sentence a, final state (0, 1): d = 1, 1 - 1/sqrt(2), 0; d_0 = 1
    # sentence b, final state (-1, 0): d = 2, 0
    half = 1 - 1 / np.sqrt(2)
    np.testing.assert_allclose(got["dred"], [0, 1 - half, half, -1, 2], atol=1e-7)
    zmean = np.array([0.4, 0.1, 1.0, 0.4, 0.0])
    np.testing.assert_allclose(got["zmean"], zmean, atol=1e-7)
    keep = zmean if convention == "torch" else 1 - zmean
    np.testing.assert_allclose(got["keep"], keep, atol=1e-7)
    assert got["row"].tolist() == [0, 1, 2, 3, 4]


def unrolled_gru(gru: torch.nn.GRU, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's GRU equations one step at a time: hidden states and update gates."""
    w_ir, w_iz, w_in = gru.weight_ih_l0.chunk(3)
    w_hr, w_hz, w_hn = gru.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = gru.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = gru.bias_hh_l0.chunk(3)
    h = torch.zeros(gru.hidden_size)
    states, gates = [], []
    for x_t in x:
        r = torch.sigmoid(w_ir @ x_t + b_ir + w_hr @ h + b_hr)
        z = torch.sigmoid(w_iz @ x_t + b_iz + w_hz @ h + b_hz)
        n = torch.tanh(w_in @ x_t + b_in + r * (w_hn @ h + b_hn))
        h = (1 - z) * n + z * h
        states.append(h)
        gates.append(z)
    return torch.stack(states), torch.stack(gates)


def test_gru_gate_site_against_scipy(ewt_small: Path, tmp_path: Path) -> None:
    path = tmp_path / "gru.actstore"
    shutil.copytree(ewt_small, path)
    torch.manual_seed(0)
    gru = torch.nn.GRU(8, 6)
    with actstore.open(path, mode="a") as store:
        frame = store.sql("SELECT sentence_id, form, upos FROM tokens ORDER BY row")
        vocab = {w: i for i, w in enumerate(frame["form"].unique())}
        embed = torch.randn(len(vocab), 8)
        states, gates = [], []
        with torch.no_grad():
            for _, sentence in frame.groupby("sentence_id", sort=True):
                x = embed[[vocab[w] for w in sentence["form"]]]
                h, z = unrolled_gru(gru, x)
                fused, _ = gru(x.unsqueeze(1))
                torch.testing.assert_close(h, fused[:, 0])
                states.append(h.numpy())
                gates.append(z.numpy())
        h_all, z_all = np.concatenate(states), np.concatenate(gates)
        write_site(store, "gru/layer.0.h", h_all)
        write_site(store, "gru/layer.0.gate_z", z_all, gate_convention="torch")
        got = token_measures(store, "gru/layer.0.h", "gru/layer.0.gate_z")
        save_measures(store, got)
        joined = store.sql(
            "SELECT upos, avg(dred) AS dred, avg(keep) AS keep, count(*) AS n "
            "FROM tokens JOIN measures USING (row) GROUP BY upos HAVING count(*) >= 50"
        ).set_index("upos")
    expected = []
    for _, sentence in frame.groupby("sentence_id", sort=True):
        h = h_all[sentence.index]
        d = [1.0] + [cosine(h[t], h[-1]) for t in range(len(h))]
        expected += [d[t - 1] - d[t] for t in range(1, len(d))]
    np.testing.assert_allclose(got["dred"], expected, atol=1e-6)
    np.testing.assert_allclose(got["zmean"], z_all.astype(np.float64).mean(axis=1), atol=1e-7)
    frame["dred"], frame["keep"] = expected, z_all.mean(axis=1)
    pandas = frame.groupby("upos")[["dred", "keep"]].mean()
    for upos in joined.index:
        assert joined.loc[upos, "dred"] == pytest.approx(pandas.loc[upos, "dred"], abs=1e-6)
        assert joined.loc[upos, "keep"] == pytest.approx(pandas.loc[upos, "keep"], abs=1e-6)


def test_cli_reports_by_category_and_needs_a_convention(
    ewt_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.actstore"
    shutil.copytree(ewt_small, path)
    with actstore.open(path, mode="a") as store:
        n = store.n_rows("tokens")
        rng = np.random.default_rng(0)
        write_site(store, "gru/h", rng.normal(size=(n, 4)).astype(np.float32))
        write_site(store, "gru/z", rng.uniform(size=(n, 4)).astype(np.float32))
        counts = store.sql("SELECT upos, count(*) AS n FROM tokens GROUP BY upos")
    plot = tmp_path / "m.png"
    args = ["measures", str(path), "--sites", "gru/h", "--min-count", "100", "--by", "upos"]
    assert main([*args, "--format", "csv", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "site,target,category,metric,value,n"
    frequent = set(counts[counts.n >= 100]["upos"])
    assert {line.split(",")[2] for line in out[1:]} == frequent
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main([*args, "--gate-site", "gru/z"]) == 2
    assert "does not declare provenance['gate_convention']" in capsys.readouterr().err
    assert main([*args, "--gate-site", "gru/nope"]) == 2
    assert "no complete site matches 'gru/nope'" in capsys.readouterr().err


def test_a_gru_state_site_names_its_gates(
    ewt_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "named.actstore"
    shutil.copytree(ewt_small, path)
    with actstore.open(path, mode="a") as store:
        n = store.n_rows("tokens")
        rng = np.random.default_rng(1)
        gates = rng.uniform(size=(n, 4)).astype(np.float32)
        write_site(store, "gru/layer.0.z", gates, gate_convention="torch")
        states = rng.normal(size=(n, 4)).astype(np.float32)
        write_site(store, "gru/layer.0.h", states, update_gate_site="gru/layer.0.z")
        mean_z = float(gates.astype(np.float64).mean(axis=1).mean())
    args = ["measures", str(path), "--sites", "layer.0.h", "--by", "lang", "--min-count", "1"]
    assert main([*args, "--format", "csv"]) == 0  # no --gate-site
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    zmean = {r[3]: float(r[4]) for r in rows}["zmean"]
    assert zmean == pytest.approx(mean_z, abs=1e-9)


def test_measures_of_a_site_covering_some_sentences(ewt_small: Path, tmp_path: Path) -> None:
    path = tmp_path / "part.actstore"
    shutil.copytree(ewt_small, path)
    with actstore.open(path, mode="a") as store:
        n = store.n_rows("tokens")
        states = np.random.default_rng(2).normal(size=(n, 4)).astype(np.float32)
        write_site(store, "gru/all", states)
        first = store.sql("SELECT min(row) AS r FROM tokens WHERE sentence_id IN (40, 80)").r
        lo = int(first[0])
        hi = int(store.sql("SELECT max(row) + 1 AS r FROM tokens WHERE sentence_id = 79").r[0])
        writer = store.create_site(
            "gru/part", n_units=4, dtype="float32", chunk_rows=256, covers=[(lo, hi)]
        )
        writer.write(lo, states[lo:hi])
        writer.commit()
        part = token_measures(store, "gru/part")
        everything = token_measures(store, "gru/all").set_index("row")
    assert part["row"].tolist() == list(range(lo, hi))  # dred is per sentence: the same
    np.testing.assert_allclose(part["dred"], everything.loc[part["row"], "dred"], atol=1e-12)
