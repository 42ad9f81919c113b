"""``actstore copy``: a whole store to object storage (or back), every byte verified.

What is copied is what the source's manifest names, as of the moment it was opened:
table and result parts, matrices, site arrays (every chunk, ``zarr.json`` and
``checksums.json``), the progress markers of incomplete sites and the store's own
image files. Uncommitted debris and locks are not. Files go over ``jobs`` at a time.

Verification, before anything is visible at the destination:

- each chunk of a complete, uncompressed site is checked as it is read against the
  xxh3 checksum recorded when it was written, so a damaged source is not spread;
- every file is read back from the destination and its xxh3 compared with the bytes
  read from the source.

Only then is the manifest written (in object storage, created at the source's
generation with a conditional write), so a reader never sees a half-copied store,
and of two copies racing to one destination exactly one commits.

Examples
--------
>>> report = copy_store(store_path, tmp / "copied.actstore")
>>> report.files, actstore.open(tmp / "copied.actstore").n_rows("tokens")
(9, 698)
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import xxhash

import actstore
from actstore.chunks import ABSENT, chunk_bytes, read_checksums
from actstore.commit import ARRAYS_DIR, PROGRESS_DIR, RESULTS_DIR, TABLES_DIR
from actstore.errors import ActStoreError, StoreExistsError
from actstore.manifest import MANIFEST, Manifest, atomic_write
from actstore.objects import ObjectStorage, manifest_name
from actstore.progress import bar
from actstore.storage import LocalStorage, Storage, storage_of

JOBS = 16  # concurrent transfers: object stores answer many requests at once


@dataclass(frozen=True)
class CopyReport:
    """What a copy moved: files and bytes (every one read back and verified), seconds."""

    source: str
    destination: str
    generation: int
    files: int
    bytes: int
    seconds: float

    def line(self) -> str:
        rate = self.bytes / max(self.seconds, 1e-9) / 2**20
        return (
            f"copied {self.source} to {self.destination} (generation {self.generation}): "
            f"{self.files:,} files, {self.bytes / 2**20:,.1f} MiB in {self.seconds:.1f} s "
            f"({rate:,.0f} MiB/s), every file read back and its checksum matched"
        )


def copy_store(source: str | Path, destination: str | Path, *, jobs: int = JOBS) -> CopyReport:
    """Copy the store at ``source`` to ``destination`` (a directory or URL where no store
    is yet), verified as the module docstring says; the report says what was moved."""
    started = time.perf_counter()
    target = storage_of(destination)
    _refuse_existing(target)
    with actstore.open(source) as store:
        manifest = store.manifest_records()
        files = committed_files(store.storage, manifest)
        expected = _recorded_checksums(store.storage, manifest)
        sizes = [0] * len(files)

        def move(index: int) -> None:
            rel = files[index]
            data = store.storage.read_bytes(rel)
            want, length = expected.get(rel, (None, 0))
            if want is not None and xxhash.xxh3_64_hexdigest(data[:length]) != want:
                raise ActStoreError(
                    f"{store.storage.where(rel)} does not match its recorded checksum: the "
                    "source is damaged; run `actstore verify` on it (nothing was committed at "
                    f"{target.where()})"
                )
            digest = xxhash.xxh3_64_hexdigest(data)
            put(target, rel, data)
            back = target.read_bytes(rel)
            if len(back) != len(data) or xxhash.xxh3_64_hexdigest(back) != digest:
                raise ActStoreError(
                    f"{target.where(rel)} reads back different bytes than were written; "
                    "nothing was committed: run the copy again"
                )
            sizes[index] = len(data)

        with (
            ThreadPoolExecutor(max(1, jobs)) as pool,
            bar(len(files), unit="files", desc="copy") as shown,
        ):
            for _ in pool.map(move, range(len(files))):
                shown.update(1)
        commit_copy(target, manifest)
    return CopyReport(
        store.location,
        target.where(),
        manifest.generation,
        len(files),
        sum(sizes),
        time.perf_counter() - started,
    )


def committed_files(storage: Storage, manifest: Manifest) -> list[str]:
    """Every file the committed ``manifest`` names, folders listed file by file."""
    named = [p.path for t in manifest.tables.values() for p in t.parts]
    folders: list[str] = []
    for result in manifest.results.values():
        named += [p.path for p in result.parts] + list(result.labels.values())
        folders += [result.path] if result.path else []
    for site in manifest.sites.values():
        folders.append(site.path)
        if site.status != "complete":
            folders.append(f"{PROGRESS_DIR}/{site.path.partition('/')[2]}")
    for folder in folders:
        named += [
            f"{folder}/{rel}"
            for rel in sorted(storage.files(folder))
            if not rel.endswith(".partial")
        ]
    if "images" in manifest.tables:
        import pyarrow.parquet as pq

        for part in manifest.tables["images"].parts:
            paths = pq.read_table(storage.parquet(part.path), columns=["path"]).column(0)
            named += [p for p in paths.to_pylist() if not Path(p).is_absolute()]
    return list(dict.fromkeys(named))


def _recorded_checksums(storage: Storage, manifest: Manifest) -> dict[str, tuple[str, int]]:
    """File -> the xxh3 recorded when it was written, and of how many of its first bytes
    (the site's rows: the last chunk is padded): the chunks of complete, uncompressed
    sites (a compressed chunk's checksum is of its decoded values)."""
    out: dict[str, tuple[str, int]] = {}
    for site in manifest.sites.values():
        size = chunk_bytes(site)
        if site.status != "complete" or size is None:
            continue
        row_bytes = size // site.chunk_rows
        for chunk, value in enumerate(read_checksums(storage, site.path, site.n_chunks)):
            if value not in (None, ABSENT):
                rows = min(site.chunk_rows, site.n_rows - chunk * site.chunk_rows)
                out[f"{site.path}/c/{chunk}/0"] = (str(value), rows * row_bytes)
    return out


def _refuse_existing(target: Storage) -> None:
    if isinstance(target, ObjectStorage):
        committed = target.generations()
        if committed:
            raise StoreExistsError(
                f"{target.where()} already holds a store (generation {committed[-1]}); "
                "copy to another prefix"
            )
    elif isinstance(target, LocalStorage) and target.root.exists():
        raise StoreExistsError(f"{target.root} already exists; copy to a new directory")


def put(target: Storage, rel: str, data: bytes) -> None:
    """Write one file of a copy (a local one atomically, in its folder)."""
    if isinstance(target, ObjectStorage):
        target.put(rel, data)
        return
    assert isinstance(target, LocalStorage)
    path = target.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def commit_copy(target: Storage, manifest: Manifest) -> None:
    """Make the copy visible: its manifest, at the source's generation, written last."""
    body = json.dumps(manifest.to_json(), indent=1).encode("utf-8") + b"\n"
    if isinstance(target, ObjectStorage):
        from actstore.errors import CommitConflictError

        try:
            target.put(manifest_name(manifest.generation), body, create=True)
        except FileExistsError:
            raise CommitConflictError(
                f"{target.where()}: another copy committed a store there first; this one "
                "is not visible"
            ) from None
        return
    assert isinstance(target, LocalStorage)
    for folder in (TABLES_DIR, ARRAYS_DIR, RESULTS_DIR):
        (target.root / folder).mkdir(parents=True, exist_ok=True)
    if (target.root / MANIFEST).exists():
        raise StoreExistsError(f"{target.root}: another copy committed a store there first")
    atomic_write(target.root / MANIFEST, body)
