"""Progress: one switch (ACTSTORE_PROGRESS, ``quiet``, ``configure``); the extraction's
bar, advanced per model batch, drawn when asked and silent otherwise; the stored values
the same either way."""

from __future__ import annotations

import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import actstore
from actstore import progress
from extractors.base import Block, Extractor, SiteSpec
from extractors.driver import run
from extractors.verbs import ExtractOptions


def drawn(text: str) -> list[str]:
    """The counts a captured bar showed, in order, each redraw once ("3", "1.02k")."""
    counts = re.findall(r"\| *([0-9.]+[kMG]?)/[0-9.]+[kMG]? \[", text)
    return [c for i, c in enumerate(counts) if i == 0 or c != counts[i - 1]]


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars forced on, redrawn at every update."""
    monkeypatch.setenv("ACTSTORE_PROGRESS", "1")
    monkeypatch.setattr(progress, "MIN_INTERVAL", 0.0)


def test_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    module = progress
    monkeypatch.delenv("ACTSTORE_PROGRESS", raising=False)
    assert not module.active()  # pytest captures stderr: nobody watches
    assert module.active(True) and not module.active(False)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert module.active()  # a Jupyter kernel: stderr is no terminal, but bars show
    monkeypatch.delitem(sys.modules, "ipykernel")
    monkeypatch.setenv("ACTSTORE_PROGRESS", "1")
    assert module.active()
    with module.quiet():  # --quiet wins over the environment
        assert not module.active() and module.active(True)
    assert module.active()
    with module.quiet(False):
        assert module.active()
    module.configure(False)
    assert not module.active()
    module.configure(None)
    assert not module.active()


def test_a_bar_draws_only_when_shown(
    shown: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with progress.bar(3, unit="blocks", desc="sums") as bar:
        for _ in range(3):
            bar.update(1)
    assert drawn(capsys.readouterr().err) == ["0", "1", "2", "3"]
    with progress.quiet(), progress.bar(3, desc="sums") as bar:
        bar.update(3)
    monkeypatch.setenv("ACTSTORE_PROGRESS", "auto")  # pytest's stderr is no terminal
    with progress.bar(3, desc="sums") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


class Rows(Extractor):
    """Each row's number plus one, a chunk cut into batches of 100 rows."""

    name = "rows"
    row_unit = "words"

    def sites(self) -> list[SiteSpec]:
        return [SiteSpec("rows/id", n_units=2)]

    def batches(self, lo: int, hi: int) -> list[tuple[int, int]]:
        return [(a, min(a + 100, hi)) for a in range(lo, hi, 100)]

    def compute(self, batch: tuple[int, int]) -> Block:
        rows = np.arange(*batch)
        return Block(rows, [np.stack([rows + 1.0, -rows], axis=1).astype(np.float32)])


def _extract(template: Path, path: Path) -> np.ndarray:
    shutil.copytree(template, path)
    run(path, Rows(), ExtractOptions(device="cpu", dtype="float32", chunk_rows=512))
    with actstore.open(path) as store:
        return np.asarray(store.acts("rows/id").values)


def test_extraction_shows_each_batch_and_writes_the_same(
    ewt_small: Path,
    tmp_path: Path,
    shown: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with actstore.open(ewt_small) as store:
        n_rows = store.n_rows()
    watched = _extract(ewt_small, tmp_path / "on.actstore")
    err = capsys.readouterr().err
    assert "extract:" in err and "words/s" in err
    # batches of 100 rows, the last of each chunk of 512 shorter: 0, then every batch
    chunks = [(lo, min(lo + 512, n_rows)) for lo in range(0, n_rows, 512)]
    n_batches = sum(-(-(hi - lo) // 100) for lo, hi in chunks)
    assert len(chunks) >= 3 and len(drawn(err)) == 1 + n_batches
    with progress.quiet():
        unwatched = _extract(ewt_small, tmp_path / "quiet.actstore")
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(watched, unwatched)
    assert watched.tobytes() == unwatched.tobytes()
