"""Writing a site: whole chunks, a durable record of the chunks done, a final commit.

A :class:`SiteWriter` accepts row blocks in any order, buffers them until a chunk
is complete and then writes that chunk whole (partial-chunk writes are many times
slower in Zarr). After a chunk's bytes are written, its checksum is recorded among
the site's marks (:mod:`actstore.marks`: a marker file per chunk on disk, one object
per writer in object storage). A writer killed at any point therefore
leaves finished chunks marked and unfinished ones unmarked; declaring the same site
again resumes with the unmarked chunks, and rows written into finished chunks are
ignored. :meth:`SiteWriter.commit` hands the chunks done to the store, which
publishes them in the manifest; the writer never edits the manifest itself.

Memory: the writer holds every chunk that is partly filled. Feed rows roughly in
order (or a chunk's worth of sentences at a time) to keep that small.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import zarr

from actstore import chunks, coverage
from actstore.arrays import to_bfloat16_bits
from actstore.errors import SiteError
from actstore.manifest import SiteRecord
from actstore.marks import Marks
from actstore.reader import STORAGE_DTYPES
from actstore.storage import Storage

# (site name, its array's path, its marks) -> whether the site is now complete
Publish = Callable[[str, str, Marks], bool]


class SiteWriter:
    """Writes the rows of one declared site. Obtain one from :meth:`Store.create_site`.

    Examples
    --------
    >>> writer = store.create_site("demo/layer.0", table="tokens", n_units=4)
    >>> for start, stop in writer.pending_ranges():
    ...     writer.write(start, np.ones((stop - start, 4), np.float32))
    >>> writer.commit()
    >>> store.site("demo/layer.0").status
    'complete'
    """

    def __init__(
        self, storage: Storage, name: str, record: SiteRecord, publish: Publish, marks: Marks
    ) -> None:
        self.storage = storage
        self.name = name
        self.n_rows: int = record.n_rows
        self.n_units: int = record.n_units
        self.chunk_rows: int = record.chunk_rows
        self.dtype: str = record.dtype
        self.n_chunks: int = record.n_chunks
        self.covered = record.covered()
        self._publish = publish
        self.path = record.path
        # every chunk is a file, zeros too (zarr skips all-zero chunks by default, which a
        # reader could not tell from a deleted one)
        array = zarr.open_array(storage.writable_zarr(record.path), mode="r+")
        self._array: Any = array.with_config({"write_empty_chunks": True})
        self._chunk_size = chunks.chunk_bytes(record)
        self.marks = marks
        if record.status == "complete":
            self.done: set[int] = set(range(self.n_chunks))
        else:
            self.done = set(self._intact(marks.all(record.progress)))
        self._buffers: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _intact(self, marked: dict[int, str | None]) -> dict[int, str | None]:
        """The marked chunks whose files still hold what was written; the others are
        unmarked, so a resumed run writes them again. In object storage a chunk another
        writer marked is checked for its size only: its writer checked its bytes, and
        every shard downloading every shard's chunks at each resume would cost the
        site's bytes times the shards."""
        intact: dict[int, str | None] = {}
        own = self.marks.own_chunks()
        for chunk, checksum in sorted(marked.items()):
            start, stop = self.chunk_range(chunk)
            if checksum == chunks.ABSENT:  # no file: right only for a chunk of no covered row
                ok = not self.needed(chunk)
            else:
                try:
                    chunks.check_stored(self.storage, self.path, self.name, chunk, self._chunk_size)
                    ok = (
                        checksum is None
                        or (own is not None and chunk not in own)
                        or chunks.digest(np.asarray(self._array[start:stop])) == checksum
                    )
                except Exception:  # missing, cut, or undecodable (zstd raises RuntimeError)
                    ok = False
            if ok:
                intact[chunk] = checksum
            else:
                self.marks.unmark(chunk)
        return intact

    # -- what is left ---------------------------------------------------------------
    def chunk_range(self, chunk: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of chunk number ``chunk``."""
        start = chunk * self.chunk_rows
        return start, min(start + self.chunk_rows, self.n_rows)

    def pending_chunks(self) -> list[int]:
        """Chunks not yet written, in order."""
        return [c for c in range(self.n_chunks) if c not in self.done]

    def needed(self, chunk: int) -> coverage.Ranges:
        """The rows of ``chunk`` the site covers, as ranges: what filling it takes."""
        return coverage.clip(self.covered, *self.chunk_range(chunk))

    def pending_ranges(self) -> list[tuple[int, int]]:
        """Row ranges still to write (the covered rows of pending chunks), merged."""
        return coverage.merge(r for c in self.pending_chunks() for r in self.needed(c))

    @property
    def complete(self) -> bool:
        return len(self.done) == self.n_chunks

    # -- writing -----------------------------------------------------------------------
    def write(self, start: int, block: Any) -> None:
        """Write ``block`` (rows by ``n_units``) as rows ``start ... start + len(block) - 1``.

        Values are converted to the site's dtype (bfloat16 sites take float32 input).
        Rows that fall in chunks already written are ignored, so a resumed run can
        replay whole sentences across a chunk boundary.
        """
        values = np.asarray(block)
        if values.ndim != 2 or values.shape[1] != self.n_units:
            raise SiteError(
                f"site {self.name}: expected a block of shape (rows, {self.n_units}), "
                f"got {values.shape}"
            )
        self.write_rows(np.arange(start, start + len(values)), values)

    def write_rows(self, rows: np.ndarray, block: Any) -> None:
        """Write ``block[i]`` as row ``rows[i]``; ``rows`` may come in any order.

        Like :meth:`write`, for rows that are not contiguous (the words of a batch of
        sentences sorted by length, say).
        """
        values = np.asarray(block)
        rows = np.asarray(rows, dtype=np.int64)
        if values.ndim != 2 or values.shape != (len(rows), self.n_units):
            raise SiteError(
                f"site {self.name}: expected a block of shape ({len(rows)}, {self.n_units}), "
                f"got {values.shape}"
            )
        if not rows.size:
            return
        if rows.min() < 0 or rows.max() >= self.n_rows:
            raise SiteError(
                f"site {self.name}: rows {rows.min()}..{rows.max()} are outside "
                f"0..{self.n_rows - 1}"
            )
        finite = _finite_rows(values)
        if not finite.all():
            raise SiteError(f"site {self.name}: row {rows[~finite][0]} holds NaN or infinity")
        values = self._to_storage(values)
        chunk_of = rows // self.chunk_rows
        for chunk in np.unique(chunk_of).tolist():
            if chunk in self.done:
                continue
            mine = chunk_of == chunk
            self._fill(chunk, rows[mine] - chunk * self.chunk_rows, values[mine])

    def _to_storage(self, values: np.ndarray) -> np.ndarray:
        if self.dtype == "bfloat16":
            return to_bfloat16_bits(values.astype(np.float32, copy=False))
        return values.astype(STORAGE_DTYPES[self.dtype], copy=False)

    def _fill(self, chunk: int, offsets: np.ndarray, values: np.ndarray) -> None:
        if chunk not in self._buffers:
            start, stop = self.chunk_range(chunk)
            seen = np.ones(stop - start, bool)  # rows the site does not cover stay zero
            for lo, hi in self.needed(chunk):
                seen[lo - start : hi - start] = False
            data = np.zeros((stop - start, self.n_units), STORAGE_DTYPES[self.dtype])
            self._buffers[chunk] = (data, seen)
        data, seen = self._buffers[chunk]
        if self.covered != [(0, self.n_rows)]:
            start = chunk * self.chunk_rows
            keep = ~coverage.outside(offsets + start, self.needed(chunk))
            offsets, values = offsets[keep], values[keep]
        data[offsets] = values
        seen[offsets] = True
        if seen.all():
            self._flush(chunk)

    def _flush(self, chunk: int) -> None:
        data, _ = self._buffers.pop(chunk)
        start, stop = self.chunk_range(chunk)
        if self.storage.hard_links:  # a new file, never a rewrite in place: a chunk file
            # may be a hard link shared with the array this site grew from, which readers
            # of an older manifest still read
            self.storage.delete_files([f"{self.path}/c/{chunk}/0"])
        self._array[start:stop] = data
        self.marks.mark(chunk, chunks.digest(data))
        self.done.add(chunk)

    # -- commit ------------------------------------------------------------------------
    def commit(self) -> None:
        """Publish progress in the manifest; once every chunk is written the site is complete.

        Rows buffered in partly filled chunks are not written: a commit with pending
        chunks records the site as partial, and declaring it again resumes.
        """
        named = self.marks.all()  # what this writer (on disk: every writer) has marked
        self.done |= set(named)
        if self._publish(self.name, self.path, self.marks):  # nobody writes this site any more
            self.done = set(range(self.n_chunks))
            self.marks.clear()

    @property
    def buffered_rows(self) -> int:
        """Rows held in memory waiting for their chunk to fill."""
        return sum(
            int(seen.sum()) - len(seen) + coverage.count(self.needed(chunk))
            for chunk, (_, seen) in self._buffers.items()
        )


def _finite_rows(values: np.ndarray) -> np.ndarray:
    """Rows without NaN or infinity. float16 is tested on its bits: numpy has no fast
    float16 arithmetic, and an all-ones exponent is exactly what marks NaN and inf."""
    if values.dtype == np.float16:
        exponent = values.view(np.uint16) & np.uint16(0x7C00)
        return np.asarray((exponent != 0x7C00).all(axis=1))
    return np.asarray(np.isfinite(values).all(axis=1))
