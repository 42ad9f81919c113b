"""Stores in object storage: :class:`ObjectStorage`, a store under ``scheme://bucket/prefix``.

Read and written through obstore (S3 and any S3-compatible server, Google Cloud
Storage, Azure), configured the standard way, by ``AWS_*`` (``GOOGLE_*``, ``AZURE_*``)
environment variables: ``AWS_ENDPOINT_URL`` for a server other than AWS,
``AWS_ALLOW_HTTP=true`` for plain HTTP, ``AWS_SKIP_SIGNATURE=true`` for anonymous
access.

In object storage there is no rename and no lock, so the manifest is not one object
replaced in place: each commit creates ``manifests/<generation>.json`` with a
conditional write (``If-None-Match: *``), which the server grants to exactly one
writer; a reader takes the newest generation there is. Every other file of the store
keeps its local name and layout, and is written before the manifest that names it.

Examples
--------
>>> ObjectStorage("s3://bucket/corpora/ewt/").where("tables/tokens/part-00000.parquet")
's3://bucket/corpora/ewt/tables/tokens/part-00000.parquet'
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from actstore.errors import CommitUnknownError, StorageError, StoreNotFoundError
from actstore.manifest import Manifest, manifest_bytes, parse_manifest, stamp
from actstore.storage import PositionedReader, Storage, url_parts

SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss", "http", "https")
MANIFESTS = "manifests"  # manifests/<generation, 20 digits>.json
_T = TypeVar("_T")


class ObjectStorage(Storage):
    """A store under a prefix of an object store, named by URL; pickles as its URL, so a
    dask worker in another process or on another host reads the same objects."""

    def __init__(self, url: str) -> None:
        parts = url_parts(url)
        if parts is None or parts[0] not in SCHEMES:
            raise StorageError(
                f"{url}: not a store URL; expected scheme://bucket/prefix with scheme one of "
                f"{', '.join(SCHEMES)}"
            )
        self.scheme, self.bucket, self.prefix = parts
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
            if "NoSuchBucket" in str(exc):
                first = f"the bucket {self.bucket} does not exist"
            elif "169.254.169.254" in first or "credential" in first.lower():  # no credentials
                first += (
                    " (no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                    "or AWS_SKIP_SIGNATURE=true for anonymous access, and AWS_ENDPOINT_URL "
                    "for a server other than AWS)"
                )
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
        return self._zarr(rel, read_only=True)

    def writable_zarr(self, rel: str) -> Any:
        return self._zarr(rel, read_only=False)

    def _zarr(self, rel: str, *, read_only: bool) -> Any:
        from obstore.store import from_url
        from zarr.storage import ObjectStore

        url = f"{self.scheme}://{self.bucket}/{self.key(rel)}"
        return ObjectStore(self.call(rel, lambda: from_url(url)), read_only=read_only)

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

    def put_file(self, rel: str, data: bytes) -> None:
        self.put(rel, data)

    def delete_tree(self, rel: str) -> None:
        self.delete_files(f"{rel}/{name}" if rel else name for name in self.files(rel))

    def copy_file(self, source: str, target: str) -> None:
        import obstore

        self.call(source, lambda: obstore.copy(self.client, self.key(source), self.key(target)))

    def delete_files(self, rels: Iterable[str]) -> None:
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

    def holds_store(self) -> bool:
        return bool(self.generations())

    def remove_all(self) -> None:
        with contextlib.suppress(OSError):
            self.delete_files(sorted(self.files("")))

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

        stamp(manifest)
        try:
            self.create_manifest(manifest)
        except FileExistsError:
            raise CommitConflictError(
                f"{self.url}: another writer committed generation {manifest.generation} "
                "first; nothing of this change is visible: reopen the store and run it again"
            ) from None

    def create_manifest(self, manifest: Manifest) -> None:
        rel = manifest_name(manifest.generation)
        body = manifest_bytes(manifest)
        try:
            self.put(rel, body, create=True)
        except FileExistsError:
            if not self._holds(rel, body):  # else a retried PUT whose first try went through
                raise
        except StorageError as exc:  # no answer: ask the store whether it landed
            try:
                if self._holds(rel, body):
                    return
                self.read_bytes(rel)
            except FileNotFoundError:
                raise exc from None  # it did not land: the commit failed, cleanly
            except StorageError:
                pass
            raise CommitUnknownError(
                f"{self.where(rel)}: the commit's request failed ({exc}) and whether it "
                "landed cannot be told now; nothing was deleted: reopen the store to see"
            ) from None

    def _holds(self, rel: str, body: bytes) -> bool:
        """Whether object ``rel`` holds ``body``: another writer's commit of the same
        generation is another change (the files it adds have random names; and two
        writers making the very same change in the same second leave the same store)."""
        try:
            return self.read_bytes(rel) == body
        except FileNotFoundError:
            return False


def manifest_name(generation: int) -> str:
    """The object of one generation's manifest in an object store."""
    return f"{MANIFESTS}/{generation:020d}.json"


class RangeReader(PositionedReader):
    """An object as a :class:`~actstore.storage.PositionedReader`: each read one ranged
    GET."""

    def __init__(self, storage: ObjectStorage, rel: str, size: int) -> None:
        super().__init__()
        self.storage, self.rel, self.size = storage, rel, size
        self.name = storage.where(rel)
        self._closed = False

    def read_at(self, position: int, n: int) -> bytes:
        return bytes(self.storage.read_ranges(self.rel, [position], [position + n])[0])

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
