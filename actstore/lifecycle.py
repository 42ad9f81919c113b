"""Creating and opening stores: ``actstore.create`` and ``actstore.open``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from actstore.commit import ARRAYS_DIR, RESULTS_DIR, TABLES_DIR
from actstore.errors import ParameterError, StoreExistsError
from actstore.lock import ObjectClaim, WriterLock
from actstore.manifest import MANIFEST, Manifest, read_manifest, write_manifest
from actstore.storage import LocalStorage, is_url, storage_of
from actstore.store import Store
from actstore.version import __version__


def create(path: str | Path, *, overwrite: bool = False) -> Store:
    """Create an empty store at ``path`` and open it for writing.

    ``overwrite`` replaces an existing *store* (a directory with a manifest); any
    other existing path is refused.

    Examples
    --------
    >>> with actstore.create(tmp / "new.actstore") as new:
    ...     new.n_rows("tokens")
    0
    """
    if is_url(str(path)):
        return _create_object_store(str(path), overwrite)
    root = Path(path)
    if root.exists():
        if not overwrite or not (root / MANIFEST).is_file():
            is_store = (root / MANIFEST).is_file()
            what = "a store" if is_store else "a path that is not a store"
            advice = "pass overwrite=True to replace it" if is_store else "choose another path"
            raise StoreExistsError(f"{root} already exists ({what}); {advice}")
        open_store(root, mode="a").close()  # takes the lock: never delete under a writer
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for folder in (TABLES_DIR, ARRAYS_DIR, RESULTS_DIR):
        (root / folder).mkdir()
    write_manifest(root, Manifest.new(__version__))
    return open_store(root, mode="a")


def open_store(path: str | Path, mode: Literal["r", "a"] = "r", *, shared: bool = False) -> Store:
    """Open the store at ``path``: ``mode="r"`` to read, ``"a"`` to add to it.

    ``path`` may be a URL of object storage (``s3://bucket/prefix``, see
    :mod:`actstore.objects`). There no lock keeps a second writer out: writers work
    side by side, and when two commit the same generation one gets
    :class:`~actstore.errors.CommitConflictError` and its change is not visible.

    ``shared=True`` (with ``mode="a"``) opens a shard writer: several processes may
    hold the store this way at once to fill disjoint chunks of the same sites; other
    changes need the exclusive writer (``mode="a"`` alone).

    Examples
    --------
    >>> with actstore.open(store_path) as reader:
    ...     reader.mode, reader.n_rows("sentences")
    ('r', 30)
    """
    if mode not in ("r", "a"):
        raise ParameterError("mode", f"must be 'r' or 'a', got {mode!r}")
    storage = storage_of(path)
    if mode == "r":
        return Store(storage, "r", None)
    if not isinstance(storage, LocalStorage):
        claim = ObjectClaim(shared=shared)
        claim.acquire()
        return Store(storage, "a", claim)
    root = storage.root
    read_manifest(root)  # raises the precise error for a missing or foreign path
    lock = WriterLock(root, shared=shared)
    lock.acquire()
    try:
        return Store(storage, "a", lock)
    except BaseException:
        lock.release()
        raise


def _create_object_store(url: str, overwrite: bool) -> Store:
    """An empty store under ``url``: its first manifest, created where none is.

    ``overwrite`` replaces a store: an empty manifest is committed as its next
    generation (so a writer still holding the old store loses its commit), then every
    other object under ``url`` is deleted, as a local store's directory is."""
    from actstore.objects import MANIFESTS, ObjectStorage

    storage = ObjectStorage(url)
    committed = storage.generations()
    if committed and not overwrite:
        raise StoreExistsError(
            f"{url} already holds a store (generation {committed[-1]}); pass "
            "overwrite=True to replace it"
        )
    fresh = Manifest.new(__version__)
    if committed:  # the numbering goes on, so a writer of the old store cannot commit
        fresh.generation = committed[-1]
    storage.commit(fresh)
    if committed:  # what the old generations named (their manifests stay, naming gone files)
        storage.delete_files(n for n in storage.files("") if not n.startswith(f"{MANIFESTS}/"))
    return open_store(url, mode="a")
