"""Shuffled word order (``actstore ingest --shuffle-words SEED``), checked against the
CoNLL-U lines themselves, read by the small parser of this file rather than actstore's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import actstore
from actstore.cli import main
from tests.conftest import first_sentences

SEED = 7
N_SENTENCES = 300
Word = dict[str, Any]


def read_words(path: Path) -> list[list[Word]]:
    """The syntactic words of each sentence of a CoNLL-U file (comments, multiword-token
    lines and empty nodes left out); ``_`` read as None except in FORM and LEMMA."""
    sentences: list[list[Word]] = []
    for chunk in path.read_text(encoding="utf-8").split("\n\n"):
        words = []
        for line in chunk.splitlines():
            cols = line.split("\t")
            if line.startswith("#") or not cols[0].isdigit():
                continue
            blank = [None if c == "_" else c for c in cols]
            words.append({"id": int(cols[0]), "form": cols[1], "lemma": cols[2],
                          "upos": blank[3], "feats": blank[5], "head": int(cols[6]),
                          "deprel": blank[7], "deps": blank[8], "misc": blank[9]})  # fmt: skip
        if words:
            sentences.append(words)
    return sentences


def depths(words: list[Word]) -> list[int]:
    """Words on the path from each word to the root, inclusive."""
    out = []
    for word in words:
        depth, head = 1, word["head"]
        while head:
            depth, head = depth + 1, words[head - 1]["head"]
        out.append(depth)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, ewt_dev: Path) -> Path:
    """The first 300 sentences of EWT dev (multiword tokens among them)."""
    path = tmp_path_factory.mktemp("shuffle") / "en_ewt-ud-dev.conllu"
    path.write_text(first_sentences(ewt_dev, N_SENTENCES), encoding="utf-8")
    assert any("-" in line.split("\t")[0] for line in path.read_text().splitlines() if line)
    return path


@pytest.fixture(scope="module")
def both(corpus: Path) -> Path:
    """A store with the corpus, then the corpus shuffled with SEED (small blocks)."""
    path = corpus.with_name("both.actstore")
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [corpus], block_words=1000)
        actstore.ingest_conllu(store, [corpus], block_words=1000, shuffle_words=SEED)
    return path


def shuffled_sentences(path: Path, seed: int = SEED) -> list[pd.DataFrame]:
    """The shuffled rows of the store at ``path``, one frame per sentence, in row order."""
    with actstore.open(path) as store:
        rows = store.sql(f"SELECT * FROM tokens WHERE shuffle_seed = {seed} ORDER BY row")
    return [group for _, group in rows.groupby("sentence_id", sort=True)]


def test_each_sentence_keeps_its_words_and_annotations(both: Path, corpus: Path) -> None:
    keys = ("form", "lemma", "upos", "feats", "deprel")
    read = read_words(corpus)
    mixed = shuffled_sentences(both)
    assert len(mixed) == len(read) == N_SENTENCES
    for words, rows in zip(read, mixed, strict=True):
        stored = [tuple(None if pd.isna(v) else v for v in row) for row in rows[list(keys)].values]
        assert Counter(stored) == Counter(tuple(w[k] for k in keys) for w in words)


def test_order_is_default_rng_of_seed_and_sentence_index(both: Path, corpus: Path) -> None:
    for i, (words, rows) in enumerate(zip(read_words(corpus), shuffled_sentences(both),
                                          strict=True)):  # fmt: skip
        order = np.random.default_rng([SEED, i]).permutation(len(words))
        assert rows["original_position"].tolist() == (order + 1).tolist()
        assert rows["form"].tolist() == [words[k]["form"] for k in order]
        assert rows["position"].tolist() == list(range(1, len(words) + 1))


def test_each_word_keeps_its_head_word_and_depth(both: Path, corpus: Path) -> None:
    for words, rows in zip(read_words(corpus), shuffled_sentences(both), strict=True):
        original = rows["original_position"].to_numpy()
        heads = rows["head"].to_numpy()
        head_word = np.where(heads > 0, original[np.maximum(heads, 1) - 1], 0)
        assert head_word.tolist() == [words[k - 1]["head"] for k in original]
        assert rows["depth"].tolist() == [depths(words)[k - 1] for k in original]
        distance = (heads - rows["position"]).where(heads > 0)
        assert rows["head_distance"].equals(distance.astype(rows["head_distance"].dtype))
        assert (
            rows["deprel"].eq("root").sum() == 1 and rows.loc[heads == 0, "deprel"].eq("root").all()
        )


def test_deps_blank_and_misc_without_spacing(both: Path, corpus: Path) -> None:
    """The enhanced graph names old IDs: not carried over. MISC keeps all but what said
    which words were joined, as space_after (true) now says."""
    n_deps = n_spacing = n_kept = 0
    for words, rows in zip(read_words(corpus), shuffled_sentences(both), strict=True):
        assert rows["deps"].isna().all()
        for original, misc in zip(rows["original_position"], rows["misc"], strict=True):
            word = words[original - 1]
            items = (word["misc"] or "").split("|")
            kept = [i for i in items if i and i.split("=")[0] not in ("SpaceAfter", "SpacesAfter")]
            assert (None if pd.isna(misc) else misc) == ("|".join(kept) or None)
            n_deps += word["deps"] is not None
            n_spacing += len(kept) < len([i for i in items if i])
            n_kept += bool(kept)
    assert n_deps > 1000 and n_spacing > 100 and n_kept > 10  # the sample holds each case
    with actstore.open(both) as store:
        original = store.sql("SELECT count(deps) AS d, count(misc) AS m FROM tokens "
                             "WHERE shuffle_seed IS NULL")  # fmt: skip
    assert original.d[0] == n_deps and original.m[0] >= n_spacing


def test_most_sentences_change_order(both: Path) -> None:
    longer = [rows for rows in shuffled_sentences(both) if len(rows) > 1]
    moved = [r["original_position"].tolist() != list(range(1, len(r) + 1)) for r in longer]
    assert sum(moved) >= 0.9 * len(longer)
    assert all(m for m, r in zip(moved, longer, strict=True) if len(r) >= 8)


def test_surface_tokens_and_sentences(both: Path) -> None:
    with actstore.open(both) as store:
        words = store.sql(
            "SELECT count(*) AS n, count(mwt_form) AS mwt, bool_and(space_after) AS spaces "
            "FROM tokens WHERE shuffle_seed IS NOT NULL"
        )
        assert words.n[0] > 0 and words.mwt[0] == 0 and words.spaces[0]
        pairs = store.sql(
            "SELECT o.sent_id, o.text AS original, s.text AS shuffled, s.n_tokens, s.n_words, "
            "(SELECT string_agg(form, ' ' ORDER BY position) FROM tokens t "
            " WHERE t.sentence_id = s.sentence_id) AS forms "
            "FROM sentences o JOIN sentences s USING (source, sent_id) "
            "WHERE o.shuffle_seed IS NULL AND s.shuffle_seed = 7 ORDER BY o.row"
        )
        labels = store.sql("SELECT DISTINCT corpus, lang, split FROM sentences")
    assert len(pairs) == N_SENTENCES
    assert (pairs.shuffled == pairs.forms).all() and (pairs.n_tokens == pairs.n_words).all()
    assert (pairs.shuffled != pairs.original).mean() > 0.9
    assert labels.values.tolist() == [["en_ewt", "en", "dev"]]


def test_same_rows_whatever_the_blocks_and_the_store(corpus: Path, tmp_path: Path) -> None:
    """The shuffle depends on the seed and the sentence's index in its file only."""
    tables, names = [], ("tokens", "sentences")
    for n, block_words, subset in ((0, 1, None), (1, 100_000, None), (2, 777, (100, 200))):
        with actstore.create(tmp_path / f"{n}.actstore") as store:
            actstore.ingest_conllu(store, [corpus], block_words=block_words, sentences=subset,
                                   shuffle_words=SEED)  # fmt: skip
            read = {t: store.sql(f"SELECT * FROM {t} ORDER BY row", arrow=True) for t in names}
            tables.append(read)
    assert len(json.loads((tmp_path / "0.actstore/manifest.json").read_text())["tables"]
               ["tokens"]["parts"]) == N_SENTENCES  # fmt: skip
    for name in names:
        one, two = (t[name].select(sorted(t[name].column_names)) for t in tables[:2])
        assert one.equals(two)
    # sentences 100..199 alone: the rows of those sentences in the whole file's ingest
    start = tables[1]["sentences"].column("first_row").to_pylist()[100]
    stop = tables[1]["sentences"].column("first_row").to_pylist()[200]
    skip = {"row", "sentence_id"}
    whole, part = tables[1]["tokens"].slice(start, stop - start), tables[2]["tokens"]
    for column in sorted(set(part.column_names) - skip):
        assert part.column(column).to_pylist() == whole.column(column).to_pylist(), column


def test_same_parts_byte_for_byte(corpus: Path, tmp_path: Path) -> None:
    for n in (0, 1):
        with actstore.create(tmp_path / f"{n}.actstore") as store:
            actstore.ingest_conllu(store, [corpus], block_words=2000, shuffle_words=SEED)
    parts = sorted((tmp_path / "0.actstore" / "tables").rglob("*.parquet"))
    assert len(parts) > 2
    for part in parts:
        assert part.read_bytes() == (tmp_path / "1.actstore" / part.relative_to(
            tmp_path / "0.actstore")).read_bytes()  # fmt: skip


def test_cli_flag_and_sql_filter(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.actstore"
    assert main(["ingest", str(path), str(corpus)]) == 0
    assert main(["ingest", str(path), str(corpus), "--shuffle-words", "7"]) == 0
    assert "words shuffled with seed 7" in capsys.readouterr().out
    with actstore.open(path) as store:
        assert [s.shuffle_seed for s in store.sources] == [None, 7]
        n_words = store.sources[0].n_words
    assert (
        main(["sql", str(path), "SELECT count(*) AS n FROM tokens WHERE shuffle_seed IS NULL"]) == 0
    )
    assert capsys.readouterr().out.split() == ["n", str(n_words)]
    assert main(["info", str(path)]) == 0
    assert "shuffled=7" in capsys.readouterr().out


def test_each_seed_once_per_file(both: Path, corpus: Path, tmp_path: Path) -> None:
    path = tmp_path / "d.actstore"
    for args, error in (
        ([], ""),
        (["--shuffle-words", "7"], ""),
        (["--shuffle-words", "8"], ""),
        (["--shuffle-words", "7"], "already in the store (same content as {}), words shuffled "
         "with seed 7; another shuffle seed adds it again"),
        ([], "already in the store (same content as {}), unshuffled; another shuffle seed"),
    ):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "actstore.cli", "ingest", str(path), str(corpus), *args],
            capture_output=True, text=True,
        )  # fmt: skip
        if not error:
            assert done.returncode == 0, done.stderr
            continue
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith(f"actstore: error: {corpus}: ")
        assert error.format(corpus) in done.stderr
    with actstore.open(path) as store:
        assert [s.shuffle_seed for s in store.sources] == [None, 7, 8]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["images", "photos"], "--shuffle-words is for CoNLL-U files, not images"),
        (["vectors", "--glove"], "--shuffle-words is for CoNLL-U files, not vectors"),
        (["x.conllu"], "--shuffle-words must be an integer 0..9223372036854775807"),
    ],
)
def test_refused_in_one_line(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = "-1" if args == ["x.conllu"] else "3"
    path = tmp_path / "new.actstore"
    assert main(["ingest", str(path), *args, "--shuffle-words", seed]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"actstore: error: {message}") and err.count("\n") == 1, err
    assert not path.exists()


def test_manifest_without_the_field_still_loads(ewt_small: Path, tmp_path: Path) -> None:
    path = tmp_path / "old.actstore"
    shutil.copytree(ewt_small, path)
    manifest = json.loads((path / "manifest.json").read_text())
    for source in manifest["sources"]:
        source.pop("shuffle_seed", None)
    manifest["format_version"] = 3
    (path / "manifest.json").write_text(json.dumps(manifest))
    with actstore.open(path) as store:
        assert [s.shuffle_seed for s in store.sources] == [None]


def test_every_new_store_has_the_shuffle_columns(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One filter for every store: ``shuffle_seed IS NULL`` works with no shuffled part."""
    path = tmp_path / "plain.actstore"
    assert main(["ingest", str(path), str(corpus)]) == 0
    capsys.readouterr()
    query = "SELECT count(*) AS n FROM sentences WHERE shuffle_seed IS NULL"
    assert main(["sql", str(path), query]) == 0
    assert capsys.readouterr().out.split() == ["n", str(N_SENTENCES)]
    n_words = sum(len(words) for words in read_words(corpus))
    query = "SELECT count(*) AS n FROM tokens WHERE shuffle_seed IS NULL"
    assert main(["sql", str(path), query]) == 0
    assert capsys.readouterr().out.split() == ["n", str(n_words)]
    with actstore.open(path) as store:
        tokens = store.sql("SELECT position, original_position FROM tokens ORDER BY row")
        types = {t: store.schema(t) for t in ("tokens", "sentences")}
    positions = [w["id"] for words in read_words(corpus) for w in words]
    assert tokens.original_position.tolist() == tokens.position.tolist() == positions
    assert str(types["tokens"].field("original_position").type) == "int32"
    assert str(types["tokens"].field("shuffle_seed").type) == "int64"
    assert str(types["sentences"].field("shuffle_seed").type) == "int64"
    assert "original_position" not in types["sentences"].names
    assert main(["info", str(path)]) == 0 and "shuffled=" not in capsys.readouterr().out


def test_a_store_ingested_before_the_columns_still_reads(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Parts written without the columns (as before they were added) read as before; a
    file ingested later brings them, NULL over the old rows."""
    import actstore.ingest as ingest

    def without_columns(made: Any) -> Any:
        def make(*args: Any) -> Any:
            table = made(*args)
            return table.drop_columns(
                [c for c in ingest.SHUFFLE_COLUMNS if c in table.schema.names]
            )

        return make

    path = tmp_path / "old.actstore"
    with monkeypatch.context() as patch:  # parts as an older actstore wrote them
        for name in ("tokens_table", "sentences_table"):
            patch.setattr(ingest, name, without_columns(getattr(ingest, name)))
        with actstore.create(path) as store:
            actstore.ingest_conllu(store, [corpus])
    with actstore.open(path) as store:
        assert "shuffle_seed" not in store.schema("tokens").names
        assert "shuffle_seed" not in store.schema("sentences").names
        n_old = store.n_rows("tokens")
    assert main(["info", str(path)]) == 0
    capsys.readouterr()
    with actstore.open(path, mode="a") as store:
        actstore.ingest_conllu(store, [corpus], shuffle_words=SEED)
        seeds = store.sql(
            "SELECT shuffle_seed IS NULL AS original, count(*) AS n, "
            "count(original_position) AS known, min(row) AS first FROM tokens "
            "GROUP BY ALL ORDER BY ALL"
        )
    assert seeds.values.tolist() == [[False, n_old, n_old, n_old], [True, n_old, 0, 0]]
