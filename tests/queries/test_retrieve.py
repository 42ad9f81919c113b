"""Retrieval against brute-force numpy ranks, sentence vectors against numpy pooling."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import actstore
from actstore.errors import ParameterError, SchemaError
from actstore.verbs import verb
from queries.retrieve import (
    Vectors,
    query_ranks,
    retrieve,
    scrambled_control,
    sentence_vectors,
    write_conllu,
)


@pytest.fixture(scope="module")
def sites_store(tmp_path_factory: pytest.TempPathFactory, ewt_small: Path) -> Path:
    """120 EWT sentences with a random token site and two sentence sites (a noisy copy
    of the other, so retrieval is good but not perfect)."""
    path = tmp_path_factory.mktemp("retrieve") / "s.actstore"
    shutil.copytree(ewt_small, path)
    rng = np.random.default_rng(3)
    with actstore.open(path, mode="a") as store:
        n_tokens, n_sentences = store.n_rows("tokens"), store.n_rows("sentences")
        for name, table, n in (("tok/layer.0", "tokens", n_tokens),
                               ("sen/a", "sentences", n_sentences)):  # fmt: skip
            writer = store.create_site(name, table=table, n_units=8, dtype="float32")
            writer.write(0, rng.normal(size=(n, 8)).astype(np.float32))
            writer.commit()
        noisy = store.site_reader("sen/a").read(0, n_sentences) + rng.normal(
            0, 0.8, (n_sentences, 8)
        )
        writer = store.create_site("sen/b", table="sentences", n_units=8, dtype="float32")
        writer.write(0, noisy.astype(np.float32))
        writer.commit()
    return path


def brute_ranks(
    q: np.ndarray, items: np.ndarray, q_key: np.ndarray, i_key: np.ndarray
) -> np.ndarray:
    """Rank of the best correct item by a full argsort of every query's cosines."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    inn = items / np.linalg.norm(items, axis=1, keepdims=True)
    scores = qn.astype(np.float64) @ inn.T.astype(np.float64)
    ranks = []
    for row, key in zip(scores, q_key, strict=True):
        order = np.argsort(-row, kind="stable")
        ranks.append(1 + int(np.flatnonzero(i_key[order] == key)[0]))
    return np.array(ranks)


@pytest.mark.parametrize("block", [7, 2048])
def test_ranks_equal_brute_force_argsort(block: int) -> None:
    rng = np.random.default_rng(0)
    q, items = rng.normal(size=(50, 6)), rng.normal(size=(83, 6))
    q_key, i_key = rng.integers(0, 20, 50), rng.integers(0, 20, 83)
    q_key[0] = 99  # no correct item
    i_key[:20] = np.arange(20)  # every other key has at least one
    got = query_ranks(Vectors("t", np.arange(50), q), Vectors("t", np.arange(83), items),
                      q_key, i_key, block=block)  # fmt: skip
    assert got[0] == 0
    assert got[1:].tolist() == brute_ranks(q[1:], items, q_key[1:], i_key).tolist()


def test_hand_example_and_ties() -> None:
    q = Vectors("s", np.arange(2), np.array([[1.0, 0], [0, 1]]))
    items = Vectors("s", np.arange(3), np.array([[1.0, 1], [2, 2], [0, 1]]))
    # query 0: items 0 and 1 (cos .71) above its correct item 2 (0); query 1: item 2 (cos 1)
    # above its correct item 1
    assert query_ranks(q, items, np.array([2, 1]), np.array([0, 1, 2])).tolist() == [3, 2]
    # a tie with the correct item goes in the query's favour
    assert query_ranks(q, items, np.array([1, 2]), np.array([0, 1, 2])).tolist() == [1, 1]
    assert query_ranks(q, items, np.array([0, 0]), np.array([0, 0, 1]), exclude_self=True
                       ).tolist() == [1, 2]  # fmt: skip


def test_retrieve_against_numpy(sites_store: Path) -> None:
    with actstore.open(sites_store) as store:
        a = store.site_reader("sen/a").read(0, 120)
        b = store.site_reader("sen/b").read(0, 120)
        table = retrieve(store, "sen/b", "sen/a", k=(1, 5))
        upos = retrieve(store, "sen/b", "sen/a", key="n_words % 3", k=(1,))
        words = store.sql("SELECT n_words % 3 AS m FROM sentences ORDER BY row")["m"].to_numpy()
    ranks = brute_ranks(b, a, np.arange(120), np.arange(120))
    values = dict(zip(table["metric"] + table["k"].astype(str), table["value"], strict=True))
    assert values["recall1"] == pytest.approx((ranks <= 1).mean())
    assert values["recall5"] == pytest.approx((ranks <= 5).mean())
    assert values["median_rank0"] == np.median(ranks)
    assert values["mrr0"] == pytest.approx((1 / ranks).mean())
    assert 0 < values["recall1"] < 1 and table["n_queries"][0] == 120
    by_key = brute_ranks(b, a, words, words)
    assert upos["value"][0] == pytest.approx((by_key <= 1).mean())


def test_sentence_vectors_mean_and_last(sites_store: Path) -> None:
    with actstore.open(sites_store) as store:
        tokens = store.site_reader("tok/layer.0").read(0, store.n_rows("tokens"))
        ids = store.columns(["sentence_id"]).column("sentence_id").to_numpy()
        mean = sentence_vectors(store, "tok/layer.0", "mean")
        last = sentence_vectors(store, "tok/layer.0", "last", where="upos != 'PUNCT'")
        upos = store.columns(["upos"]).column("upos").to_pylist()
    for s in (0, 57, 119):
        assert np.allclose(mean.values[s], tokens[ids == s].astype(np.float64).mean(axis=0),
                           atol=1e-6)  # fmt: skip
        kept = np.flatnonzero((ids == s) & (np.array(upos, object) != "PUNCT"))
        assert np.array_equal(last.values[list(last.rows).index(s)], tokens[kept[-1]])
    with actstore.open(sites_store) as store, pytest.raises(ParameterError, match="how must be"):
        sentence_vectors(store, "tok/layer.0", "max")  # type: ignore[arg-type]
    with actstore.open(sites_store) as store, pytest.raises(SchemaError, match="not tokens"):
        sentence_vectors(store, "sen/a")


def test_token_site_pooled_for_retrieval(sites_store: Path) -> None:
    with actstore.open(sites_store) as store:
        table = retrieve(store, "tok/layer.0", "tok/layer.0", query_where="row < 10",
                         key="sentence_id", k=(1,), pool="last")  # fmt: skip
    assert table["value"][0] == 1.0 and table["n_queries"][0] == 10
    assert table["n_items"][0] == 120


def test_written_conllu_reads_back_as_the_store(ewt_small: Path, tmp_path: Path) -> None:
    columns = "sentence_id, position, form, lemma, upos, xpos, feats, head, deprel, deps, misc"
    with actstore.open(ewt_small) as store:
        assert write_conllu(store, tmp_path / "s.conllu") == 120
        before = store.sql(f"SELECT {columns} FROM tokens ORDER BY row")
        ids = store.sql("SELECT sent_id, text FROM sentences ORDER BY row")
    with actstore.create(tmp_path / "s.actstore") as again:
        actstore.ingest_conllu(again, [tmp_path / "s.conllu"], corpus="s", lang="en", split="x")
        after = again.sql(f"SELECT {columns} FROM tokens ORDER BY row")
        assert again.sql("SELECT sent_id, text FROM sentences ORDER BY row").equals(ids)
    assert after.equals(before)


def test_scrambled_store_keeps_the_tree(ewt_small: Path, tmp_path: Path) -> None:
    """What the scrambled control ingests: the written sentences, words shuffled."""
    with actstore.open(ewt_small) as store:
        write_conllu(store, tmp_path / "s.conllu")
        before = store.sql("SELECT sentence_id, form, upos, deprel, head FROM tokens ORDER BY row")
    with actstore.create(tmp_path / "s.actstore") as scrambled:
        actstore.ingest_conllu(scrambled, [tmp_path / "s.conllu"], corpus="s", lang="en",
                               split="x", shuffle_words=1)  # fmt: skip
        after = scrambled.sql(
            "SELECT sentence_id, form, upos, deprel, head FROM tokens ORDER BY row"
        )
    moved = 0
    for s in (0, 5, 60):
        one, two = before[before.sentence_id == s], after[after.sentence_id == s]
        heads = [tuple(sorted(zip(t.form, t.upos, t.deprel,
                 [t.form.iloc[h - 1] if h else "ROOT" for h in t["head"]], strict=True)))
                 for t in (one, two)]  # fmt: skip
        assert heads[0] == heads[1]  # every word keeps its tags and its head word
        moved += int(one.form.tolist() != two.form.tolist())
    assert moved >= 2


def test_cli_errors_are_one_line(sites_store: Path) -> None:
    cli = [sys.executable, "-m", "actstore.cli", "retrieve", str(sites_store),
           "--queries", "sen/b", "--items", "sen/a"]  # fmt: skip
    for extra, message in (
        (["--k", "0"], "--k takes positive integers"),
        (["--key", "nope"], "--key 'nope' is not a column or expression of sentences"),
        (["--items", "nope/*"], "no complete site matches 'nope/*'"),
        (["--scramble", "x.actstore"], "--model is needed with --scramble"),
    ):
        run = subprocess.run([*cli, *extra], capture_output=True, text=True)
        last = run.stderr.strip().splitlines()[-1]
        assert run.returncode != 0 and last.startswith("actstore: error:"), run.stderr
        assert message in last


@pytest.mark.slow
def test_scrambled_control_with_minilm(ewt_small: Path, tmp_path: Path) -> None:
    path = shutil.copytree(ewt_small, tmp_path / "o.actstore")
    verb("extract")(store=path, model="minilm", sites="sentence.mean.layer.3", quiet=True)
    with actstore.open(path) as store:
        result = scrambled_control(store, tmp_path / "scrambled.actstore",
                                   "minilm/sentence.mean.layer.3", "minilm", k=(1, 5))  # fmt: skip
    values = dict(zip(result.frame["metric"] + result.frame["k"].astype(str),
                      result.frame["value"], strict=True))  # fmt: skip
    assert values["paired_cosine0"] > values["other_cosine0"]
    assert 0.5 < values["recall5"] <= 1
    assert result.frame["n_queries"][0] == 120
