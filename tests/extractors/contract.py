"""The contract every extractor passes (as zarr-python's store tests do for stores).

Subclass :class:`ExtractorContract`, give it ``run`` (extract into a store in this
process) and ``command`` (the same as a command line, for the crash test), and it
checks: every site covers its table's rows, has the declared dtype, holds no NaN,
is deterministic, and resumes after SIGKILL to byte-identical arrays.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import zarr

import actstore


def chunk_bytes(store: Path) -> dict[str, bytes]:
    """Every chunk file of every site, by path relative to the arrays folder."""
    root = store / "arrays.zarr"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("c/*/*"))}


def clone(template: Path, dst: Path) -> Path:
    shutil.copytree(template, dst, ignore=shutil.ignore_patterns(".lock", ".commit.lock"))
    return dst


class ExtractorContract:
    """Mix into a test class; set ``dtype`` and implement ``run`` and ``command``."""

    dtype = "float16"

    def run(self, store: Path) -> None:
        raise NotImplementedError

    def command(self, store: Path) -> list[str]:
        raise NotImplementedError

    def test_sites_cover_table_rows(self, extracted: Path) -> None:
        with actstore.open(extracted) as store:
            assert store.sites, "the extractor wrote no site"
            for site in store.sites.values():
                assert site.status == "complete"
                assert site.n_rows == store.n_rows(site.table)
                assert store.acts(site.name).shape == (site.n_rows, site.n_units)

    def test_dtype_as_declared(self, extracted: Path) -> None:
        storage = {"float16": "float16", "float32": "float32", "bfloat16": "uint16"}
        with actstore.open(extracted) as store:
            for site in store.sites.values():
                assert site.dtype == self.dtype
                array = zarr.open_array(str(extracted / "arrays.zarr" / site.name), mode="r")
                assert str(array.dtype) == storage[self.dtype]

    def test_no_nan_nothing_dropped(self, extracted: Path) -> None:
        with actstore.open(extracted) as store:
            for name in store.sites:
                values = store.acts(name).values
                assert np.isfinite(values).all(), name
                assert (np.abs(values).sum(axis=1) > 0).all(), f"{name}: a row was never written"

    def test_deterministic(self, extracted: Path, template: Path, tmp_path: Path) -> None:
        again = clone(template, tmp_path / "again")
        self.run(again)
        assert chunk_bytes(again) == chunk_bytes(extracted)

    def test_resume_after_sigkill_is_byte_identical(
        self, extracted: Path, template: Path, tmp_path: Path
    ) -> None:
        killed = clone(template, tmp_path / "killed")
        proc = subprocess.Popen(self.command(killed))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((killed / "progress").rglob("*.done"))) >= 3:
                break
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with actstore.open(killed) as store:
            statuses = {s.status for s in store.sites.values()}
            assert "partial" in statuses, "the extraction must be killed mid-way"
            assert store.n_rows("tokens") > 0  # the committed state is readable
        subprocess.run(self.command(killed), check=True)
        assert not list((killed / "arrays.zarr").rglob("*.partial")), "debris of the killed run"
        assert chunk_bytes(killed) == chunk_bytes(extracted)
