"""Chunk integrity: where a site's chunk files lie, what they must weigh, their checksums.

Every chunk a :class:`~actstore.writer.SiteWriter` writes gets an xxh3-64 checksum of
its rows' bytes (about 12 GB/s, so it costs the writer little). While a site is being
written each checksum sits in its chunk's progress marker; when the site completes
they are gathered into ``<array>/checksums.json`` before the manifest calls the site
complete. Readers check that every chunk they touch exists with the size it must have
(a missing chunk would otherwise read as zeros); :func:`verify_site` also recomputes
the checksums.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from actstore.errors import SiteError
from actstore.manifest import PARTIAL_SUFFIX, SiteRecord
from actstore.storage import LocalStorage, Storage

CHECKSUMS = "checksums.json"
ALGORITHM = "xxh3_64"
# the checksum recorded for a chunk holding no row the site covers: it has no file
ABSENT = "absent"
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4}


def digest(values: np.ndarray) -> str:
    """The checksum of a block of rows (its bytes in C order), as 16 hex digits.

    Examples
    --------
    >>> digest(np.zeros((2, 3), np.float16))
    '...'
    >>> len(digest(np.ones(4, np.float32)))
    16
    """
    flat = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
    return xxhash.xxh3_64_hexdigest(flat.data)


def chunk_file(array_dir: Path, chunk: int) -> Path:
    """The file of row chunk ``chunk`` (zarr v3's default ``c/<row>/<unit>`` keys)."""
    return array_dir / "c" / str(chunk) / "0"


def holds_covered_rows(record: SiteRecord, chunk: int) -> bool:
    """Whether ``chunk`` of ``record`` holds a row the site covers."""
    start = chunk * record.chunk_rows
    stop = min(start + record.chunk_rows, record.n_rows)
    return any(a < stop and b > start for a, b in record.covered())


def chunk_bytes(record: SiteRecord) -> int | None:
    """Bytes an uncompressed chunk file holds (zarr pads edge chunks); None if compressed."""
    if record.codec != "none":
        return None
    return record.chunk_rows * record.n_units * _ITEMSIZE[record.dtype]


def check_present(array_dir: Path, site: str, chunks: Iterable[int], size: int | None) -> None:
    """Raise :class:`SiteError` unless each chunk file exists (with ``size`` bytes)."""
    storage = LocalStorage(array_dir.parent)
    for chunk in chunks:
        check_stored(storage, array_dir.name, site, chunk, size)


def check_stored(storage: Storage, array: str, site: str, chunk: int, size: int | None) -> None:
    """Raise :class:`SiteError` unless the file of ``chunk`` of the array at ``array``
    (relative to ``storage``) exists (with ``size`` bytes)."""
    rel = f"{array}/c/{chunk}/0"
    try:
        got = storage.file_size(rel)
    except FileNotFoundError:
        raise SiteError(
            f"site {site}: chunk {chunk} ({storage.where(rel)}) is missing; the site was "
            "replaced or damaged since the store was opened: reopen it, or run `actstore verify`"
        ) from None
    if size is not None and got != size:
        raise SiteError(
            f"site {site}: chunk {chunk} ({storage.where(rel)}) holds {got:,} bytes, expected "
            f"{size:,}; run `actstore verify`"
        )


# -- checksums while writing (progress markers) and once complete (checksums.json) --------
def write_marker(folder: Path, chunk: int, checksum: str) -> None:
    """Record that ``chunk`` is written, with its checksum (the marker appears whole)."""
    tmp = folder / f"{chunk}.done{PARTIAL_SUFFIX}"
    tmp.write_text(checksum, encoding="ascii")
    os.replace(tmp, folder / f"{chunk}.done")


def read_markers(folder: Path) -> dict[int, str | None]:
    """Chunk -> checksum of every progress marker (None: a marker from before checksums)."""
    out: dict[int, str | None] = {}
    for path in folder.glob("*.done"):
        text = path.read_text(encoding="ascii").strip()
        out[int(path.name.split(".")[0])] = text or None
    return out


def write_checksums(
    storage: Storage, array: str, checksums: dict[int, str | None], n_chunks: int
) -> None:
    """Gather the checksums of the complete site array at ``array`` into ``checksums.json``."""
    listed = [checksums.get(c) for c in range(n_chunks)]
    body = {"algorithm": ALGORITHM, "chunks": listed}
    storage.put_file(f"{array}/{CHECKSUMS}", json.dumps(body).encode("ascii"))


def read_checksums(storage: Storage, array: str, n_chunks: int) -> list[str | None]:
    """The checksum of every chunk of the complete site array at ``array`` (relative to
    the store; None where none was recorded)."""
    rel = f"{array}/{CHECKSUMS}"
    try:
        body = json.loads(storage.read_bytes(rel).decode("ascii"))
    except FileNotFoundError:
        return [None] * n_chunks
    except (OSError, ValueError) as exc:
        raise SiteError(f"{storage.where(rel)}: unreadable ({exc})") from None
    listed = body.get("chunks") if isinstance(body, dict) else None
    if not isinstance(listed, list) or len(listed) != n_chunks:
        raise SiteError(f"{storage.where(rel)}: expected {n_chunks} checksums")
    return [c if isinstance(c, str) else None for c in listed]


@dataclass(frozen=True)
class Damage:
    """One damaged chunk: which, and what is wrong with it."""

    site: str
    chunk: int
    problem: str


def verify_site(storage: Storage, name: str, record: SiteRecord) -> list[Damage]:
    """Every chunk of a complete site: present, of the right size, matching its checksum."""
    import zarr

    size = chunk_bytes(record)
    damaged: list[Damage] = []
    try:
        array = zarr.open_array(storage.zarr(record.path), mode="r")
    except (OSError, ValueError, KeyError) as exc:
        return [Damage(name, c, f"array unreadable: {exc}") for c in range(record.n_chunks)]
    expected = read_checksums(storage, record.path, record.n_chunks)
    for chunk in range(record.n_chunks):
        start = chunk * record.chunk_rows
        stop = min(start + record.chunk_rows, record.n_rows)
        if expected[chunk] == ABSENT:  # no file: right only for a chunk of no covered row
            if holds_covered_rows(record, chunk):
                damaged.append(Damage(name, chunk, "marked absent but holds covered rows"))
            continue
        try:
            check_stored(storage, record.path, name, chunk, size)
            values = np.asarray(array[start:stop])
        except Exception as exc:  # a codec's own errors too (zstd raises RuntimeError)
            damaged.append(Damage(name, chunk, str(exc).split("; ")[0]))
            continue
        if expected[chunk] is not None and digest(values) != expected[chunk]:
            damaged.append(Damage(name, chunk, "checksum mismatch (the bytes changed)"))
    return damaged
