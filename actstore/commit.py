"""Committing changes to a store, and clearing what uncommitted writers left behind.

A :class:`Ledger` holds one open store's view of the manifest and is the only code
that changes it: :meth:`Ledger.update` is a read-modify-write under the commit lock
(a shard writer first reloads the manifest, so concurrent shards never undo each
other); :meth:`Ledger.transaction` groups changes into one commit and restores the
previous state on an exception. Files a failed or killed writer left that the
manifest does not name are removed by :func:`remove_uncommitted` when the next
exclusive writer opens the store.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from actstore.errors import CommitConflictError, CommitUnknownError, ReadOnlyError
from actstore.lock import ObjectClaim, WriterLock
from actstore.manifest import MANIFEST, PARTIAL_SUFFIX, Manifest
from actstore.storage import LocalStorage, Storage

TABLES_DIR = "tables"
IMAGES_DIR = "images"  # PNG files of images ingested as arrays
ARRAYS_DIR = "arrays.zarr"
RESULTS_DIR = "results"
PROGRESS_DIR = "progress"


def progress_folder(path: str) -> str:
    """Where the progress of the site array at ``path`` (relative to the store) lies.

    Examples
    --------
    >>> progress_folder("arrays.zarr/minilm/layer.3@4")
    'progress/minilm/layer.3@4'
    """
    return f"{PROGRESS_DIR}/{path.partition('/')[2]}"


LOCAL_ONLY = (
    "{where} is in object storage, and {what} needs a local store: do it there, then "
    "`actstore copy` the store"
)
COMMIT_RETRIES = 50  # a shard writer's tries at a commit other shards keep preceding
_T = TypeVar("_T")


class Ledger:
    """The manifest of one open store and the rules for changing it."""

    def __init__(self, storage: Storage, lock: WriterLock | ObjectClaim | None) -> None:
        self.storage = storage
        self.lock = lock
        self.manifest = storage.read_manifest()
        self._open_transactions = 0

    def local_root(self, what: str) -> Path:
        """The store's directory, for ``what`` (an operation only a local store has)."""
        if not isinstance(self.storage, LocalStorage):
            raise ReadOnlyError(LOCAL_ONLY.format(where=self.storage.where(), what=what))
        return self.storage.root

    @property
    def root(self) -> Path:
        """The store's directory (an error for a store in object storage)."""
        return self.local_root("this operation")

    @property
    def in_transaction(self) -> bool:
        """Whether changes join an open :meth:`transaction` rather than commit now."""
        return self._open_transactions > 0

    @property
    def writable(self) -> bool:
        return self.lock is not None and self.lock.held

    @property
    def shared(self) -> bool:
        return self.lock is not None and self.lock.shared

    def require_writable(self, *, exclusive: bool = False) -> None:
        """Raise :class:`ReadOnlyError` unless this handle may make the change."""
        if not self.writable:
            raise ReadOnlyError(
                f"{self.storage.where()} is open read-only; use actstore.open(path, mode='a')"
            )
        if exclusive and self.shared:
            raise ReadOnlyError(
                f"{self.storage.where()} is open as a shared (shard) writer, which may only "
                "fill sites; open it with mode='a' alone for this change"
            )

    @contextlib.contextmanager
    def update(self) -> Iterator[Manifest]:
        """Read-modify-write the manifest; committed when the block ends.

        On disk under the commit lock (a shard writer first reloads the manifest); in
        object storage by a conditional create of the next generation, which raises
        :class:`~actstore.errors.CommitConflictError` if another writer committed it
        first (then this handle keeps the manifest it had). An exception inside the
        block writes nothing. Inside a :meth:`transaction` the change joins it and is
        written (or undone) when the transaction ends.
        """
        self.require_writable()
        if self._open_transactions:
            yield self.manifest
            return
        with self.storage.commit_lock():
            if self.shared:
                self.manifest = self.storage.read_manifest()
            before = self.manifest.copy()
            try:
                yield self.manifest
                self.storage.commit(self.manifest)
            except BaseException:  # the change stays out of memory as out of the store
                self.manifest = before
                raise

    def change(self, apply: Callable[[Manifest], _T], undo: Callable[[], None] | None = None) -> _T:
        """``apply`` the change to the manifest and commit it, as :meth:`update`. A shard
        writer in object storage, whose commit another shard's may precede, calls
        ``undo`` (to delete what ``apply`` wrote), reads the newest manifest and applies
        the change again (``apply`` must be repeatable)."""
        for attempt in itertools.count():
            try:
                with self.update() as manifest:
                    return apply(manifest)
            except CommitConflictError:
                if undo is not None:
                    undo()
                if not self.shared or attempt >= COMMIT_RETRIES:
                    raise
                time.sleep(random.uniform(0.0, 0.01 * 2 ** min(attempt, 7)))
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Manifest]:
        """Group changes into one commit; on an exception (a failed commit too) the
        manifest is left as it was and the files the changes wrote are removed.

        Every :meth:`update` made inside joins it; a nested transaction joins the outer one.
        """
        self.require_writable(exclusive=True)
        snapshot = self.manifest.copy()
        self._open_transactions += 1
        try:
            yield self.manifest
        except BaseException:
            self._undo(snapshot, deleting=True)
            raise
        finally:
            self._open_transactions -= 1
        if not self._open_transactions:
            try:
                with self.update():
                    pass
            except BaseException as exc:
                self._undo(snapshot, deleting=not isinstance(exc, CommitUnknownError))
                raise

    def _undo(self, snapshot: Manifest, *, deleting: bool) -> None:
        """Back to ``snapshot``; ``deleting`` the files added since (a nested transaction
        its own: those its outer one added are named by ``snapshot``)."""
        failed, self.manifest = self.manifest, snapshot
        if deleting:
            remove_added(self.storage, snapshot, failed)


def named_files(manifest: Manifest) -> set[str]:
    """Every file of a table or result the manifest names (relative paths)."""
    named = {p.path for t in manifest.tables.values() for p in t.parts}
    for result in manifest.results.values():
        named.update(result.files())
    return named


# The only names the store itself writes under tables/ and results/; anything else
# there (a user's notes, a symlink) is left alone.
_IMAGE = re.compile(r"^[0-9a-f]{64}\.png(\.partial)?$")
_OWN = re.compile(
    r"^(part-\d{5}|(part|rows|columns)-[0-9a-f]{16})\.parquet(\.partial)?$|^matrix-[0-9a-f]{16}\.zarr$"
)


def remove_added(storage: Storage, before: Manifest, after: Manifest) -> None:
    """Delete what a failed transaction wrote: the files and site arrays ``after`` (its
    uncommitted manifest) names and ``before`` (the committed one) does not, and the
    folders this leaves empty. Best effort: what an OS error leaves is removed by
    :func:`remove_uncommitted` when the store is next opened for writing."""
    rels = sorted(named_files(after) - named_files(before))
    added = sorted({s.path for s in after.sites.values()} - {s.path for s in before.sites.values()})
    added += [progress_folder(rel) for rel in added]
    if not isinstance(storage, LocalStorage):
        with contextlib.suppress(OSError):  # unnamed objects are invisible to readers
            storage.delete_files(rels)
            for rel in rels + added:  # matrices, site arrays and their progress: folders
                storage.delete_tree(rel)
        return
    root = storage.root
    files = [root / rel for rel in rels]
    try:
        for path in files + [root / rel for rel in added]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # a matrix result, a site's array or its progress
            elif path in files:
                path.unlink(missing_ok=True)
            prune_empty(path.parent, root)
    except OSError:
        pass


def prune_empty(folder: Path, root: Path) -> None:
    """Remove ``folder`` and the folders above it while they are empty, up to the store's
    own top folders (``tables``, ``arrays.zarr``, ``results``), which stay."""
    keep = {root, *(root / top for top in (TABLES_DIR, ARRAYS_DIR, RESULTS_DIR))}
    while folder not in keep and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone: stop
            return
        folder = folder.parent


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """Entries of a real folder (not a symlink), or none."""
    if folder.is_symlink() or not folder.is_dir():
        return []
    with os.scandir(folder) as it:
        return list(it)


def remove_uncommitted(root: Path, manifest: Manifest) -> None:
    """Delete files a crashed or failed writer left that the manifest does not name.

    Never follows a symlink, never leaves the store, and deletes only names the store
    itself writes.
    """
    named = named_files(manifest)
    for kind in (TABLES_DIR, RESULTS_DIR):
        for table in _entries(root / kind):
            if not table.is_dir(follow_symlinks=False):
                continue
            for entry in _entries(Path(table.path)):
                rel = f"{kind}/{table.name}/{entry.name}"
                if rel in named or entry.is_symlink() or not _OWN.match(entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            if not _entries(Path(table.path)):
                os.rmdir(table.path)
    (root / (MANIFEST + PARTIAL_SUFFIX)).unlink(missing_ok=True)
    for debris in root.glob(f"{MANIFEST}.*{PARTIAL_SUFFIX}"):  # a killed copy's manifest
        debris.unlink(missing_ok=True)
    _clear_images(root, manifest)
    paths = {s.path.partition("/")[2] for s in manifest.sites.values()}
    _clear_arrays(root / ARRAYS_DIR, paths, "zarr.json")
    _clear_arrays(root / PROGRESS_DIR, paths, None)


def _clear_images(root: Path, manifest: Manifest) -> None:
    """Remove the PNG files of ingested arrays (``images/<sha256>.png``) that no
    committed ``images`` row names: a killed or failed ingest wrote them."""
    folder = root / IMAGES_DIR
    if folder.is_symlink() or not folder.is_dir():
        return
    import pyarrow.parquet as pq

    record = manifest.tables.get("images")
    named = set()
    for part in record.parts if record is not None else []:
        named.update(pq.read_table(root / part.path, columns=["path"]).column(0).to_pylist())
    for entry in _entries(folder):
        unnamed = f"{IMAGES_DIR}/{entry.name}" not in named
        if unnamed and _IMAGE.match(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


def _clear_arrays(base: Path, paths: set[str], marker: str | None) -> None:
    """Under ``base`` (arrays or progress), remove ``*.partial`` debris of killed writes
    and the folders of arrays the manifest no longer names (replaced or deleted sites;
    for arrays, folders holding ``marker``), walking real folders only."""
    for folder, dirs, files in os.walk(base, followlinks=False):
        here = Path(folder)
        rel = here.relative_to(base).as_posix()
        for name in files:
            if name.endswith(PARTIAL_SUFFIX) and not (here / name).is_symlink():
                (here / name).unlink()
        found = any(n.endswith(".done") for n in files) if marker is None else marker in files
        if (
            rel != "."
            and found
            and not any(
                rel == p or rel.startswith(p + "/") or p.startswith(rel + "/") for p in paths
            )
        ):
            shutil.rmtree(here)
            dirs.clear()
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
