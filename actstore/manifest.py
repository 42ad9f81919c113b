"""The manifest: the store's commit record (see docs/FORMAT.md).

A reader sees exactly what ``manifest.json`` names. Writers prepare new files first
and replace the manifest last, atomically, so a crash at any point leaves the
previous committed state intact.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from actstore.errors import FormatError, StoreNotFoundError

FORMAT_NAME = "actstore"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"

Manifest = dict[str, Any]


def now_utc() -> str:
    """The current time as an ISO 8601 string in UTC, to the second."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def new_manifest(version: str) -> Manifest:
    """An empty store's manifest."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created": now_utc(),
        "updated": now_utc(),
        "generation": 0,
        "actstore_version": version,
        "tables": {},
        "sources": [],
        "sites": {},
        "results": {},
    }


def fsync_dir(path: Path) -> None:
    """Make a rename or file creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half.

    The bytes go to ``path.partial`` first, are flushed to disk, then renamed over
    ``path`` (``os.replace`` is atomic on POSIX file systems).
    """
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_manifest(root: Path) -> Manifest:
    """Load and check the manifest of the store at ``root``."""
    path = root / MANIFEST
    if not root.exists():
        raise StoreNotFoundError(f"no store at {root}: the path does not exist")
    if not path.is_file():
        raise StoreNotFoundError(
            f"{root} is not an actstore store: it has no {MANIFEST} "
            "(create one with actstore.create or `actstore ingest`)"
        )
    try:
        manifest: Manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: expected an actstore manifest (format: {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FormatError(
            f"{path}: format version {version!r} is newer than this actstore understands "
            f"(up to {FORMAT_VERSION}); upgrade actstore"
        )
    return manifest


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Commit ``manifest``: bump its generation and replace the file atomically."""
    manifest["generation"] = int(manifest.get("generation", 0)) + 1
    manifest["updated"] = now_utc()
    data = json.dumps(manifest, indent=1, sort_keys=False).encode("utf-8")
    atomic_write(root / MANIFEST, data + b"\n")
