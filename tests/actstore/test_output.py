"""Printing tables and where output may go: an empty result prints its header, an
output path under a file or in a folder that cannot be written is refused before any
work. The expected strings are written by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from actstore.cli import main


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
