"""Reading rows of a site array at the speed of the page cache.

A site's uncompressed chunks are plain files: chunk ``c`` holds rows
``c * chunk_rows ...`` in C order, ``n_units`` values each (zarr v3's ``bytes`` codec).
:class:`SiteReader` reads the rows asked for straight into the caller's array with
positioned reads (``os.preadv``), so nothing is read twice and nothing is allocated per
chunk. Compressed chunks (``codec="zstd"``) go through zarr instead.

- **Row selections cost what they select.** Selected rows of a chunk are read as runs
  of consecutive rows, several runs per system call, the gaps between them landing in
  a small reused sink; where the gaps are short it is cheaper to read the whole span
  once and gather the rows from it, and the reader does that instead.
- **Decoding.** float16 and bfloat16 sites are decoded into float32 by torch when it is
  installed (about 20 GB/s on one core; numpy's float16 conversion manages 1 GB/s), in
  pieces of about 1 MiB read into a reused per-thread buffer, so decoded values are
  written once, to their destination.
- **Integrity.** Each chunk file is opened once per read and its size checked on the
  open file: the rows come from that file even if it is deleted meanwhile (paths are
  never reused), a missing or short chunk is an error, never zeros.

Examples
--------
>>> reader = store.site_reader("toy/layer.0")
>>> reader.take(np.array([0, 5, 6, 400])).shape, reader.read(0, 10).dtype
((4, 16), dtype('float32'))
"""

from __future__ import annotations

import importlib
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from actstore.chunks import check_present, chunk_bytes
from actstore.errors import SiteError
from actstore.manifest import SiteRecord

GAP_BYTES = 32 << 10  # reading through a gap this long costs about one more system call
PIECE_BYTES = 1 << 20  # decoded in pieces of about this many stored bytes (stays in L2)
SPAN_BYTES = 16 << 20  # at most this much of a chunk is read into scratch at once
_IOV_MAX = 1024  # buffers per preadv (Linux's IOV_MAX)
BLOCK_BYTES = 16 << 20  # sparse selections gather several chunks' rows into blocks this big

# Logical dtype -> dtype stored in Zarr. numpy has no bfloat16, so bfloat16 sites
# keep the raw 16 bits as uint16 and are read back as float32.
STORAGE_DTYPES = {"float16": "float16", "float32": "float32", "bfloat16": "uint16"}

_scratch = threading.local()
_modules: dict[str, Any] = {}


def read_dtype(dtype: str, as_dtype: str | None = None) -> np.dtype[Any]:
    """The numpy dtype a site of logical ``dtype`` is read as (``as_dtype`` if given).

    Examples
    --------
    >>> read_dtype("bfloat16"), read_dtype("float16"), read_dtype("float16", "float32")
    (dtype('float32'), dtype('float16'), dtype('float32'))
    """
    if as_dtype is not None:
        return np.dtype(as_dtype)
    return np.dtype("float32" if dtype == "bfloat16" else dtype)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _torch() -> Any:
    """torch if installed (the fast decoder), else None; looked up once."""
    if "torch" not in _modules:
        try:
            _modules["torch"] = importlib.import_module("torch")
        except ImportError:  # the core works without torch, decoding with numpy
            _modules["torch"] = None
    return _modules["torch"]


def decode(stored: np.ndarray, dtype: str, out: np.ndarray) -> None:
    """Convert rows of a site's stored values (``dtype`` its logical dtype) into ``out``.

    Exact: float16 and bfloat16 values are all representable in float32.

    Examples
    --------
    >>> out = np.empty(3, np.float32)
    >>> decode(np.array([1.5, -2.0, 65504.0], np.float16), "float16", out)
    >>> out.tolist()
    [1.5, -2.0, 65504.0]
    """
    torch = _torch()
    if torch is not None and out.dtype in (np.float32, np.float64):
        if dtype == "bfloat16":
            source = torch.from_numpy(stored.view(np.int16)).view(torch.bfloat16)
        else:
            source = torch.from_numpy(stored)
        torch.from_numpy(out).copy_(source)
    elif dtype == "bfloat16":
        out[...] = from_bfloat16_bits(stored)
    else:
        out[...] = stored


def block_cuts(
    rows: np.ndarray, chunk_rows: int, row_bytes: int, target_bytes: int | None = None
) -> list[int]:
    """Where to cut sorted ``rows`` into blocks: at chunk boundaries, each block the
    selected rows of one or more whole chunks, ``target_bytes`` (``row_bytes`` per row;
    default :data:`BLOCK_BYTES`) at most unless a single chunk holds more.

    A full scan gets a block per chunk or two; a sparse selection (5% of the rows)
    gathers many chunks per block, so it is not charged a task per chunk it touches.

    Examples
    --------
    >>> block_cuts(np.arange(10), chunk_rows=3, row_bytes=BLOCK_BYTES // 6)
    [0, 6, 10]
    >>> block_cuts(np.array([0, 1, 7, 8]), chunk_rows=2, row_bytes=1)
    [0, 4]
    """
    chunk_of = rows // chunk_rows
    bounds = [*(np.flatnonzero(np.diff(chunk_of)) + 1).tolist(), rows.size]
    limit = max(1, (target_bytes or BLOCK_BYTES) // max(1, row_bytes))
    cuts, previous = [0], 0
    for bound in bounds:
        if bound - cuts[-1] > limit and previous > cuts[-1]:
            cuts.append(previous)
        previous = bound
    if rows.size:
        cuts.append(rows.size)
    return cuts


def _buffer(name: str, nbytes: int) -> np.ndarray:
    """A reused per-thread byte buffer of at least ``nbytes``."""
    buffer: np.ndarray | None = getattr(_scratch, name, None)
    if buffer is None or buffer.size < nbytes:
        buffer = np.empty(max(nbytes, 1 << 16), np.uint8)
        setattr(_scratch, name, buffer)
    return buffer


class SiteReader:
    """Reads rows of one site array; nothing else.

    Pickles as its path and record fields, so a dask worker in another process reads
    the same files. ``as_dtype`` converts rows as they are read (None: the site's own
    read dtype, see :func:`read_dtype`).
    """

    def __init__(
        self, path: str | Path, site: str, record: SiteRecord, as_dtype: str | None
    ) -> None:
        self.path = str(path)
        self.site = site
        self.table = record.table
        self.dtype = record.dtype
        self.n_rows = record.n_rows
        self.n_units = record.n_units
        self.chunk_rows = record.chunk_rows
        self.size = chunk_bytes(record)  # None when compressed
        self.stored = np.dtype(STORAGE_DTYPES[record.dtype])
        self.out_dtype = read_dtype(record.dtype, as_dtype)
        self.row_bytes = self.n_units * self.stored.itemsize
        self._array: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    @property
    def converts(self) -> bool:
        """Whether rows are decoded on the way (stored and read dtypes differ)."""
        return self.stored != self.out_dtype

    # -- public ----------------------------------------------------------------------
    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new array of the read dtype."""
        return self.take(np.arange(start, stop, dtype=np.int64))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (sorted, unique, within the site) as a new array."""
        out = np.empty((rows.size, self.n_units), self.out_dtype)
        self.take_into(rows, out)
        return out

    def take_into(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Read the given rows (strictly increasing, within the site) into ``out``
        (rows x units, C order, the read dtype)."""
        if not rows.size:
            return
        if rows[0] < 0 or rows[-1] >= self.n_rows or (rows.size > 1 and (np.diff(rows) <= 0).any()):
            raise SiteError(
                f"site {self.site}: rows must be strictly increasing row ids in "
                f"0..{self.n_rows - 1}"
            )
        if out.shape != (rows.size, self.n_units) or out.dtype != self.out_dtype:
            raise SiteError(
                f"site {self.site}: out must be a ({rows.size}, {self.n_units}) {self.out_dtype} "
                f"array, got {out.shape} {out.dtype}"
            )
        chunk = rows // self.chunk_rows
        cuts = [0, *(np.flatnonzero(np.diff(chunk)) + 1).tolist(), rows.size]
        for lo, hi in itertools.pairwise(cuts):
            c = int(chunk[lo])
            local = rows[lo:hi] - c * self.chunk_rows
            if self.size is None:
                self._zarr_chunk(c, local, out[lo:hi])
            else:
                self._direct_chunk(c, local, out[lo:hi])

    def pieces(self, rows: np.ndarray, piece_bytes: int = PIECE_BYTES) -> Iterator[np.ndarray]:
        """The given rows (sorted, unique) in consecutive pieces of about ``piece_bytes``
        of read values, each read (and decoded) into the same buffer: a piece is valid
        until the next one is asked for, and stays in cache while it is used.

        For streaming kernels: reading a block this way never writes it to memory whole.

        Examples
        --------
        >>> reader = store.site_reader("toy/layer.0")
        >>> [len(p) for p in reader.pieces(np.arange(100), piece_bytes=40 * 16 * 4)]
        [40, 40, 20]
        """
        step = max(1, piece_bytes // (self.n_units * self.out_dtype.itemsize))
        buffer = np.empty(min(step, rows.size) * self.n_units * self.out_dtype.itemsize, np.uint8)
        for lo in range(0, rows.size, step):
            part = rows[lo : lo + step]
            out = buffer[: part.size * self.n_units * self.out_dtype.itemsize]
            out = out.view(self.out_dtype).reshape(part.size, self.n_units)
            self.take_into(part, out)
            yield out

    # -- uncompressed chunks: positioned reads ---------------------------------------
    def _direct_chunk(self, chunk: int, local: np.ndarray, out: np.ndarray) -> None:
        path = f"{self.path}/c/{chunk}/0"  # chunks.chunk_file, without pathlib's cost
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise SiteError(
                f"site {self.site}: chunk {chunk} ({path}) is missing; the site was replaced "
                "or damaged since the store was opened: reopen it, or run `actstore verify`"
            ) from None
        try:
            got = os.fstat(fd).st_size
            if got != self.size:
                raise SiteError(
                    f"site {self.site}: chunk {chunk} ({path}) holds {got:,} bytes, expected "
                    f"{self.size:,}; run `actstore verify`"
                )
            if not self.converts:
                self._fill(fd, chunk, local, out)
                return
            piece = max(1, PIECE_BYTES // self.row_bytes)
            scratch = _buffer("decode", min(piece, local.size) * self.row_bytes)
            for lo in range(0, local.size, piece):
                part = local[lo : lo + piece]
                stored = scratch[: part.size * self.row_bytes].view(self.stored)
                stored = stored.reshape(part.size, self.n_units)
                self._fill(fd, chunk, part, stored)
                decode(stored, self.dtype, out[lo : lo + part.size])
        finally:
            os.close(fd)

    def _fill(self, fd: int, chunk: int, local: np.ndarray, dst: np.ndarray) -> None:
        """Rows ``local`` of one open chunk file into ``dst`` (stored dtype)."""
        first, last = int(local[0]), int(local[-1])
        span = last - first + 1
        if span == local.size:  # one run
            self._pread(fd, chunk, [dst], first)
            return
        starts = np.flatnonzero(np.diff(local) != 1) + 1
        n_runs = starts.size + 1
        if (span - local.size) * self.row_bytes <= n_runs * GAP_BYTES:
            self._gather(fd, chunk, local, dst)  # short gaps: read the span, pick the rows
            return
        run_first = local[np.concatenate(([0], starts))]
        run_length = np.diff(np.concatenate(([0], starts, [local.size])))
        gap = np.concatenate((run_first[1:] - (run_first[:-1] + run_length[:-1]), [0]))
        sink = _buffer("sink", GAP_BYTES)
        buffers: list[Any] = []
        offset, position = int(run_first[0]), 0
        for row, length, skip in zip(
            run_first.tolist(), run_length.tolist(), gap.tolist(), strict=True
        ):
            if not buffers:
                offset = row
            buffers.append(dst[position : position + length])
            position += length
            gap_bytes = skip * self.row_bytes
            if 0 < gap_bytes <= GAP_BYTES and len(buffers) < _IOV_MAX - 1:
                buffers.append(sink[:gap_bytes])  # read through a short gap
                continue
            self._pread(fd, chunk, buffers, offset)
            buffers = []

    def _gather(self, fd: int, chunk: int, local: np.ndarray, dst: np.ndarray) -> None:
        """Read spans of at most ``SPAN_BYTES`` and take the selected rows from them."""
        window = max(1, SPAN_BYTES // self.row_bytes)
        cuts = np.searchsorted(local, np.arange(local[0], local[-1] + 1, window)[1:])
        position = 0
        for part in np.split(local, cuts):
            if not part.size:
                continue
            first, span = int(part[0]), int(part[-1] - part[0]) + 1
            scratch = _buffer("span", span * self.row_bytes)
            rows = scratch[: span * self.row_bytes].view(self.stored).reshape(span, -1)
            self._pread(fd, chunk, [rows], first)
            np.take(rows, part - first, axis=0, out=dst[position : position + part.size])
            position += part.size

    def _pread(self, fd: int, chunk: int, buffers: list[Any], first_row: int) -> None:
        expected = sum(b.nbytes for b in buffers)
        got = os.preadv(fd, buffers, first_row * self.row_bytes)
        if got != expected:
            raise SiteError(
                f"site {self.site}: chunk {chunk} ({self.path}/c/{chunk}/0) ended early (read "
                f"{got:,} of {expected:,} bytes), cut while being read; run `actstore verify`"
            )

    # -- compressed chunks: through zarr -----------------------------------------------
    @property
    def array(self) -> Any:
        if self._array is None:
            import zarr
            import zarr.errors

            try:
                self._array = zarr.open_array(self._zarr_store(), mode="r")
            except (OSError, ValueError, KeyError, zarr.errors.BaseZarrError) as exc:
                raise SiteError(
                    f"site {self.site}: its array {self.path} cannot be opened ({exc!s:.120}); "
                    "the site was replaced or damaged since the store was opened: reopen it, "
                    "or run `actstore verify`"
                ) from None
        return self._array

    def _zarr_store(self) -> Any:
        """What zarr opens for the array."""
        return self.path

    def _check_chunk(self, chunk: int) -> None:
        """Raise :class:`SiteError` unless the file of ``chunk`` is there."""
        check_present(Path(self.path), self.site, [chunk], None)

    def _zarr_chunk(self, chunk: int, local: np.ndarray, out: np.ndarray) -> None:
        start = chunk * self.chunk_rows
        first, last = start + int(local[0]), start + int(local[-1])
        self._check_chunk(chunk)
        try:
            block = np.asarray(self.array[first : last + 1])
        except (RuntimeError, ValueError, OSError) as exc:  # the codec's (zstd: RuntimeError)
            raise SiteError(
                f"site {self.site}: chunk {chunk} cannot be decoded ({exc!s:.80}); "
                "run `actstore verify`"
            ) from None
        # zarr reads a chunk file that vanished meanwhile as zeros; paths are never
        # reused, so a file still there after the read was there during it
        self._check_chunk(chunk)
        picked = block if block.shape[0] == local.size else block[local - int(local[0])]
        if self.converts:
            decode(np.ascontiguousarray(picked), self.dtype, out)
        else:  # the stored values (raw bits, for a bfloat16 site read as uint16)
            out[...] = picked
