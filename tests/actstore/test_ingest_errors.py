"""Bad CoNLL-U input: one clear line naming file and line, exit status 2, store untouched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from actstore.cli import main


def w(id_: str, form: str, head: str, deprel: str = "dep", feats: str = "_") -> str:
    return "\t".join([id_, form, form.lower(), "X", "_", feats, head, deprel, "_", "_"])


GOOD = [w("1", "Dogs", "2"), w("2", "bark", "0", "root"), ""]
# name: (lines of the bad file, expected line number or None, words the message must contain)
CASES: dict[str, tuple[list[str], int | None, str]] = {
    "column count": (
        ["# sent_id = a", "1\tDogs\tdog\tNOUN", *GOOD],
        2,
        "expected 10 tab-separated columns, found 4",
    ),
    "non-integer id": ([w("1", "A", "2"), w("x", "b", "0", "root"), ""], 2, "malformed ID 'x'"),
    "head out of range": (
        [w("1", "A", "7"), w("2", "b", "0", "root"), ""],
        1,
        "HEAD 7 is out of range",
    ),
    "head not integer": ([w("1", "A", "_"), ""], 1, "HEAD must be 0 or a word ID"),
    "head in arabic digits": (
        [w("1", "A", "\u0662"), w("2", "B", "0", "root"), ""],
        1,
        "HEAD must be 0 or a word ID",
    ),
    "head with underscore": ([w("1", "A", "0_2"), w("2", "B", "0", "root"), ""], 1, "HEAD must"),
    "head with sign": ([w("1", "A", "+2"), w("2", "B", "0", "root"), ""], 1, "HEAD must"),
    "id with leading zero": ([w("01", "A", "0", "root"), ""], 1, "malformed ID '01'"),
    "overlapping multiword ranges": (
        [
            "1-2\tab\t_\t_\t_\t_\t_\t_\t_\t_",
            w("1", "a", "0", "root"),
            "2-3\tbc\t_\t_\t_\t_\t_\t_\t_\t_",
            w("2", "b", "1"),
            w("3", "c", "1"),
            "",
        ],
        3,
        "overlaps 1-2",
    ),
    "nested multiword ranges": (
        [
            "1-3\tabc\t_\t_\t_\t_\t_\t_\t_\t_",
            "1-2\tab\t_\t_\t_\t_\t_\t_\t_\t_",
            w("1", "a", "0", "root"),
            w("2", "b", "1"),
            w("3", "c", "1"),
            "",
        ],
        2,
        "overlaps 1-3",
    ),
    "duplicate feature": (
        [w("1", "A", "0", "root", feats="Case=Nom|Case=Acc"), ""],
        1,
        "feature Case appears twice",
    ),
    "lowercase feature": (
        [w("1", "A", "0", "root", feats="case=Nom"), ""],
        1,
        "malformed FEATS item 'case=Nom'",
    ),
    "unsorted features": (
        [w("1", "A", "0", "root", feats="Number=Sing|Case=Nom"), ""],
        1,
        "are not sorted alphabetically",
    ),
    "cycle": ([w("1", "A", "2"), w("2", "B", "1"), w("3", "C", "0", "root"), ""], 1, "cycle"),
    "self loop": ([w("1", "A", "1"), w("2", "B", "0", "root"), ""], 1, "cycle"),
    "no root": (
        [*GOOD, "# sent_id = b", w("1", "A", "2"), w("2", "B", "1"), ""],
        4,
        "exactly one root (HEAD 0), found 0",
    ),
    "two roots": ([w("1", "A", "0", "root"), w("2", "B", "0", "root"), ""], 1, "found 2"),
    "duplicate id": (
        [w("1", "A", "2"), w("2", "B", "0", "root"), w("2", "C", "2"), ""],
        3,
        "duplicate word ID 2",
    ),
    "skipped id": ([w("1", "A", "3"), w("3", "B", "0", "root"), ""], 2, "expected 2, got 3"),
    "comment inside sentence": (
        [w("1", "A", "0", "root"), "# late", ""],
        2,
        "comment line inside a sentence",
    ),
    "bad multiword range": (
        ["3-1\tdon't\t_\t_\t_\t_\t_\t_\t_\t_", *GOOD],
        1,
        "multiword token 3-1",
    ),
    "multiword past end": (
        ["1-3\tdunno\t_\t_\t_\t_\t_\t_\t_\t_", *GOOD],
        1,
        "runs past the sentence's last word (2)",
    ),
    "malformed feats": (
        [w("1", "A", "0", "root", feats="Case"), ""],
        1,
        "malformed FEATS item 'Case'",
    ),
    "empty file": ([], None, "no sentences found"),
}


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def existing_store(tmp_path: Path, dev_store_path: Path) -> Path:
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(dev_store_path, copy)
    return copy


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_is_refused_cleanly(
    name: str, tmp_path: Path, existing_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines, line, words = CASES[name]
    bad = tmp_path / "bad.conllu"
    bad.write_text("\n".join(lines), encoding="utf-8")
    before = tree_digest(existing_store)
    assert main(["ingest", str(bad), "--store", str(existing_store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    where = f"{bad}:{line}: " if line is not None else f"{bad}: "
    assert err.startswith(f"actstore: error: {where}"), err
    assert words in err
    assert tree_digest(existing_store) == before


def test_invalid_utf8(
    tmp_path: Path, existing_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "latin1.conllu"
    bad.write_bytes(
        "\n".join(GOOD).encode()
        + "\n".join(["", w("1", "café", "0", "root"), ""]).encode("latin-1")
    )
    before = tree_digest(existing_store)
    assert main(["ingest", str(bad), "--store", str(existing_store)]) == 2
    assert f"{bad}:4: invalid UTF-8 (byte 0xe9" in capsys.readouterr().err
    assert tree_digest(existing_store) == before


def test_missing_file_and_good_file_together(
    tmp_path: Path, existing_store: Path, ewt_dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing is ingested when one of several files is bad, even the good ones before it."""
    good = tmp_path / "good.conllu"
    good.write_text("\n".join(GOOD), encoding="utf-8")
    before = tree_digest(existing_store)
    missing = tmp_path / "nope.conllu"
    assert main(["ingest", str(good), str(missing), "--store", str(existing_store)]) == 2
    assert capsys.readouterr().err == f"actstore: error: {missing}: file not found\n"
    assert tree_digest(existing_store) == before


def test_same_file_twice_is_refused(
    existing_store: Path, ewt_dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree_digest(existing_store)
    assert main(["ingest", str(ewt_dev), "--store", str(existing_store)]) == 2
    assert "already in the store" in capsys.readouterr().err
    assert tree_digest(existing_store) == before


def test_failed_first_ingest_leaves_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.conllu"
    bad.write_text(w("1", "A", "9"), encoding="utf-8")
    assert main(["ingest", str(bad), "--store", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()


def test_real_process_prints_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conllu"
    bad.write_text("\n".join(CASES["cycle"][0]), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "actstore.cli", "ingest", str(bad), "--store", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"actstore: error: {bad}:1: word 1 ('A') is on a cycle")
