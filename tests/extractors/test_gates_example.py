"""The recurrent papers' analyses end to end (docs/examples/gates_end_to_end.py), small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "gates_end_to_end.py"


@pytest.mark.slow
def test_the_end_to_end_example_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path), "--sentences", "300", "--epochs", "1"],
        capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lstm = (tmp_path / "lstm.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in lstm[2:]] == [f"| {c}" for c in "hcifgo"]
    for line in lstm[2:]:  # UPOS from any component of a trained LM beats the majority
        cells = line.strip("| ").split(" | ")
        assert float(cells[1]) > float(cells[2]) + 0.2, line
    for name in ("imaginet_by_upos.md", "imaginet_by_deprel.md"):
        header = (tmp_path / name).read_text().splitlines()[0]
        assert header == "| category | dred | keep | zmean | n |"
