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
>>> report = copy_store(store_path, tmp / "copied.actstore")  # 2 table parts, 2 sites
>>> report.files, actstore.open(tmp / "copied.actstore").n_rows("tokens")  # of 3 files
(8, 698)
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import xxhash

import actstore
from actstore.chunks import ABSENT, chunk_bytes, read_checksums
from actstore.commit import progress_folder
from actstore.errors import ActStoreError, FormatError, ParameterError, StoreExistsError
from actstore.manifest import Manifest, SiteRecord
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
    with actstore.open(source) as store:
        _refuse(store, target)
        manifest = store.manifest_records()
        files = committed_files(
            store.storage, manifest, across=type(target) is not type(store.storage)
        )
        expected = _recorded_checksums(store.storage, manifest)
        copied, renamed = retag(manifest, uuid.uuid4().hex[:8])
        sizes = [0] * len(files)

        def move(index: int) -> None:
            rel, there = files[index], renamed(files[index])
            data = store.storage.read_bytes(rel)
            want, length = expected.get(rel, (None, 0))
            if want is not None and xxhash.xxh3_64_hexdigest(data[:length]) != want:
                raise ActStoreError(
                    f"{store.storage.where(rel)} does not match its recorded checksum: the "
                    "source is damaged; run `actstore verify` on it (nothing was committed at "
                    f"{target.where()})"
                )
            digest = xxhash.xxh3_64_hexdigest(data)
            target.put_file(there, data)
            back = target.read_bytes(there)
            if len(back) != len(data) or xxhash.xxh3_64_hexdigest(back) != digest:
                raise ActStoreError(
                    f"{target.where(there)} reads back different bytes than were written; "
                    "nothing was committed: run the copy again"
                )
            sizes[index] = len(data)

        with (
            ThreadPoolExecutor(max(1, jobs)) as pool,
            bar(len(files), unit="files", desc="copy") as shown,
        ):
            for _ in pool.map(move, range(len(files))):
                shown.update(1)
        commit_copy(target, copied)
    return CopyReport(
        store.location,
        target.where(),
        manifest.generation,
        len(files),
        sum(sizes),
        time.perf_counter() - started,
    )


def retag(manifest: Manifest, tag: str) -> tuple[Manifest, Callable[[str], str]]:
    """The manifest a copy commits, every part, result and site array renamed with the
    copy's ``tag``, and where each file of the source goes. Two copies racing to one
    place then never write the same name (but for image files, named by their content):
    the one whose manifest commits is whole, and the other's files are nobody's.

    Examples
    --------
    >>> copied, renamed = retag(store.manifest_records(), "c0ffee00")
    >>> copied.tables["tokens"].parts[0].path, renamed("tables/tokens/part-00000.parquet")
    ('tables/tokens/part-00000-c0ffee00.parquet', 'tables/tokens/part-00000-c0ffee00.parquet')
    >>> renamed(store.site("toy/layer.0").path + "/c/0/0")
    'arrays.zarr/toy/layer.0@2.c0ffee00/c/0/0'
    """
    copied = manifest.copy()
    files: dict[str, str] = {}
    folders: dict[str, str] = {}

    def file(rel: str) -> str:
        stem, dot, suffix = rel.rpartition(".")
        files[rel] = f"{stem}-{tag}{dot}{suffix}"
        return files[rel]

    def folder(rel: str, new: str) -> str:
        folders[rel] = new
        return new

    for table in copied.tables.values():
        for part in table.parts:
            part.path = file(part.path)
    for result in copied.results.values():
        for part in result.parts:
            part.path = file(part.path)
        result.labels = {axis: file(rel) for axis, rel in result.labels.items()}
        if result.path:
            result.path = folder(result.path, file(result.path))
    for site in copied.sites.values():
        old, site.path = site.path, folder(site.path, f"{site.path}.{tag}")
        new_progress = folder(progress_folder(old), progress_folder(site.path))
        site.progress = [
            f"{new_progress}/{rel.rpartition('/')[2]}" for rel in site.progress or []
        ] or None

    def renamed(rel: str) -> str:
        if rel in files:
            return files[rel]
        parts = rel.split("/")
        for depth in range(len(parts) - 1, 0, -1):  # the folder the file lies in, if moved
            inside = "/".join(parts[:depth])
            if inside in folders:
                return folders[inside] + rel[len(inside) :]
        return rel  # the store's own image files, named by their content

    return copied, renamed


def committed_files(storage: Storage, manifest: Manifest, *, across: bool = False) -> list[str]:
    """Every file the committed ``manifest`` names, folders listed file by file; every
    chunk a complete site must have is there (else one line naming it). ``across``
    (to the other kind of storage) refuses incomplete sites, whose progress is kept
    one way on disk and another in object storage."""
    named = [p.path for t in manifest.tables.values() for p in t.parts]
    folders: list[str] = []
    for result in manifest.results.values():
        named += [p.path for p in result.parts] + list(result.labels.values())
        folders += [result.path] if result.path else []
    checked: list[tuple[str, SiteRecord]] = []
    for name, site in manifest.sites.items():
        folders.append(site.path)
        if site.status == "complete":
            checked.append((name, site))
        elif across:
            raise ParameterError(
                "destination", f"site {name} is incomplete ({site.done_chunks}/"
                f"{site.n_chunks} chunks), and its progress is kept one way on disk and "
                "another in object storage: finish its extraction (or delete it) first"
            )  # fmt: skip
        else:
            folders.append(progress_folder(site.path))
    found = {folder: sorted(storage.files(folder)) for folder in folders}  # one listing each
    for name, site in checked:
        _require_chunks(storage, name, site, set(found[site.path]))
    for folder, listed in found.items():
        named += [f"{folder}/{rel}" for rel in listed if not rel.endswith(".partial")]
    if "images" in manifest.tables:
        named += _own_images(storage, manifest)
    return list(dict.fromkeys(named))


def _require_chunks(storage: Storage, name: str, site: SiteRecord, present: set[str]) -> None:
    """Every chunk the complete ``site`` must have is among the files ``present`` in
    its array."""
    listed = read_checksums(storage, site.path, site.n_chunks)
    for chunk, checksum in enumerate(listed):
        if checksum != ABSENT and f"c/{chunk}/0" not in present:
            raise ActStoreError(
                f"site {name}: chunk {chunk} ({storage.where(site.path)}/c/{chunk}/0) is "
                "missing from the source; run `actstore verify` on it"
            )


_OWN_IMAGE = re.compile(r"images/[0-9a-f]{64}\.png")


def _own_images(storage: Storage, manifest: Manifest) -> list[str]:
    """The store's own image files (ingested arrays), each checked to be one."""
    import pyarrow.parquet as pq

    out = []
    for part in manifest.tables["images"].parts:
        paths = pq.read_table(storage.parquet(part.path), columns=["path"]).column(0)
        for value in paths.to_pylist():
            if Path(value).is_absolute():
                continue  # an image outside the store: not the store's to copy
            if not _OWN_IMAGE.fullmatch(value):
                raise FormatError(
                    f"{storage.where(part.path)}: images path {value!r} is neither absolute "
                    "nor one of the store's own files (images/<sha256>.png): the table was "
                    "edited"
                )
            out.append(value)
    return out


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


def _refuse(store: actstore.Store, target: Storage) -> None:
    """Refuse a destination that holds a store, lies inside the source or holds it."""
    if target.holds_store():
        raise StoreExistsError(f"{target.where()} already holds a store; copy elsewhere")
    if isinstance(target, LocalStorage) and target.root.exists():
        raise StoreExistsError(f"{target.root} already exists; copy to a new directory")
    here, there = _place(store.storage), _place(target)
    if there.startswith(here + "/") or here.startswith(there + "/"):
        raise ParameterError(
            "destination", f"{there} and the store {here} lie one inside the other"
        )


def _place(storage: Storage) -> str:
    """Where ``storage`` is, comparably: a resolved directory (symlinks, ``..``) or a
    normalised URL."""
    if isinstance(storage, LocalStorage):
        return str(storage.root.resolve())
    return storage.where().rstrip("/")


def commit_copy(target: Storage, manifest: Manifest) -> None:
    """Make the copy visible: its manifest, at the source's generation, written last."""
    try:
        target.create_manifest(manifest)
    except FileExistsError:
        raise StoreExistsError(
            f"{target.where()}: another copy committed a store there first; this one is not visible"
        ) from None
