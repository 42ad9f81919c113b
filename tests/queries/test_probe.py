"""Probes against scikit-learn's lbfgs, sites with a known answer, and pandas counts."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import actstore
from actstore.cli import main
from actstore.verbs import verb
from queries.labels import prepare_labels
from queries.linear import LinearProbe
from queries.options import ProbeOptions
from queries.probe import fit_probe, probe

UPOS = [
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
]  # fmt: skip


@parametrize_with_checks([LinearProbe(min_steps=200)])  # type: ignore[untyped-decorator]
def test_scikit_learn_estimator_checks(estimator: LinearProbe, check: object) -> None:
    check(estimator)  # type: ignore[operator]


def test_probe_matches_lbfgs_on_minilm(minilm_store: Path) -> None:
    """Same split, same L2 on standardised features: the streamed probe is as accurate."""
    with actstore.open(minilm_store) as store:
        options = ProbeOptions("upos", device="cpu")
        labels = prepare_labels(store, options)
        got = probe(store, "minilm/layer.3", options, labels)
        x = store.acts("minilm/layer.3", labels.rows).values
        truth = store.sql("SELECT upos FROM tokens ORDER BY row")["upos"].to_numpy()[labels.rows]
    train, test = ~labels.test, labels.test
    scaler = StandardScaler().fit(x[train])
    reference = LogisticRegression(C=1 / (options.alpha * train.sum()), max_iter=3000)
    reference.fit(scaler.transform(x[train]), truth[train])
    expected = float((reference.predict(scaler.transform(x[test])) == truth[test]).mean())
    accuracy = got.set_index("metric")["value"]["accuracy"]
    assert accuracy > 0.85
    assert accuracy >= expected - 0.01


def test_features_of_some_words_are_predicted_among_their_values(
    german_minilm_store: Path,
) -> None:
    """German-GSD, MiniLM layer 3, Number (words without it are N/A): scored among its
    real values, the probe is within a point of scikit-learn trained on the words that
    carry Number, and above the majority baseline; the paper's raw scoring (an N/A
    prediction is wrong) is reported as such and scores no higher."""
    with actstore.open(german_minilm_store) as store:
        options = ProbeOptions("Number", device="cpu")
        labels = prepare_labels(store, options)
        table = probe(store, "minilm/layer.3", options, labels).set_index("metric")
        raw = probe(store, "minilm/layer.3", replace(options, scoring="raw"), labels)
        x = store.acts("minilm/layer.3", labels.rows).values
        number = store.sql('SELECT "Number" FROM tokens ORDER BY row')["Number"]
    y = number.to_numpy(object)[labels.rows]
    carries = number.notna().to_numpy()[labels.rows]
    train, test = carries & ~labels.test, carries & labels.test
    scaler = StandardScaler().fit(x[train])
    reference = LogisticRegression(C=1 / (options.alpha * train.sum()), max_iter=3000)
    reference.fit(scaler.transform(x[train]), y[train].astype(str))
    expected = float((reference.predict(scaler.transform(x[test])) == y[test]).mean())
    accuracy = table.loc["accuracy", "value"]
    assert table.loc["accuracy", "n"] == test.sum()
    assert abs(accuracy - expected) <= 0.01, (accuracy, expected)
    assert accuracy > table.loc["majority", "value"] and table.loc["accuracy", "warning"] == ""
    assert set(raw["scoring"]) == {"raw"}
    assert raw.set_index("metric").loc["accuracy", "value"] <= accuracy


def test_words_inside_multiword_tokens_get_their_own_vectors(ewt_dev_minilm: Path) -> None:
    """NeuroX, measured on EWT dev (MiniLM, sentences 0-1600 train, 1601-2000 test), scored
    0.944 for UPOS at layer 3, and 0.979 on the 142 test words inside multiword tokens
    ("ca" + "n't", "Allawi" + "'s"), which share no vector there. Within half a point."""
    with actstore.open(ewt_dev_minilm) as store:
        options = ProbeOptions("upos", device="cpu", test_where="sentence_id > 1600")
        labels = prepare_labels(store, options)
        fitted = fit_probe(store, "minilm/layer.3", options, labels)
        inside = store.sql("SELECT mwt_start IS NOT NULL AS m FROM tokens ORDER BY row")["m"]
    inside = inside.to_numpy()[labels.rows][labels.test]
    correct = fitted.predicted[:, 0] == labels.codes[labels.test, 0]
    assert labels.test.sum() == 4295 and inside.sum() == 142
    assert correct.mean() >= 0.944 - 0.005
    assert correct[inside].mean() > 0.95


def test_a_probe_without_signal_is_flagged(writable_store: actstore.Store) -> None:
    """Noise units: accuracy is not above the majority baseline, and the control task
    scores like the probe; the table says both."""
    n = writable_store.n_rows()
    noise = np.random.default_rng(3).normal(size=(n, 8)).astype(np.float32)
    writer = writable_store.create_site("toy/noise", n_units=8)
    writer.write(0, noise)
    writer.commit()
    options = ProbeOptions("upos", control=True, device="cpu", epochs=5)
    table = probe(writable_store, "toy/noise", options).set_index("metric")
    warning = table.loc["accuracy", "warning"]
    assert "not above the majority baseline" in warning
    assert "the control task scores" in warning


def test_early_stopping_keeps_the_best_epoch(next_upos_store: actstore.Store) -> None:
    """Labels the units cannot predict (word w+5 with offset 0 noise): held-out loss stops
    improving at once, so training stops ``patience`` epochs after its best epoch."""
    store = next_upos_store
    options = ProbeOptions("upos", offsets=(5,), device="cpu", epochs=50, patience=2)
    fitted = fit_probe(store, "toy/next", options)
    (best,) = fitted.trained.best_epoch
    per_epoch = -(-int((~fitted.labels.test & ~fitted.labels.validation).sum()) // 512)
    assert fitted.trained.steps == (best + 2) * per_epoch < 50 * per_epoch
    no_stop = fit_probe(store, "toy/next", replace(options, patience=0, epochs=3))
    assert not no_stop.labels.validation.any()
    assert no_stop.trained.steps == 3 * -(-int((~no_stop.labels.test).sum()) // 512)


def test_folds_are_whole_sentences_and_cover_every_word_once(
    next_upos_store: actstore.Store,
) -> None:
    from scipy import stats

    from queries.probe import prepare_folds

    store = next_upos_store
    options = ProbeOptions("upos", offsets=(1,), folds=5, device="cpu")
    folds = prepare_folds(store, options)
    sentence = store.sql("SELECT sentence_id FROM tokens ORDER BY row")["sentence_id"].to_numpy()
    tested = np.stack([f.test for f in folds])
    assert (tested.sum(axis=0) == 1).all()  # every word is tested in exactly one fold
    for f in folds:
        assert not np.intersect1d(sentence[f.rows[f.test]], sentence[f.rows[~f.test]]).size
        assert not (f.validation & f.test).any()
        assert abs(f.test.mean() - 0.2) < 0.02
    table = probe(store, "toy/next", options, folds).set_index("metric")
    single = [probe(store, "toy/next", options, f).set_index("metric") for f in folds]
    accuracies = [t.loc["accuracy", "value"] for t in single]
    half = stats.t.ppf(0.975, 4) * np.std(accuracies, ddof=1) / np.sqrt(5)
    low, high = np.mean(accuracies) - half, np.mean(accuracies) + half
    assert table.loc["accuracy", "value"] == pytest.approx(np.mean(accuracies), abs=1e-12)
    assert (table.loc["accuracy", "ci_low"], table.loc["accuracy", "ci_high"]) == pytest.approx(
        (low, high), abs=1e-12
    )
    assert table.loc["accuracy", "n"] == sum(t.loc["accuracy", "n"] for t in single)
    with pytest.raises(actstore.ParameterError, match="folds cannot be combined with test_where"):
        ProbeOptions("upos", folds=5, test_where="sentence_id > 10")


def test_a_sparse_probe_ranks_the_unit_that_carries_the_label_first(
    writable_store: actstore.Store,
) -> None:
    """Unit 5 says NOUN or VERB (plus noise); 15 noise units. The L1 probe's weight
    mass ranks unit 5 first, and a probe on that one unit alone is nearly perfect."""
    from queries.probe import unit_ranking

    store = writable_store
    upos = store.sql("SELECT upos FROM tokens ORDER BY row")["upos"].to_numpy(object)
    rng = np.random.default_rng(8)
    values = rng.normal(size=(upos.size, 16))
    values[:, 5] += 4.0 * (upos == "NOUN")
    writer = store.create_site("toy/sparse", n_units=16, dtype="float32")
    writer.write(0, values.astype(np.float32))
    writer.commit()
    options = ProbeOptions(
        "upos", where="upos IN ('NOUN', 'VERB')", l1=1e-2, top_units=(1, 4), device="cpu"
    )
    fitted = fit_probe(store, "toy/sparse", options)
    ranking = unit_ranking(fitted)
    assert ranking["unit"].iloc[0] == 5
    assert ranking["weight_mass"].iloc[0] > 5 * ranking["weight_mass"].iloc[1]
    table = probe(store, "toy/sparse", options)
    top = table[table.metric == "accuracy_top_units"].set_index("label")["value"]
    # the best any rule on unit 5 can do: classes 4 sd apart, cut where their densities meet
    from scipy import stats

    noun = (upos == "NOUN").sum() / np.isin(upos, ["NOUN", "VERB"]).sum()
    cut = 2 + np.log((1 - noun) / noun) / 4
    bayes = noun * stats.norm.sf(cut - 4) + (1 - noun) * stats.norm.cdf(cut)
    assert top["1"] > bayes - 0.02 and top["4"] > bayes - 0.02


def test_per_class_accuracy_counts_every_class(next_upos_store: actstore.Store) -> None:
    store = next_upos_store
    options = ProbeOptions("upos", offsets=(1,), per_class=True, device="cpu")
    labels = prepare_labels(store, options)
    table = probe(store, "toy/next", options, labels)
    per_class = table[table.metric == "class_accuracy"].set_index("label")
    frame = store.sql("SELECT sentence_id, upos FROM tokens ORDER BY row")
    following = (
        frame["upos"].shift(-1).where(frame["sentence_id"].shift(-1) == frame["sentence_id"])
    )
    expected = following[labels.test].dropna().value_counts()
    assert per_class["n"].sort_index().to_dict() == expected.sort_index().to_dict()
    assert (per_class["value"] > 0.9).all()


@pytest.fixture
def next_upos_store(writable_store: actstore.Store) -> actstore.Store:
    """A site whose activation at word w is the one-hot UPOS of word w+1 (zeros at the end)."""
    frame = writable_store.sql("SELECT sentence_id, upos FROM tokens ORDER BY row")
    code = frame["upos"].map({u: i for i, u in enumerate(UPOS)}).to_numpy()
    same = frame["sentence_id"].to_numpy()[1:] == frame["sentence_id"].to_numpy()[:-1]
    values = np.zeros((len(frame), len(UPOS)), np.float32)
    values[np.flatnonzero(same), code[1:][same]] = 1.0
    values += np.random.default_rng(0).normal(0, 0.05, values.shape).astype(np.float32)
    writer = writable_store.create_site("toy/next", n_units=len(UPOS), chunk_rows=4096)
    writer.write(0, values)
    writer.commit()
    return writable_store


def test_offsets_decode_the_right_word(next_upos_store: actstore.Store) -> None:
    store = next_upos_store
    options = ProbeOptions("upos", offsets=(0, 1), device="cpu")
    table = probe(store, "toy/next", options).pivot_table(
        index="word_offset", columns="metric", values="value"
    )
    assert table.loc[1, "accuracy"] > 0.99
    assert table.loc[0, "accuracy"] < 0.6
    counts = probe(store, "toy/next", options)
    totals = counts.groupby("word_offset")[["n", "n_train"]].first().sum(axis=1)
    # UD English-EWT dev: 25,147 words in 2,001 sentences (stats.xml); offset +1 has no
    # label at the last word of each sentence
    assert totals.to_dict() == {0: 25_147, 1: 25_147 - 2_001}


def test_training_rows_are_read_once_when_they_fit_in_memory(
    next_upos_store: actstore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes read (positioned reads counted): the rows once (and the test rows) when they
    fit ``memory_gib``; with no memory, one pass per epoch plus the standardisation. The
    probe is the same either way: same blocks, same batches, same merge order."""
    import os

    from actstore import reader

    monkeypatch.setattr(reader, "GAP_BYTES", 0)  # read only selected rows: bytes count rows
    store = next_upos_store
    site_bytes = store.n_rows() * len(UPOS) * 2  # float16; every row is selected
    preadv = os.preadv
    tables = []
    for memory_gib in (1.0, 0.0):
        options = ProbeOptions("upos", device="cpu", epochs=4, min_steps=0, memory_gib=memory_gib)
        read: list[int] = []

        def counting(fd: int, buffers: list[object], offset: int, read: list[int] = read) -> int:
            read.append(preadv(fd, buffers, offset))
            return read[-1]

        monkeypatch.setattr(os, "preadv", counting)
        tables.append(probe(store, "toy/next", options))
        passes = sum(read) / site_bytes
        if memory_gib:  # train and test rows once: one pass
            assert passes == pytest.approx(1.0, abs=0.01)
        else:  # the standardisation pass, 4 epochs (the last cut short), the test rows
            assert 4.0 < passes < 6.0
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert tables[0].set_index("metric")["value"]["accuracy"] > 0.3


def test_split_majority_and_counts_against_pandas(next_upos_store: actstore.Store) -> None:
    store = next_upos_store
    options = ProbeOptions("upos", device="cpu", seed=7)
    labels = prepare_labels(store, options)
    frame = store.sql("SELECT sentence_id, upos FROM tokens ORDER BY row")
    frame["test"] = labels.test
    assert frame.groupby("sentence_id")["test"].nunique().max() == 1  # no sentence straddles
    longest = frame.groupby("sentence_id").size().max()
    assert 0.1 <= frame["test"].mean() <= 0.1 + longest / len(frame)
    majority = frame[~frame.test]["upos"].value_counts().idxmax()
    expected = (frame[frame.test]["upos"] == majority).mean()
    got = probe(store, "toy/next", options, labels).set_index("metric")
    assert got.loc["majority", "value"] == pytest.approx(expected, abs=1e-12)
    assert got.loc["accuracy", "n"] == frame["test"].sum()
    assert got.loc["accuracy", "n_classes"] == frame[~frame.test]["upos"].nunique()


def test_features_of_some_words_score_only_those(next_upos_store: actstore.Store) -> None:
    store = next_upos_store
    options = ProbeOptions("Tense", device="cpu", where="upos IN ('VERB', 'AUX', 'NOUN')")
    labels = prepare_labels(store, options)
    assert "N/A" in labels.heads[0].classes  # nouns carry no Tense
    frame = store.sql("SELECT Tense FROM tokens WHERE upos IN ('VERB', 'AUX', 'NOUN') ORDER BY row")
    got = probe(store, "toy/next", options, labels).set_index("metric")
    assert got.loc["accuracy", "n"] == frame["Tense"][labels.test].notna().sum()
    assert got.loc["accuracy", "n_train"] == frame["Tense"][~labels.test].notna().sum()


def test_control_task_gives_each_word_type_one_label(next_upos_store: actstore.Store) -> None:
    store = next_upos_store
    options = ProbeOptions("upos", control=True, device="cpu")
    labels = prepare_labels(store, options)
    control = next(i for i, h in enumerate(labels.heads) if h.control)
    forms = store.sql("SELECT form FROM tokens ORDER BY row")["form"]
    names = np.asarray(labels.heads[control].classes, dtype=object)
    assignment = pd.DataFrame({"form": forms, "label": names[labels.codes[:, control]]})
    assert assignment.groupby("form")["label"].nunique().max() == 1
    got = probe(store, "toy/next", options, labels).set_index("metric")["value"]
    assert got["selectivity"] == pytest.approx(got["accuracy"] - got["control_accuracy"])


def test_bad_targets_are_refused(next_upos_store: actstore.Store) -> None:
    store = next_upos_store
    with pytest.raises(actstore.SchemaError, match="has 1 class"):
        prepare_labels(store, ProbeOptions("upos", where="upos = 'NOUN'"))
    with pytest.raises(actstore.SchemaError, match="no column 'nope' in tokens"):
        prepare_labels(store, ProbeOptions("nope"))
    with pytest.raises(actstore.SchemaError, match="no tokens selected"):
        prepare_labels(store, ProbeOptions("upos", where="row < 0"))


def test_cli_prints_saves_and_plots(
    next_upos_store: actstore.Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = next_upos_store.path
    next_upos_store.close()
    plot = tmp_path / "probe.png"
    args = ["probe", str(path), "--sites", "toy/*", "--target", "upos", "--offsets", "0,1"]
    assert main([*args, "--control", "--format", "csv", "--save", "p", "--plot", str(plot)]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.columns[:6]) == ["site", "target", "word_offset", "metric", "label", "value"]
    assert len(table) == 2 * 5 and set(table["scoring"]) == {"feature"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with actstore.open(path) as store:
        saved = store.sql("SELECT value FROM p WHERE metric = 'accuracy' AND word_offset = 1")
        confusion = store.sql("SELECT sum(n) AS n FROM p_confusion WHERE word_offset = 1")
        scored = store.sql("SELECT n FROM p WHERE metric = 'accuracy' AND word_offset = 1")
    assert saved["value"].iloc[0] > 0.99
    assert confusion["n"].iloc[0] == scored["n"].iloc[0]
    with pytest.raises(SystemExit) as bad:  # argparse converts flags: its one-line error
        main([*args[:-2], "--offsets", "0,x"])
    assert bad.value.code == 2
    assert "--offsets: expects an integer, got 'x'" in capsys.readouterr().err
    with pytest.raises(actstore.ParameterError, match="offsets takes comma-separated integers"):
        verb("probe")(store=path, sites="toy/*", target="upos", offsets="0,x")
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        assert "CUDA is not available here" in capsys.readouterr().err


def test_early_stopping_scores_the_last_partial_epoch_and_spares_unscored_heads() -> None:
    """100 steps of 40 a epoch: the held-out words are scored after steps 40, 80 and 100;
    on held-out words equal to the training ones the loss keeps falling, so the kept
    weights are the last (epoch 3). A head with no held-out label keeps its last weights,
    the same as without any held-out words."""
    from queries.linear import Schedule, train_softmax

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = np.stack([(x[:, 0] > 0).astype(np.int64), (x[:, 1] > 0).astype(np.int64)], axis=1)
    held_y = y.copy()
    held_y[:, 1] = -1  # head 1: no held-out label

    def batches() -> object:
        order = np.random.default_rng(1)
        while True:
            take = order.permutation(200)[:50]
            yield x[take], y[take]

    schedule = Schedule(100, 50, 0.05, 1e-4, steps_per_epoch=40, patience=5)
    mean, scale = x.mean(0).astype(np.float64), x.std(0).astype(np.float64)
    cpu = torch.device("cpu")
    watched = train_softmax(batches(), mean, scale, [2, 2], schedule, cpu, (x, held_y))  # type: ignore[arg-type]
    plain = train_softmax(batches(), mean, scale, [2, 2], schedule, cpu)  # type: ignore[arg-type]
    assert watched.steps == plain.steps == 100
    assert watched.best_epoch == [3, 0]
    for a, b in zip(watched.weights, plain.weights, strict=True):
        np.testing.assert_array_equal(a[0], b[0])


def test_splits_and_folds_that_cannot_be_made_are_refused(
    next_upos_store: actstore.Store,
) -> None:
    store = next_upos_store
    with pytest.raises(actstore.ParameterError, match="on both sides"):
        prepare_labels(store, ProbeOptions("upos", test_where="position > 10"))
    with pytest.raises(actstore.SchemaError, match="come from 2 sentences; 3 folds need 3"):
        prepare_labels(store, ProbeOptions("upos", where="sentence_id < 2", folds=3))
    with pytest.raises(actstore.ParameterError, match="offset -1: the words there carry"):
        prepare_labels(store, ProbeOptions("upos", where="position = 1", offsets=(-1, 0)))
    with pytest.raises(actstore.ParameterError, match="control applies to classification"):
        probe(store, "toy/next", ProbeOptions("depth", control=True, device="cpu"))
