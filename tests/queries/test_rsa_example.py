"""MiniLM against GloVe end to end (docs/examples/rsa_end_to_end.py), small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "rsa_end_to_end.py"


@pytest.mark.slow
def test_the_rsa_example_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path), "--sentences", "400", "--min-count", "5",
         "--permutations2", "9"],
        capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    glove = (tmp_path / "glove.md").read_text().splitlines()
    assert glove[0].startswith("| layer | RSA (Spearman r) | RSA p | 2 vs 2 accuracy |")
    assert [line.split(" | ")[0] for line in glove[2:]] == [f"| layer.{i}" for i in range(7)]
    for line in glove[2:]:
        cells = line.strip("| ").split(" | ")
        assert -1 <= float(cells[1]) <= 1 and 0 <= float(cells[3]) <= 1, line
    layers = (tmp_path / "layers.md").read_text().splitlines()
    assert layers[2].startswith("| layer.0 | 1.0 |")  # a layer against itself
