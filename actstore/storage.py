"""Where a store's bytes live: a local directory, or a prefix of an object store.

Every read of a store goes through one :class:`Storage`: Parquet parts (pyarrow and
DuckDB), site chunks, Zarr arrays, checksums and progress; so does every write. A local
store is a :class:`LocalStorage` (plain files, positioned reads, atomic renames); a
store at a URL such as ``s3://bucket/prefix`` is an
:class:`~actstore.objects.ObjectStorage`.

Examples
--------
>>> is_url("s3://bucket/corpora/ewt"), is_url("runs/demo.actstore")
(True, False)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from actstore.manifest import MANIFEST, Manifest, atomic_write, manifest_bytes

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # "s3:/x", "S3://x": URLs, if bad ones
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://([^/]+)(/.*)?$")


def is_url(text: str | Path) -> bool:
    """Whether ``text`` names a store by URL (``scheme:/...``) rather than by path; a
    mistyped URL is one too, to be refused, not taken for a folder named ``s3:``.

    Examples
    --------
    >>> is_url("S3://bucket/x"), is_url("s3:/bucket/x"), is_url("runs/s3/x")
    (True, True, False)
    """
    return isinstance(text, str) and _SCHEME.match(text) is not None


def url_parts(url: str) -> tuple[str, str, str] | None:
    """``(scheme, bucket, prefix)`` of a store URL, or None if ``url`` is not one.

    Examples
    --------
    >>> url_parts("S3://bucket/corpora/ewt/")
    ('s3', 'bucket', 'corpora/ewt')
    """
    match = _URL.match(url)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2), (match.group(3) or "").strip("/")


def storage_of(where: str | Path) -> Storage:
    """The storage a store path or URL names."""
    if is_url(str(where)):
        from actstore.objects import ObjectStorage

        return ObjectStorage(str(where))
    return LocalStorage(Path(where))


class Storage:
    """What every reader of a store needs of where it lives (see the module docstring)."""

    def where(self, rel: str = "") -> str:
        """The path or URL of ``rel``, for messages."""
        raise NotImplementedError

    def read_manifest(self) -> Manifest:
        """The newest committed manifest."""
        raise NotImplementedError

    def holds_store(self) -> bool:
        """Whether a store is committed here."""
        raise NotImplementedError

    def remove_all(self) -> None:
        """Delete the store and everything in its folder (best effort)."""
        raise NotImplementedError

    def commit(self, manifest: Manifest) -> None:
        """Commit ``manifest`` as the next generation (see :func:`~actstore.manifest.stamp`)."""
        raise NotImplementedError

    def commit_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held around one read-modify-write of the manifest (object storage has none:
        its commits are conditional instead)."""
        return contextlib.nullcontext()

    def create_manifest(self, manifest: Manifest) -> None:
        """Commit ``manifest`` as it is (a copied store's, at its own generation), only
        where no store is: FileExistsError if one is, even one committed meanwhile."""
        raise NotImplementedError

    # Whether writers take turns under a lock (else names they make must never collide)
    # and whether a file may be a hard link shared with another array's.
    exclusive = False
    hard_links = False

    def read_bytes(self, rel: str) -> bytes:
        """The whole file ``rel`` (FileNotFoundError when there is none)."""
        raise NotImplementedError

    def file_size(self, rel: str) -> int:
        """Bytes of file ``rel`` (FileNotFoundError when there is none)."""
        raise NotImplementedError

    def parquet(self, rel: str) -> Any:
        """What ``pyarrow.parquet.ParquetFile`` opens for the part ``rel``."""
        raise NotImplementedError

    def shared_file(self, rel: str) -> Any:
        """A read-only file of ``rel`` that several threads may seek and read at once."""
        raise NotImplementedError

    def zarr(self, rel: str) -> Any:
        """What ``zarr.open_array`` opens for the array at ``rel``, read-only."""
        raise NotImplementedError

    def files(self, rel: str) -> dict[str, int]:
        """Every file under folder ``rel`` (paths relative to it) with its size."""
        raise NotImplementedError

    # -- writing (callers hold the store's writer claim) ---------------------------------
    def put_file(self, rel: str, data: bytes) -> None:
        """Write file ``rel`` whole: readers see the old file or the new, never half."""
        raise NotImplementedError

    def delete_files(self, rels: Iterable[str]) -> None:
        """Delete the files ``rels`` (those that are gone already are skipped)."""
        raise NotImplementedError

    def delete_tree(self, rel: str) -> None:
        """Delete folder ``rel`` and everything under it."""
        raise NotImplementedError

    def copy_file(self, source: str, target: str) -> None:
        """Give ``target`` the bytes of ``source`` (a hard link, or a server-side copy)."""
        raise NotImplementedError

    def writable_zarr(self, rel: str) -> Any:
        """What ``zarr`` creates or writes an array in at ``rel``."""
        raise NotImplementedError


class LocalStorage(Storage):
    """A store in a directory of the local file system; pickles as its path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def where(self, rel: str = "") -> str:
        return str(self.root / rel) if rel else str(self.root)

    def read_manifest(self) -> Manifest:
        from actstore.manifest import read_manifest

        return read_manifest(self.root)

    exclusive = True
    hard_links = True

    def commit_lock(self) -> contextlib.AbstractContextManager[None]:
        from actstore.lock import commit_lock

        return commit_lock(self.root)

    def holds_store(self) -> bool:
        return (self.root / MANIFEST).is_file()

    def create_manifest(self, manifest: Manifest) -> None:
        for folder in ("tables", "arrays.zarr", "results"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{MANIFEST}.{uuid.uuid4().hex[:8]}.partial"
        atomic_write(tmp, manifest_bytes(manifest))
        try:
            os.link(tmp, self.root / MANIFEST)  # fails if a manifest is there: no overwrite
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: check, then rename (a race
            if (self.root / MANIFEST).exists():  # with another copy to this new folder
                raise FileExistsError(self.root / MANIFEST) from None  # is left open)
            os.replace(tmp, self.root / MANIFEST)
        finally:
            tmp.unlink(missing_ok=True)

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def commit(self, manifest: Manifest) -> None:
        from actstore.manifest import write_manifest

        write_manifest(self.root, manifest)

    def read_bytes(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def file_size(self, rel: str) -> int:
        return (self.root / rel).stat().st_size

    def parquet(self, rel: str) -> Any:
        return self.root / rel

    def shared_file(self, rel: str) -> Any:
        return SharedReader(str(self.root / rel))

    def zarr(self, rel: str) -> Any:
        return str(self.root / rel)

    def files(self, rel: str) -> dict[str, int]:
        base = self.root / rel
        if not base.is_dir():
            return {}
        return {
            p.relative_to(base).as_posix(): p.stat().st_size for p in base.rglob("*") if p.is_file()
        }

    def put_file(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)

    def delete_files(self, rels: Iterable[str]) -> None:
        for rel in rels:
            (self.root / rel).unlink(missing_ok=True)

    def delete_tree(self, rel: str) -> None:
        path = self.root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)

    def copy_file(self, source: str, target: str) -> None:
        source_path, target_path = self.root / source, self.root / target
        target_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source_path, target_path)  # files are never changed once written
        except FileNotFoundError:
            raise
        except OSError:  # another file system, or one without hard links
            tmp = target_path.with_name(target_path.name + ".partial")
            with open(source_path, "rb") as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 24):
                    dst.write(block)
            os.replace(tmp, target_path)

    def writable_zarr(self, rel: str) -> Any:
        return str(self.root / rel)


class PositionedReader:
    """A read-only file that several DuckDB threads may seek and read at once: each
    thread has its own position, and each read is one positioned read there
    (:meth:`read_at`)."""

    name: str
    size: int

    def __init__(self) -> None:
        self._local = threading.local()

    def read_at(self, position: int, n: int) -> bytes:
        """``n`` bytes (fewer at the end) from ``position``."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.tell(), 2: self.size}[whence]
        self._local.pos = base + offset
        return self.tell()

    def tell(self) -> int:
        return int(getattr(self._local, "pos", 0))

    def read(self, n: int = -1) -> bytes:
        if self.closed:
            raise ValueError(f"{self.name}: read of a closed file")
        position = self.tell()
        n = self.size - position if n is None or n < 0 else min(n, self.size - position)
        data = self.read_at(position, n) if n > 0 else b""
        self._local.pos = position + len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def __enter__(self) -> PositionedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SharedReader(PositionedReader):
    """A local file as a :class:`PositionedReader`: ``os.pread``."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.name = path
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is missing") from None
        self.size = os.fstat(self._fd).st_size

    def read_at(self, position: int, n: int) -> bytes:
        assert self._fd is not None
        return os.pread(self._fd, n, position)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


__all__ = ["LocalStorage", "Storage", "is_url", "storage_of"]
