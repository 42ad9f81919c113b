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
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from actstore.errors import ReadOnlyError
from actstore.lock import WriterLock, commit_lock
from actstore.manifest import MANIFEST, PARTIAL_SUFFIX, Manifest, read_manifest, write_manifest

TABLES_DIR = "tables"
ARRAYS_DIR = "arrays.zarr"
RESULTS_DIR = "results"
PROGRESS_DIR = "progress"


class Ledger:
    """The manifest of one open store and the rules for changing it."""

    def __init__(self, root: Path, lock: WriterLock | None) -> None:
        self.root = root
        self.lock = lock
        self.manifest = read_manifest(root)
        self.on_commit: list[Callable[[], None]] = []

    @property
    def writable(self) -> bool:
        return self.lock is not None and self.lock.held

    @property
    def shared(self) -> bool:
        return self.lock is not None and self.lock.shared

    def require_writable(self, *, exclusive: bool = False) -> None:
        """Raise :class:`ReadOnlyError` unless this handle may make the change."""
        if not self.writable:
            raise ReadOnlyError(f"{self.root} is open read-only; use actstore.open(path, mode='a')")
        if exclusive and self.shared:
            raise ReadOnlyError(
                f"{self.root} is open as a shared (shard) writer, which may only fill sites; "
                "open it with mode='a' alone for this change"
            )

    @contextlib.contextmanager
    def update(self) -> Iterator[Manifest]:
        """Read-modify-write the manifest under the commit lock; written when the block ends.

        An exception inside the block writes nothing.
        """
        self.require_writable()
        with commit_lock(self.root):
            if self.shared:
                self.manifest = read_manifest(self.root)
            yield self.manifest
            write_manifest(self.root, self.manifest)
        for hook in self.on_commit:
            hook()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Manifest]:
        """Group changes into one commit; on an exception the manifest is left as it was."""
        self.require_writable(exclusive=True)
        snapshot = self.manifest.copy()
        try:
            yield self.manifest
        except BaseException:
            self.manifest = snapshot
            raise
        with self.update():
            pass


def named_files(manifest: Manifest) -> set[str]:
    """Every file of a table or result the manifest names (relative paths)."""
    named = {p.path for t in manifest.tables.values() for p in t.parts}
    for result in manifest.results.values():
        named.update(result.files())
    return named


def remove_uncommitted(root: Path, manifest: Manifest) -> None:
    """Delete files a crashed or failed writer left that the manifest does not name."""
    named = named_files(manifest)
    for folder in (TABLES_DIR, RESULTS_DIR):
        for path in (root / folder).glob("*/*"):
            if str(path.relative_to(root)) not in named:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        for empty in (root / folder).glob("*"):
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
    (root / (MANIFEST + PARTIAL_SUFFIX)).unlink(missing_ok=True)
    arrays_root = root / ARRAYS_DIR
    # zarr writes each chunk to "<chunk>.<uuid>.partial" and renames it; a killed
    # writer leaves such files behind
    for path in arrays_root.rglob("*" + PARTIAL_SUFFIX):
        path.unlink()
    sites = manifest.sites
    for meta in list(arrays_root.glob("**/zarr.json")):
        rel = str(meta.parent.relative_to(arrays_root))
        if (
            rel != "."
            and meta.parent.exists()
            and not any(
                rel == s or rel.startswith(s + "/") or s.startswith(rel + "/") for s in sites
            )
        ):
            shutil.rmtree(meta.parent, ignore_errors=True)
