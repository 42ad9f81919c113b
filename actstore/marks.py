"""Which chunks of a site array being written are done, with their checksums.

A chunk is marked only after its bytes are written, so a writer killed at any point
leaves finished chunks marked and unfinished ones unmarked, and a resumed run writes
only the unmarked ones.

- **On disk** (:class:`FolderMarks`), a marker file per chunk,
  ``progress/<site>/<chunk>.done`` holding its checksum, written atomically; every
  writer's markers lie in the one folder.
- **In object storage** (:class:`ObjectMarks`), where trusting a listing is what the
  format avoids, each writer keeps one object, ``progress/<site>/<writer>.json``
  (``shard-1-of-4``: the same name when that shard resumes), rewritten whole after each
  chunk; the site's record in the manifest names every writer's object once it has
  published, so the chunks done are read from named objects only, never listed.

:func:`publish` puts a writer's progress in the manifest, and completes the site once
every chunk is marked.

Examples
--------
>>> marks = FolderMarks(tmp, "arrays.zarr/m/layer.0@1")
>>> marks.mark(3, "00ff"); marks.mark(0, "absent")
>>> marks.all()
{0: 'absent', 3: '00ff'}
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from actstore import chunks
from actstore.commit import PROGRESS_DIR, Ledger, prune_empty
from actstore.errors import SiteError
from actstore.storage import LocalStorage, Storage

if TYPE_CHECKING:
    from actstore.manifest import Manifest, SiteRecord

Checksums = dict[int, str | None]


class Marks:
    """The record of the chunks done of one site array (see the module docstring)."""

    name: str | None = None  # the object the manifest names (object storage only)

    def mark(self, chunk: int, checksum: str) -> None:
        """Record ``chunk`` as written, with its checksum (or ``chunks.ABSENT``)."""
        raise NotImplementedError

    def unmark(self, chunk: int) -> None:
        """Record ``chunk`` as to be written again (its bytes were found damaged)."""
        raise NotImplementedError

    def all(self, named: list[str] | None = None) -> Checksums:
        """Every writer's marked chunks; ``named``: the progress objects the site's
        current record names (object storage)."""
        raise NotImplementedError

    def clear(self) -> None:
        """Remove every writer's marks once the site is complete (its checksums are in
        the array)."""
        raise NotImplementedError


def marks_for(storage: Storage, record: SiteRecord, writer: str) -> Marks:
    """The marks of ``record``'s array, as ``writer`` (``shard-I-of-N``) keeps them."""
    if isinstance(storage, LocalStorage):
        return FolderMarks(storage.root, record.path)
    return ObjectMarks(storage, record.path, writer)


def progress_folder(path: str) -> str:
    """Where the marks of the array at ``path`` (relative to the store) lie."""
    return f"{PROGRESS_DIR}/{path.partition('/')[2]}"


class FolderMarks(Marks):
    """A marker file per chunk in ``progress/<site>/`` of a local store."""

    def __init__(self, root: Path, path: str) -> None:
        self.root = root
        self.array = root / path
        self.folder = root / progress_folder(path)

    def mark(self, chunk: int, checksum: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        chunks.write_marker(self.folder, chunk, checksum)

    def unmark(self, chunk: int) -> None:
        (self.folder / f"{chunk}.done").unlink(missing_ok=True)

    def all(self, named: list[str] | None = None) -> Checksums:
        return chunks.read_markers(self.folder) if self.folder.is_dir() else {}

    def clear(self) -> None:
        for debris in self.array.rglob("*.partial"):  # a killed run's chunk debris
            debris.unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        prune_empty(self.folder.parent, self.root)


class ObjectMarks(Marks):
    """One object per writer in ``progress/<site>/`` of a store in object storage."""

    def __init__(self, storage: Storage, path: str, writer: str) -> None:
        self.storage = storage
        self.folder = progress_folder(path)
        self.own = f"{self.folder}/{writer}.json"
        self.name = self.own
        self.done, self.redo = self._read(self.own)  # a resumed writer's own record

    def _read(self, rel: str) -> tuple[Checksums, set[int]]:
        try:
            body = json.loads(self.storage.read_bytes(rel))
        except FileNotFoundError:
            return {}, set()
        except ValueError as exc:
            raise SiteError(f"{self.storage.where(rel)}: unreadable ({exc})") from None
        return {int(c): v for c, v in body["done"].items()}, set(body["redo"])

    def _save(self) -> None:
        done = {str(c): v for c, v in sorted(self.done.items())}
        body = json.dumps({"done": done, "redo": sorted(self.redo)}).encode("ascii")
        self.storage.put_file(self.own, body)

    def mark(self, chunk: int, checksum: str) -> None:
        self.done[chunk] = checksum
        self.redo.discard(chunk)
        self._save()

    def unmark(self, chunk: int) -> None:
        self.done.pop(chunk, None)
        self.redo.add(chunk)
        self._save()

    def all(self, named: list[str] | None = None) -> Checksums:
        """The union of every named writer's chunks and this writer's, less those any
        of them found damaged and has not written again."""
        merged: Checksums = {}
        redo: set[int] = set()
        for rel in named or []:
            if rel != self.own:
                done, again = self._read(rel)
                merged.update(done)
                redo |= again
        merged.update(self.done)
        redo |= self.redo
        return {c: v for c, v in sorted(merged.items()) if c not in redo or c in self.done}

    def clear(self) -> None:
        self.storage.delete_tree(self.folder)


def publish(ledger: Ledger, name: str, path: str, marks: Marks) -> bool:
    """Record the chunks done of site ``name`` in its array at ``path`` (every writer's,
    as ``marks`` reads them); True once the site is complete, its checksums written
    beside its chunks before the manifest says so. A writer of an array the site no
    longer names is refused."""

    def record_done(manifest: Manifest) -> bool:
        record = manifest.sites.get(name)
        if record is None or record.path != path:
            raise SiteError(
                f"site {name} was declared again (grown, replaced or deleted) while this "
                "writer filled it; its work is not published: run the extraction again"
            )
        if record.status == "complete":  # nothing was left to write
            return True
        done = marks.all(record.progress)
        record.done_chunks = len(done)
        if marks.name is not None and marks.name not in (record.progress or []):
            record.progress = [*(record.progress or []), marks.name]
        if len(done) == record.n_chunks:
            chunks.write_checksums(ledger.storage, path, done, record.n_chunks)
            record.status = "complete"
            record.progress = None
        return record.status == "complete"

    return ledger.change(record_done)
