"""The images-beside-words example end to end (docs/examples/images_end_to_end.py), small."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "images_end_to_end.py"
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("skimage")


def test_the_images_example_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path), "--per-class", "3"],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "       cat     1    285   Egyptian cat" in out  # the photo's top-1 class
    assert "    coffee     1    967       espresso" in out
    with (tmp_path / "block_vs_glove.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["site"] for r in rows] == [
        *(f"effnet-lite0/block.{i}" for i in range(16)),
        "effnet-lite0/pool",
    ]
    assert all(-1 <= float(r["digits_10"]) <= 1 for r in rows)
