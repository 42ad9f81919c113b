"""One command-line grammar: the store first (``--store`` too), negative values, subsets,
a demo that rebuilds only its own stores."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

import actstore
from actstore.cli import negative_values, parser
from actstore.verbs import discover
from tests.conftest import first_sentences


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actstore.cli", *args], capture_output=True, text=True, check=False
    )


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("actstore: error: ") and proc.stderr.count("\n") == 1
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.fixture
def sample(tmp_path: Path, ewt_dev: Path) -> Path:
    path = tmp_path / "en_ewt-ud-dev.conllu"
    path.write_text(first_sentences(ewt_dev, 40), encoding="utf-8")
    return path


def forms(store_path: Path) -> list[str]:
    with actstore.open(store_path) as store:
        return [str(f) for f in store.sql("SELECT form FROM tokens ORDER BY row").form]


def test_negative_values_parse() -> None:
    argv = ["probe", "s", "--sites", "layer.*", "--offsets", "-2,-1,0,1,2", "--seed", "-0"]
    args = parser(discover()).parse_args(negative_values(argv))
    assert args.offsets == (-2, -1, 0, 1, 2) and args.store == "s"


def test_ingest_takes_the_store_first_or_as_store(sample: Path, tmp_path: Path) -> None:
    first, alias = tmp_path / "first.actstore", tmp_path / "alias.actstore"
    assert cli("ingest", str(first), str(sample)).returncode == 0
    assert cli("ingest", str(sample), "--store", str(alias)).returncode == 0
    assert forms(first) == forms(alias) and len(forms(first)) > 400
    one_line_error(cli("ingest", str(sample), str(sample)), "the store comes first")
    one_line_error(cli("info"), "store is missing: give the store as the first argument")


def test_ingest_subsets_and_gzip(sample: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.actstore"
    assert cli("ingest", str(whole), str(sample)).returncode == 0
    zipped = tmp_path / "en_ewt-ud-dev.conllu.gz"
    zipped.write_bytes(gzip.compress(sample.read_bytes()))
    parts = tmp_path / "parts.actstore"
    assert cli("ingest", str(parts), str(zipped), "--limit", "15").returncode == 0
    assert cli("ingest", str(parts), str(sample), "--sentences", "15:").returncode == 0
    assert forms(parts) == forms(whole)
    with actstore.open(parts) as store:
        sources = store.sources
        labels = store.sql("SELECT DISTINCT corpus, split FROM sentences")
    assert [s.subset for s in sources] == ["sentences 0:15", "sentences 15:40"]
    assert [s.n_sentences for s in sources] == [15, 25]
    assert labels.values.tolist() == [["en_ewt", "dev"]]  # named after the .gz file's stem
    one_line_error(cli("ingest", str(parts), str(sample), "--sentences", "10:20"), "already in")
    one_line_error(cli("ingest", str(parts), str(sample), "--sentences", "50:"), "none in 50:")
    one_line_error(cli("ingest", str(parts), str(sample), "--sentences", "x"), "expected A:B")


def test_demo_rebuilds_only_its_own_stores(sample: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.actstore"
    assert cli("ingest", str(mine), str(sample)).returncode == 0
    before = (mine / "manifest.json").read_bytes()
    one_line_error(cli("demo", str(mine)), "was not made by actstore demo")
    assert (mine / "manifest.json").read_bytes() == before


def test_demo_without_its_packages_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from actstore import demo
    from actstore.core_verbs import DemoParams

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(actstore.ActStoreError, match=r"need torch: pip install torch .*\[demo\]"):
        demo.demo(DemoParams(store=tmp_path / "d.actstore"))
    assert not (tmp_path / "d.actstore").exists()


def test_store_alias_edge_cases_and_quiet_output(sample: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.actstore"
    assert cli("ingest", str(store), str(sample)).returncode == 0
    one_line_error(
        cli("sql", str(store), "SELECT 1", "--store", str(store)), "given twice"
    )  # no positional files to take the first argument
    one_line_error(cli("demo", "--store", str(store)), "was not made by actstore demo")
    out = tmp_path / "q.csv"
    proc = cli("sql", str(store), "SELECT count(*) AS n FROM sentences", "-q", "--format", "csv",
               "-o", str(out))  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == ""
    assert out.read_text() == "n\n40\n"  # --quiet silences stdout, never the file asked for
    proc = cli("sql", str(store), "SELECT 7 AS n", "--format", "csv", "-o", "-")
    assert proc.stdout == "n\n7\n" and not Path("-").exists()
