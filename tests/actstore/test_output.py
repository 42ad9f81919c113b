"""Printing tables and where output may go: an empty result prints its header, an
output path under a file or in a folder that cannot be written is refused before any
work. The expected strings are written by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actstore.cli import main
from actstore.errors import ParameterError
from actstore.output import check_output_path


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """What ``actstore ARGV`` says on stderr when it fails as a user mistake."""
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("actstore: error: "), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    return captured.err


def test_an_empty_result_prints_its_header(
    ewt_small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "SELECT 1 AS x, 'a' AS longer_name WHERE false"
    assert main(["sql", str(ewt_small), query]) == 0
    assert capsys.readouterr().out == "x longer_name\n"
    assert main(["sql", str(ewt_small), query, "--format", "csv"]) == 0
    assert capsys.readouterr().out == "x,longer_name\n"
    assert main(["sql", str(ewt_small), query, "--format", "json"]) == 0
    assert capsys.readouterr().out == "[]\n"


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actstore.cli", *args],
        capture_output=True, text=True, check=False, cwd=cwd,
    )  # fmt: skip


def test_an_output_under_a_file_is_refused_before_the_work(ewt_small: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("keep me\n", encoding="utf-8")
    # the store has no site: a refusal naming the path shows the path came first
    show = ["show", str(ewt_small), "--site", "toy/layer.0", "--unit", "0"]
    for target in ("afile/u.svg", "afile/deeper/u.html"):
        proc = _cli(tmp_path, *show, "-o", target)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == f"actstore: error: --output {target}: afile is a file, not a folder\n"
    proc = _cli(tmp_path, "sql", str(ewt_small), "SELECT 1 AS x", "-o", "afile/x.csv")
    assert proc.stderr == "actstore: error: --output afile/x.csv: afile is a file, not a folder\n"
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_output_folder_that_cannot_be_written_is_named(
    ewt_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # root may write anywhere, so the folder's permission is what os.access says here
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    show = ["show", str(ewt_small), "--site", "toy/layer.0", "--unit", "0"]
    for target in (locked / "u.svg", locked / "new" / "u.html"):
        err = _error(capsys, *show, "-o", str(target))
        assert err == f"actstore: error: --output {target}: the folder {locked} is not writable\n"
    with pytest.raises(ParameterError, match=r"^plot .*u\.png: the folder .*locked is not wri"):
        check_output_path(locked / "u.png", "plot")
    assert check_output_path(tmp_path / "new" / "u.png") == tmp_path / "new" / "u.png"
    assert not list(locked.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(ParameterError, match=r"the folder .*locked is not writable"):
        check_output_path(locked / "u.svg")
