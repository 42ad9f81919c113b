"""User mistakes, OS errors and damaged files end in one line naming the path, through the
command line in a real process, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actstore.cli", *args],
        capture_output=True, text=True, check=False, **kw,  # type: ignore[call-overload]
    )  # fmt: skip


def _one_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("actstore: error: "), proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.fixture
def small(tmp_path: Path, ewt_small: Path) -> Path:
    return Path(shutil.copytree(ewt_small, tmp_path / "s.actstore"))


def test_disk_full_and_folders_for_output(small: Path, tmp_path: Path) -> None:
    _one_line(
        _cli("sql", str(small), "SELECT 1 AS x", "-o", "/dev/full"), "No space left", "/dev/full"
    )
    _one_line(_cli("sql", str(small), "SELECT 1 AS x", "-o", str(tmp_path)), "is a folder")


def test_non_regular_corpus_files(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.conllu"
    os.mkfifo(fifo)
    for source in (str(fifo), "/dev/zero"):
        proc = _cli("ingest", source, "--store", str(tmp_path / "s"), timeout=60)
        _one_line(proc, source, "not a regular file")
        assert not (tmp_path / "s").exists()  # a failed first ingest leaves no store


def test_damaged_manifest_and_parts(small: Path) -> None:
    manifest = json.loads((small / "manifest.json").read_text())
    (small / "manifest.json").write_text(json.dumps({**manifest, "format_version": "1"}))
    _one_line(_cli("sql", str(small), "SELECT 1 AS x"), "format_version must be an integer")
    broken = {k: v for k, v in manifest.items() if k != "created"}
    (small / "manifest.json").write_text(json.dumps(broken))
    _one_line(_cli("info", str(small)), "manifest.json: malformed manifest")
    (small / "manifest.json").write_text(json.dumps(manifest))
    (small / "tables" / "sentences" / "part-00000.parquet").unlink()
    proc = _cli("sql", str(small), "SELECT count(*) AS n FROM tokens")
    assert proc.returncode == 0 and proc.stdout.split()[-1].isdigit(), proc.stderr
    _one_line(
        _cli("sql", str(small), "SELECT count(*) FROM sentences"),
        "table sentences cannot be read",
        "actstore verify",
    )
    proc = _cli("verify", str(small))
    assert proc.returncode == 2 and "sentences" in proc.stdout and "unreadable" in proc.stdout


def test_query_timeout_and_ctrl_c(small: Path) -> None:
    slow = "SELECT count(*) FROM range(100000000000) a"
    _one_line(_cli("sql", str(small), slow, "--timeout", "0.5"), "stopped after 0.5 s")
    proc = subprocess.Popen(
        [sys.executable, "-m", "actstore.cli", "sql", str(small), slow],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "actstore: interrupted\n", err


def test_non_utf8_query_and_paths(small: Path, tmp_path: Path) -> None:
    odd = os.fsencode(str(tmp_path)) + b"/caf\xe9.actstore"
    shutil.copytree(small, os.fsdecode(odd))
    proc = subprocess.run(
        [sys.executable, "-m", "actstore.cli", "sql", odd, b"SELECT count(*) AS n FROM tokens"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "actstore.cli", "sql", str(small), b"SELECT '\xff' AS x"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and b"not valid UTF-8" in proc.stderr, proc.stderr


def test_filters_and_result_names_cannot_hurt_the_store(small: Path) -> None:
    _toy_site(small)
    base = ("correlate", str(small), "--sites", "toy/layer.0", "--with", "head_distance", "-q")
    _one_line(_cli(*base, "--where", "1=1) OR (1=1"), "--where is not one SQL expression")
    _one_line(_cli(*base, "--save", "Tokens"), "clashes with 'tokens'")
    assert _cli(*base, "--save", "corr").returncode == 0
    _one_line(
        _cli(*base, "--save", "corr"),
        "actstore: error: --replace is needed: a result named 'corr' exists already (or choose",
    )
    assert _cli(*base, "--save", "corr", "--replace").returncode == 0
    proc = _cli("sql", str(small), "SELECT count(*) AS n FROM tokens")
    assert proc.returncode == 0, proc.stderr  # the store still works


def _toy_site(store_path: Path, n_units: int = 4) -> None:
    import numpy as np

    import actstore

    with actstore.open(store_path, mode="a") as store:
        writer = store.create_site("toy/layer.0", n_units=n_units)
        writer.write(0, np.random.default_rng(0).standard_normal((store.n_rows(), n_units)))
        writer.commit()


def test_a_failing_command_commits_nothing(small: Path) -> None:
    _toy_site(small)
    before = (small / "manifest.json").read_bytes()
    measures = ("measures", str(small), "--sites", "toy/layer.0")
    _one_line(_cli(*measures, "--by", "nope"), "no column 'nope'")
    _one_line(_cli(*measures, "--save", "Tokens"), "clashes with 'tokens'")
    assert (small / "manifest.json").read_bytes() == before  # measures' own table too
    assert _cli(*measures, "--min-count", "1", "-q", "--save", "by_upos").returncode == 0
    proc = _cli("sql", str(small), "SELECT count(*) AS n FROM measures JOIN by_upos ON true")
    assert proc.returncode == 0, proc.stderr


def test_rows_ingested_after_a_site_was_written(small: Path, ewt_dev: Path, tmp_path: Path) -> None:
    from tests.conftest import first_sentences

    _toy_site(small)
    covered = int(_cli("sql", str(small), "SELECT count(*) AS n FROM tokens").stdout.split()[-1])
    more = tmp_path / "more.conllu"
    more.write_text(first_sentences(ewt_dev, 3), encoding="utf-8")
    assert _cli("ingest", str(more), "--store", str(small)).returncode == 0
    site = ("--sites", "toy/layer.0")
    for args in (
        ("correlate", *site, "--with", "depth"),
        ("correlate", *site, "--with", "depth", "--where", f"row >= {covered - 5}"),
        ("probe", *site, "--target", "upos"),
        ("dynamics", *site),
        ("measures", "--sites", "toy/layer.0"),
        ("selectivity", "--sites", "toy/layer.0", "--min-count", "1"),
    ):
        _one_line(
            _cli(args[0], str(small), *args[1:]),
            f"covers rows 0..{covered - 1}",
            "actstore extract to extend it",
        )
    proc = _cli("correlate", str(small), *site, "--with", "depth", "--where", f"row < {covered}")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ("probe", "--sites", "x", "--target", "upos", "--offsets=5000"),
            "--offsets must lie within",
        ),
        (
            ("probe", "--sites", "x", "--target", "upos", "--epochs", "nan"),
            "--epochs must be a finite",
        ),
        (
            ("correlate", "--sites", "x", "--with", "depth", "--top", "-1"),
            "--top must be at least 0",
        ),
        (("dynamics", "--sites", "x", "--min-words", "0"), "--min-words must be at least 2"),
        (("extract", "--chunk-rows", "0"), "--chunk-rows must be positive"),
        (("extract", "--max-length", "0"), "--max-length must be positive"),
    ],
)
def test_argument_holes(small: Path, args: tuple[str, ...], words: str) -> None:
    verb, *rest = args
    _one_line(_cli(verb, str(small), *rest), words)


def test_model_arguments_checked_against_the_model(small: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    _one_line(_cli("extract", str(small), "--model", str(broken)), "not a model configuration")
    _one_line(_cli("extract", str(small), "--max-length", "1"), "--max-length must lie in 4..512")
    _one_line(_cli("extract", str(small), "--chunk-rows", "100000000"), "--chunk-rows", "GiB")
