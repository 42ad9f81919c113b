"""The contract every extractor passes, shipped for third parties (as ``zarr.testing``).

Subclass :class:`ExtractorContract` in a pytest module, give it ``make_extractor``
and a ``template`` fixture (a store with the extractor's row table ingested and no
sites), and it checks through the public store API that:

- every site covers its table's rows, is complete and has the declared dtype;
- no value is NaN and no row was left unwritten (all zero);
- two runs write the same bytes (if ``deterministic``);
- a run killed with SIGKILL resumes to the same bytes (if ``resumable``), and two
  shards together write the same bytes as one process (if ``shardable``);
- after more rows are ingested, a second run computes only the new rows (and the
  chunk they share with the old ones) and the sites hold the same bytes as one run
  over everything (if ``deterministic``; the template's first source is split in two);
- an empty table gives empty sites or one clear error, as ``allows_zero_rows`` says.

The killed run is a forked child that stops after two chunks; give ``command`` (a
command line doing the same extraction) to kill a real ``actstore extract`` instead.

Examples
--------
>>> import pytest
>>> from extractors.base import Block, Extractor, SiteSpec
>>> class Ones(Extractor):
...     name = "ones"
...     def sites(self):
...         return [SiteSpec("ones/unit", n_units=2)]
...     def compute(self, batch):
...         return Block(np.arange(*batch), [np.ones((batch[1] - batch[0], 2))])
>>> class TestOnes(ExtractorContract):
...     def make_extractor(self):
...         return Ones()
...     @pytest.fixture(scope="class")
...     @classmethod
...     def template(cls, ewt_small):
...         return ewt_small
>>> sorted(n for n in dir(TestOnes) if n.startswith("test_"))[:3]
['test_deterministic', 'test_dtype_as_declared', 'test_grows_with_its_table']
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import actstore
from actstore.chunks import CHECKSUMS
from actstore.growth import EXTENT_KEYS
from actstore.manifest import SourceInfo
from extractors.base import Extractor
from extractors.driver import ExtractReport, run
from extractors.verbs import ExtractOptions

STORED_AS = {"float16": "float16", "bfloat16": "float32", "float32": "float32"}


def clone(template: Path, dst: Path) -> Path:
    """A copy of a store (without its lock files) at ``dst``.

    Examples
    --------
    >>> store.close()
    >>> clone(store_path, tmp / "copy").joinpath("manifest.json").is_file()
    True
    """
    shutil.copytree(template, dst, ignore=shutil.ignore_patterns(".lock", ".commit.lock"))
    return dst


def site_bytes(path: str | Path) -> dict[str, tuple[Any, bytes]]:
    """Per site: its declaration (everything :meth:`Store.site` says) and stored bytes.

    Examples
    --------
    >>> store.close()
    >>> info, data = site_bytes(store_path)["toy/layer.0"]
    >>> info.n_units, len(data)
    (16, 22336)
    """
    with actstore.open(path) as store:
        return {  # the array's path names the commit that declared it: not compared
            name: (
                dataclasses.replace(store.site(name), path=""),
                store.acts(name, dtype=None).values.tobytes(),
            )
            for name in sorted(store.sites)
        }


def stored_files(where: str | Path) -> dict[str, Any]:
    """Per site: its manifest record without timestamp and path (which names the commit
    that declared it), and the bytes of its array's metadata, checksums and every chunk,
    wherever the store is (a directory or a URL).

    Examples
    --------
    >>> store.close()
    >>> record, files = stored_files(store_path)["toy/layer.0"]
    >>> record["n_units"], sorted(files)
    (16, ['c/0', 'checksums.json', 'zarr.json'])
    """
    with actstore.open(where) as store:
        storage, sites = store.storage, store.manifest_records().sites
    out: dict[str, Any] = {}
    for name, record in sites.items():
        files = {f: storage.read_bytes(f"{record.path}/{f}") for f in ("zarr.json", CHECKSUMS)}
        files.update(
            {f"c/{c}": storage.read_bytes(f"{record.path}/c/{c}/0") for c in range(record.n_chunks)}
        )
        kept = {k: v for k, v in dataclasses.asdict(record).items() if k not in ("created", "path")}
        out[name] = (kept, files)
    return out


def chunks_written(path: str | Path) -> int:
    """Chunks durably written so far, summed over sites (a running writer's too)."""
    with actstore.open(path) as store:
        return sum(len(store.written_chunks(name)) for name in store.sites)


class ExtractorContract:
    """Mix into a pytest class; implement :meth:`make_extractor`, give ``template``.

    Override :meth:`options` for other settings (chunk rows, dtype); the site dtype
    checked is ``options().dtype``.
    """

    chunk_rows = 256
    kill_after_chunks = 2

    def make_extractor(self) -> Extractor:
        """A fresh extractor to run (called once per run)."""
        raise NotImplementedError

    def options(self) -> ExtractOptions:
        """The options every run uses."""
        return ExtractOptions(device="cpu", chunk_rows=self.chunk_rows)

    def command(self, store: Path) -> list[str] | None:
        """A command line doing the same extraction (None: fork this process instead)."""
        return None

    def run(
        self, store: Path, on_chunk: Callable[[int], None] | None = None, **changes: Any
    ) -> ExtractReport:
        """Extract into ``store`` in this process (``changes`` alter the options)."""
        options = replace(self.options(), **changes)
        return run(store, self.make_extractor(), options, on_chunk=on_chunk)

    def _flags(self) -> type[Extractor]:
        return type(self.make_extractor())

    @pytest.fixture(scope="class")
    @classmethod
    def template(cls) -> Path:
        """A store with the extractor's row table and no sites; override it."""
        raise NotImplementedError("define a `template` fixture: a store holding the rows")

    @pytest.fixture(scope="class")
    @classmethod
    def extracted(cls, template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """The template, extracted once by an uninterrupted run."""
        store = clone(template, tmp_path_factory.mktemp("extracted") / "s")
        cls().run(store)
        return store

    # -- the checks ----------------------------------------------------------------------
    def test_sites_cover_table_rows(self, extracted: Path) -> None:
        with actstore.open(extracted) as store:
            assert store.sites, "the extractor wrote no site"
            for name in store.sites:
                site = store.site(name)
                assert site.status == "complete", name
                assert site.n_rows == store.n_rows(site.table) > 0, name
                assert store.acts(name).shape == site.shape

    def test_dtype_as_declared(self, extracted: Path) -> None:
        dtype = self.options().dtype
        with actstore.open(extracted) as store:
            for name in store.sites:
                assert store.site(name).dtype == dtype, name
                assert str(store.acts(name, dtype=None).dtype) == STORED_AS[dtype], name

    def test_no_nan_nothing_dropped(self, extracted: Path) -> None:
        with actstore.open(extracted) as store:
            for name in store.sites:
                values = store.acts(name).values.reshape(store.site(name).n_rows, -1)
                assert np.isfinite(values).all(), name
                written = np.abs(values).sum(axis=1) > 0
                assert written.all(), f"{name}: row {np.flatnonzero(~written)[0]} never written"

    def test_deterministic(self, extracted: Path, template: Path, tmp_path: Path) -> None:
        if not self._flags().deterministic:
            pytest.skip("the extractor is not deterministic")
        again = clone(template, tmp_path / "again")
        self.run(again)
        assert site_bytes(again) == site_bytes(extracted)

    def test_shards_equal_one_process(
        self, extracted: Path, template: Path, tmp_path: Path
    ) -> None:
        flags = self._flags()
        if not (flags.shardable and flags.deterministic):
            pytest.skip("the extractor cannot run in shards (or is not deterministic)")
        sharded = clone(template, tmp_path / "sharded")
        for index in range(2):
            self.run(sharded, shard=f"{index}/2")
        assert site_bytes(sharded) == site_bytes(extracted)

    def test_resume_after_sigkill_is_byte_identical(
        self, extracted: Path, template: Path, tmp_path: Path
    ) -> None:
        flags = self._flags()
        if not (flags.resumable and flags.deterministic):
            pytest.skip("the extractor does not resume (or is not deterministic)")
        killed = clone(template, tmp_path / "killed")
        command = self.command(killed)
        if command is None:
            self._kill_forked_run(killed)
        else:
            self._kill_command(command, killed)
        with actstore.open(killed) as store:
            assert store.sites, "the run was killed before declaring its sites"
            statuses = {store.site(name).status for name in store.sites}
            assert "partial" in statuses, "the extraction must be killed mid-way"
        if command is None:
            self.run(killed)
        else:
            subprocess.run(command, check=True)
        assert site_bytes(killed) == site_bytes(extracted)

    def test_grows_with_its_table(self, extracted: Path, template: Path, tmp_path: Path) -> None:
        if not self._flags().deterministic:
            pytest.skip("the extractor is not deterministic")
        with actstore.open(template) as store:
            sources = store.sources
        if not sources or sources[0].n_sentences < 2 or sources[0].subset is not None:
            pytest.skip("the template's first source cannot be split in two")
        half = sources[0].n_sentences // 2
        grown = tmp_path / "grown.actstore"
        with actstore.create(grown) as store:
            _ingest(store, sources[0], (0, half))
            n_before = store.n_rows(self._flags().table)
        self.run(grown)
        with actstore.open(grown, mode="a") as store:
            _ingest(store, sources[0], (half, None))
            for source in sources[1:]:
                _ingest(store, source, None)
            n_after = store.n_rows(self._flags().table)
        report = self.run(grown)
        chunk_rows = replace(self.options()).chunk_rows or n_after
        assert n_after - n_before <= report.rows <= n_after - n_before + chunk_rows
        assert self.run(grown).nothing_to_do
        assert _settings(site_bytes(grown)) == _settings(site_bytes(extracted))

    def test_zero_rows(self, tmp_path: Path) -> None:
        empty = tmp_path / "empty.actstore"
        actstore.create(empty).close()
        if not self._flags().allows_zero_rows:
            with pytest.raises(actstore.ActStoreError, match="has no"):
                self.run(empty)
            with actstore.open(empty) as store:
                assert not store.sites, "a refused run must declare nothing"
            return
        self.run(empty)
        with actstore.open(empty) as store:
            for name in store.sites:
                assert store.site(name).status == "complete"
                assert store.acts(name).shape[0] == 0

    # -- killing a run -------------------------------------------------------------------
    def _kill_forked_run(self, store: Path) -> None:
        """Fork a child that extracts and stops after a few chunks; SIGKILL it there."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                os.close(read)
                self.run(store, on_chunk=_pause_after(self.kill_after_chunks, write))
            finally:
                os._exit(1)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            pipe.read(1)  # the child paused (or died)
        time.sleep(0.05)  # let the writer thread land mid-way through a chunk, or not
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

    def _kill_command(self, command: list[str], store: Path) -> None:
        proc = subprocess.Popen(command)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if (store / "manifest.json").is_file() and chunks_written(store) >= 3:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _ingest(
    store: actstore.Store, source: SourceInfo, sentences: tuple[int, int | None] | None
) -> None:
    actstore.ingest_conllu(
        store, [source.path], corpus=source.corpus, lang=source.lang, split=source.split,
        sentences=sentences,
    )  # fmt: skip


def _settings(sites: dict[str, tuple[Any, bytes]]) -> dict[str, tuple[Any, bytes]]:
    """Site declarations and bytes, leaving out the provenance that says how much of the
    corpus a site covers (it was ingested in two parts)."""
    return {
        name: (replace(info, provenance=_without_extent(info.provenance)), data)
        for name, (info, data) in sites.items()
    }


def _without_extent(provenance: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in provenance.items() if k not in EXTENT_KEYS}


def _pause_after(n_chunks: int, signal_fd: int) -> Callable[[int], None]:
    """For a forked child: after ``n_chunks`` chunks, tell the parent and wait to die."""
    seen: list[int] = []

    def pause(chunk: int) -> None:
        seen.append(chunk)
        if len(seen) >= n_chunks:
            os.write(signal_fd, b"x")
            while True:
                time.sleep(1)

    return pause
