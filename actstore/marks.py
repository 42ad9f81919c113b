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
from actstore.commit import Ledger, progress_folder, prune_empty
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

    def mark_many(self, checksums: dict[int, str]) -> None:
        """:meth:`mark` each chunk, in one write where the record is one object."""
        for chunk, checksum in checksums.items():
            self.mark(chunk, checksum)

    def unmark(self, chunk: int) -> None:
        """Record ``chunk`` as to be written again (its bytes were found damaged)."""
        raise NotImplementedError

    def own_chunks(self) -> set[int] | None:
        """The chunks this writer marked itself (None: every writer's marks are one
        record, as on disk)."""
        return None

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
    """One object per writer in ``progress/<site>/`` of a store in object storage.

    Each object records, per chunk, the last thing its writer found: written (with the
    checksum) or damaged (to write again), with a version one above the highest this
    writer had seen for that chunk in any record. Merged, the highest version decides
    (a write at a tie), so a chunk one shard found damaged and its own shard wrote
    again is done, whatever the hosts' clocks say.
    """

    def __init__(self, storage: Storage, path: str, writer: str) -> None:
        self.storage = storage
        self.folder = progress_folder(path)
        self.own = f"{self.folder}/{writer}.json"
        self.name = self.own
        self.events = self._read(self.own)  # a resumed writer's own record
        self.seen = {c: version for c, (version, _) in self.events.items()}

    def _read(self, rel: str) -> dict[int, tuple[int, str | None]]:
        """Chunk -> (version, checksum; None: found damaged) as the writer of ``rel``
        recorded it."""
        try:
            body = json.loads(self.storage.read_bytes(rel))
            return {int(c): (int(n), v) for c, (n, v) in body.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError, AttributeError) as exc:
            raise SiteError(f"{self.storage.where(rel)}: unreadable ({exc})") from None

    def _record(self, checksums: dict[int, str | None]) -> None:
        for chunk, checksum in checksums.items():
            version = self.seen.get(chunk, 0) + 1
            self.events[chunk] = (version, checksum)
            self.seen[chunk] = version
        body = {str(c): [n, v] for c, (n, v) in sorted(self.events.items())}
        self.storage.put_file(self.own, json.dumps(body).encode("ascii"))

    def mark(self, chunk: int, checksum: str) -> None:
        self._record({chunk: checksum})

    def mark_many(self, checksums: dict[int, str]) -> None:
        self._record(dict(checksums))

    def unmark(self, chunk: int) -> None:
        self._record({chunk: None})

    def own_chunks(self) -> set[int] | None:
        return {c for c, (_, v) in self.events.items() if v is not None}

    def all(self, named: list[str] | None = None) -> Checksums:
        """Every chunk whose latest event, among the named writers' and this one's, is
        a write (and what this writer has now seen, for the versions of its next)."""
        latest = dict(self.events)
        for rel in named or []:
            if rel != self.own:
                for chunk, event in self._read(rel).items():
                    seen = latest.get(chunk)
                    if seen is None or event[0] > seen[0] or (event[0] == seen[0] and event[1]):
                        latest[chunk] = event
        for chunk, (version, _) in latest.items():
            self.seen[chunk] = max(self.seen.get(chunk, 0), version)
        return {c: v for c, (_, v) in sorted(latest.items()) if v is not None}

    def clear(self) -> None:  # a listing to delete, never to trust
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
