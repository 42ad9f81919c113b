"""Reading rows of a site array from object storage.

The same chunk objects as on disk (``<array>/c/<chunk>/0``), read with ranged GETs
instead of positioned reads. A request costs about a millisecond before its first
byte, which buys a megabyte of transfer, so selected rows closer than
:data:`GAP_BYTES` are fetched as one range and picked out of it; the ranges of one
chunk go out concurrently (obstore's ``get_ranges``). Each chunk object's size is
checked once per process (a HEAD; paths are never reused), as the local reader checks
a chunk file's size on every open: a missing or cut chunk is an error, never zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from actstore.chunks import check_stored
from actstore.errors import SiteError
from actstore.manifest import SiteRecord
from actstore.objects import ObjectStorage
from actstore.reader import SiteReader, decode

GAP_BYTES = 1 << 20  # a gap shorter than this is read through: one request costs as much


def spans(local: np.ndarray, row_bytes: int, gap_bytes: int = GAP_BYTES) -> list[tuple[int, int]]:
    """Runs ``[first, stop)`` of the sorted rows ``local`` to fetch, gaps of at most
    ``gap_bytes`` read through.

    Examples
    --------
    >>> spans(np.array([0, 1, 2, 9, 40]), row_bytes=100, gap_bytes=1000)
    [(0, 10), (40, 41)]
    """
    if not local.size:
        return []
    gap_rows = gap_bytes // max(1, row_bytes)
    breaks = np.flatnonzero(np.diff(local) > gap_rows + 1) + 1
    firsts = local[np.concatenate(([0], breaks))]
    lasts = local[np.concatenate((breaks - 1, [local.size - 1]))]
    return [(int(a), int(b) + 1) for a, b in zip(firsts, lasts, strict=True)]


class ObjectSiteReader(SiteReader):
    """:class:`~actstore.reader.SiteReader` over a site in object storage; pickles as
    its URL, so dask workers anywhere read the same objects."""

    def __init__(
        self, storage: ObjectStorage, rel: str, site: str, record: SiteRecord, dtype: str | None
    ) -> None:
        super().__init__(storage.where(rel), site, record, dtype)
        self.storage = storage
        self.rel = rel
        self._sized: set[int] = set()  # chunks whose object has the size it must have

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_sized": set()}

    def _direct_chunk(self, chunk: int, local: np.ndarray, out: np.ndarray) -> None:
        rel = f"{self.rel}/c/{chunk}/0"
        runs = spans(local, self.row_bytes)
        starts = [a * self.row_bytes for a, _ in runs]
        ends = [b * self.row_bytes for _, b in runs]
        if chunk not in self._sized:  # once per chunk and process: paths are never reused
            check_stored(self.storage, self.rel, self.site, chunk, self.size)
            self._sized.add(chunk)
        try:
            buffers = self.storage.read_ranges(rel, starts, ends)
        except FileNotFoundError:
            raise SiteError(
                f"site {self.site}: chunk {chunk} ({self.storage.where(rel)}) is missing; the "
                "site was replaced or damaged since the store was opened: reopen it, or run "
                "`actstore verify`"
            ) from None
        position = 0
        for (first, stop), buffer in zip(runs, buffers, strict=True):
            got = memoryview(buffer)
            if got.nbytes != (stop - first) * self.row_bytes:
                raise SiteError(
                    f"site {self.site}: chunk {chunk} ({self.storage.where(rel)}) ended early "
                    f"(got {got.nbytes:,} of {(stop - first) * self.row_bytes:,} bytes); run "
                    "`actstore verify`"
                )
            values = np.frombuffer(got, self.stored).reshape(stop - first, self.n_units)
            lo, hi = np.searchsorted(local, [first, stop])
            pick = local[lo:hi]
            taken = values if pick.size == stop - first else values[pick - first]
            dst = out[position : position + pick.size]
            if self.converts:  # torch decodes from writable arrays only: the GET's bytes are not
                decode(np.array(taken), self.dtype, dst)
            else:
                dst[...] = taken
            position += pick.size

    def _zarr_store(self) -> Any:
        return self.storage.zarr(self.rel)

    def _check_chunk(self, chunk: int) -> None:
        check_stored(self.storage, self.rel, self.site, chunk, None)
