"""Where a store's bytes live: a local directory, or a prefix of an object store.

Every read of a store goes through one :class:`Storage`: Parquet parts (pyarrow and
DuckDB), site chunks, Zarr arrays, checksums and progress markers. A local store is a
:class:`LocalStorage` (plain files, positioned reads); a store at a URL such as
``s3://bucket/prefix`` is an :class:`ObjectStorage` (obstore: S3 and any
S3-compatible server, Google Cloud Storage, Azure), configured the standard way, by
``AWS_*`` (``GOOGLE_*``, ``AZURE_*``) environment variables: ``AWS_ENDPOINT_URL`` for a
server other than AWS, ``AWS_ALLOW_HTTP=true`` for plain HTTP, ``AWS_SKIP_SIGNATURE=true``
for anonymous access.

In object storage there is no rename and no lock, so the manifest is not one object
replaced in place: each commit creates ``manifests/<generation>.json`` with a
conditional write (``If-None-Match: *``), which the server grants to exactly one
writer; a reader takes the newest generation there is. Every other file of the store
keeps its local name and layout, and is written before the manifest that names it.

Examples
--------
>>> is_url("s3://bucket/corpora/ewt"), is_url("runs/demo.actstore")
(True, False)
>>> ObjectStorage("s3://bucket/corpora/ewt/").where("tables/tokens/part-00000.parquet")
's3://bucket/corpora/ewt/tables/tokens/part-00000.parquet'
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from actstore.errors import StorageError, StoreNotFoundError
from actstore.manifest import MANIFEST, Manifest, parse_manifest

_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://([^/]+)(/.*)?$")
SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss", "http", "https")
MANIFESTS = "manifests"  # object stores: manifests/<generation, 20 digits>.json
_T = TypeVar("_T")


def is_url(text: str | Path) -> bool:
    """Whether ``text`` names a store by URL (``scheme://...``) rather than by path."""
    return isinstance(text, str) and _URL.match(text) is not None


def storage_of(where: str | Path) -> Storage:
    """The storage a store path or URL names."""
    if is_url(str(where)):
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


class LocalStorage(Storage):
    """A store in a directory of the local file system."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def where(self, rel: str = "") -> str:
        return str(self.root / rel) if rel else str(self.root)

    def read_manifest(self) -> Manifest:
        from actstore.manifest import read_manifest

        return read_manifest(self.root)

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


class ObjectStorage(Storage):
    """A store under a prefix of an object store, named by URL; pickles as its URL, so a
    dask worker in another process or on another host reads the same objects."""

    def __init__(self, url: str) -> None:
        match = _URL.match(url)
        if match is None or match.group(1) not in SCHEMES:
            raise StorageError(
                f"{url}: not a store URL; expected scheme://bucket/prefix with scheme one of "
                f"{', '.join(SCHEMES)}"
            )
        self.scheme, self.bucket = match.group(1), match.group(2)
        self.prefix = (match.group(3) or "").strip("/")
        self.url = f"{self.scheme}://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._client: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ObjectStorage({self.url!r})"

    # -- the client ----------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The obstore store of the bucket (made once, on first use)."""
        with self._lock:
            if self._client is None:
                from obstore.store import from_url

                self._client = self.call("", lambda: from_url(f"{self.scheme}://{self.bucket}"))
        return self._client

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def where(self, rel: str = "") -> str:
        return f"{self.url}/{rel}" if rel else self.url

    def call(self, rel: str, do: Callable[[], _T]) -> _T:
        """``do()``, with the object store's errors as a missing file or one line."""
        import obstore.exceptions as oe

        try:
            return do()
        except oe.NotFoundError:
            raise FileNotFoundError(f"{self.where(rel)} is missing") from None
        except (oe.AlreadyExistsError, oe.PreconditionError):
            raise FileExistsError(f"{self.where(rel)} exists") from None
        except (oe.BaseError, ValueError) as exc:  # bad config raises ValueError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(f"{self.where(rel)}: the object store failed: {first}") from None

    # -- reading -------------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        import obstore

        return self.call(rel, lambda: bytes(obstore.get(self.client, self.key(rel)).bytes()))

    def read_ranges(self, rel: str, starts: Sequence[int], ends: Sequence[int]) -> list[Any]:
        """Byte ranges ``[start, end)`` of ``rel`` (as buffers), fetched concurrently and
        coalesced where they lie close together; a range past the end is an error."""
        import obstore

        key = self.key(rel)
        return self.call(
            rel, lambda: obstore.get_ranges(self.client, key, starts=starts, ends=ends)
        )

    def file_size(self, rel: str) -> int:
        import obstore

        return int(self.call(rel, lambda: obstore.head(self.client, self.key(rel)))["size"])

    def parquet(self, rel: str) -> Any:
        return self.shared_file(rel)

    def shared_file(self, rel: str) -> Any:
        return RangeReader(self, rel, self.file_size(rel))

    def zarr(self, rel: str) -> Any:
        from obstore.store import from_url
        from zarr.storage import ObjectStore

        url = f"{self.scheme}://{self.bucket}/{self.key(rel)}"
        return ObjectStore(self.call(rel, lambda: from_url(url)), read_only=True)

    def files(self, rel: str) -> dict[str, int]:
        import obstore

        base = self.key(rel).strip("/")
        base += "/" if base else ""
        found = self.call(rel, lambda: obstore.list(self.client, base).collect())
        return {o["path"][len(base) :]: int(o["size"]) for o in found}

    # -- writing -------------------------------------------------------------------------
    def put(self, rel: str, data: bytes | memoryview, *, create: bool = False) -> None:
        """Write object ``rel`` (a PUT is atomic: readers see all of it or nothing);
        ``create``: only if no object has that name, else FileExistsError."""
        import obstore

        mode: Literal["create", "overwrite"] = "create" if create else "overwrite"
        self.call(rel, lambda: obstore.put(self.client, self.key(rel), data, mode=mode))

    def delete(self, rels: Sequence[str]) -> None:
        import obstore

        keys = [self.key(r) for r in rels]
        for lo in range(0, len(keys), 1000):  # S3 deletes at most 1000 keys per request
            batch = keys[lo : lo + 1000]
            self.call("", lambda: obstore.delete(self.client, batch))  # noqa: B023 - called now

    # -- the manifest --------------------------------------------------------------------
    def generations(self) -> list[int]:
        """The generations committed here, oldest first."""
        names = self.files(MANIFESTS)
        return sorted(int(n[:-5]) for n in names if re.fullmatch(r"\d{20}\.json", n))

    def read_manifest(self) -> Manifest:
        committed = self.generations()
        if not committed:
            raise StoreNotFoundError(
                f"{self.url} holds no actstore store: it has no {MANIFESTS}/ object "
                "(copy a store there with `actstore copy STORE URL`)"
            )
        rel = manifest_name(committed[-1])
        return parse_manifest(self.read_bytes(rel), self.where(rel))

    def commit(self, manifest: Manifest) -> None:
        """Commit ``manifest`` as the next generation, by a conditional create: of two
        writers that read the same generation, one wins and the other gets
        :class:`~actstore.errors.CommitConflictError`."""
        from actstore.errors import CommitConflictError
        from actstore.manifest import stamp

        stamp(manifest)
        rel = manifest_name(manifest.generation)
        body = json.dumps(manifest.to_json(), indent=1).encode("utf-8") + b"\n"
        try:
            self.put(rel, body, create=True)
        except FileExistsError:
            raise CommitConflictError(
                f"{self.url}: another writer committed generation {manifest.generation} "
                "first; nothing of this change is visible: reopen the store and run it again"
            ) from None


def manifest_name(generation: int) -> str:
    """The object of one generation's manifest in an object store."""
    return f"{MANIFESTS}/{generation:020d}.json"


class SharedReader:
    """A read-only file that several DuckDB threads may seek and read at once: each
    thread has its own position, and reads are ``os.pread`` at that position."""

    def __init__(self, path: str) -> None:
        self.name = path
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is missing") from None
        self.size = os.fstat(self._fd).st_size
        self._local = threading.local()

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _pos(self) -> int:
        return int(getattr(self._local, "pos", 0))

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos(), 2: self.size}[whence]
        self._local.pos = base + offset
        return self._local.pos  # type: ignore[no-any-return]

    def tell(self) -> int:
        return self._pos()

    def read(self, n: int = -1) -> bytes:
        if self._fd is None:
            raise ValueError(f"{self.name}: read of a closed file")
        pos = self._pos()
        if n is None or n < 0:
            n = self.size - pos
        data = os.pread(self._fd, n, pos)
        self._local.pos = pos + len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SharedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RangeReader:
    """A read-only object that several DuckDB threads may seek and read at once, each
    read one ranged GET at that thread's own position."""

    def __init__(self, storage: ObjectStorage, rel: str, size: int) -> None:
        self.storage, self.rel, self.size = storage, rel, size
        self.name = storage.where(rel)
        self._local = threading.local()
        self.closed = False

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.tell(), 2: self.size}[whence]
        self._local.pos = base + offset
        return int(self._local.pos)

    def tell(self) -> int:
        return int(getattr(self._local, "pos", 0))

    def read(self, n: int = -1) -> bytes:
        pos = self.tell()
        end = self.size if n is None or n < 0 else min(self.size, pos + n)
        if end <= pos:
            return b""
        data = bytes(self.storage.read_ranges(self.rel, [pos], [end])[0])
        self._local.pos = pos + len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["MANIFEST", "LocalStorage", "ObjectStorage", "Storage", "is_url", "storage_of"]
