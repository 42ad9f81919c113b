"""Site arrays on disk (Zarr v3) and their lazy views.

Reading is split in three, as in xarray: :class:`RowReader` only fetches rows of
one array (and is cheap to pickle, so dask workers in other processes reopen it);
:func:`lazy_rows` builds a dask graph of row blocks without touching data; data is
read only when a reduction computes those blocks.

Row selections are served chunk by chunk: the selected rows are grouped by the
chunk that holds them and each block reads one contiguous span of one chunk, so a
selection never costs more than the chunks it touches.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
import zarr.errors
from zarr.codecs import ZstdCodec

from actstore.chunks import check_present, chunk_bytes
from actstore.errors import ParameterError, SiteError
from actstore.manifest import SiteRecord
from actstore.names import DTYPES

if TYPE_CHECKING:  # dask loads only when a site is read (writers need none of it)
    import dask.array as da

# Logical dtype -> dtype stored in Zarr. numpy has no bfloat16, so bfloat16 sites
# keep the raw 16 bits as uint16 and are read back as float32.
STORAGE_DTYPES = {"float16": "float16", "float32": "float32", "bfloat16": "uint16"}
TARGET_CHUNK_BYTES = 8 << 20
MIN_CHUNK_ROWS = 256
MAX_CHUNK_ROWS = 65536
CODECS = ("none", "zstd")


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is a site dtype (:data:`actstore.names.DTYPES`)."""
    if dtype not in DTYPES:
        raise ParameterError("dtype", f"must be one of {list(DTYPES)}, got {dtype!r}")
    return dtype


def check_codec(codec: str) -> str:
    """``codec`` if sites can be stored with it (``none`` or ``zstd``)."""
    if codec not in CODECS:
        raise ParameterError("codec", f"must be one of {list(CODECS)}, got {codec!r}")
    return codec


def read_dtype(dtype: str, as_dtype: str | None = None) -> np.dtype[Any]:
    """The numpy dtype a site of logical ``dtype`` is read as (``as_dtype`` if given)."""
    if as_dtype is not None:
        return np.dtype(as_dtype)
    return np.dtype("float32" if dtype == "bfloat16" else dtype)


def default_chunk_rows(n_rows: int, n_units: int, dtype: str) -> int:
    """Rows per chunk: chunks near 8 MiB (4-16 MiB), balanced so the last one is nearly full.

    Zarr stores an edge chunk at full size, so a 25,000-row site in 8,192-row chunks
    would spend 30% of its bytes on padding; four chunks of 6,400 rows spend 2%.
    """
    row_bytes = n_units * np.dtype(STORAGE_DTYPES[dtype]).itemsize
    target = 1 << max(0, round(np.log2(max(1.0, TARGET_CHUNK_BYTES / row_bytes))))
    target = min(max(target, MIN_CHUNK_ROWS), MAX_CHUNK_ROWS)
    n_chunks = max(1, -(-n_rows // target))
    balanced = -(-n_rows // n_chunks)
    return int(-(-balanced // MIN_CHUNK_ROWS) * MIN_CHUNK_ROWS)


def to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))
    out = (rounded >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        out[nan] = 0x7FC0
    return out


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def create_array(
    path: Path, n_rows: int, n_units: int, dtype: str, chunk_rows: int, codec: str
) -> None:
    """Create an empty site array (metadata only; no chunk is written)."""
    check_codec(codec)
    compressors: Any = ZstdCodec(level=3) if codec == "zstd" else None
    zarr.create_array(
        str(path),
        shape=(n_rows, n_units),
        chunks=(chunk_rows, n_units),
        dtype=STORAGE_DTYPES[dtype],
        compressors=compressors,
        fill_value=0,
        dimension_names=("row", "unit"),
        overwrite=True,
    )


class RowReader:
    """Fetches row ranges of one site array; nothing else.

    Pickles as its path and record, so each dask worker opens the array itself.
    ``as_dtype`` converts each block as it is read (None: the site's own dtype). Every
    chunk a read touches must exist with the size it must have: a chunk deleted or cut
    short under a reader is an error, never zeros.
    """

    def __init__(self, path: Path, site: str, record: SiteRecord, as_dtype: str | None) -> None:
        self.path = str(path)
        self.site = site
        self.dtype = record.dtype
        self.chunk_rows = record.chunk_rows
        self.size = chunk_bytes(record)
        self.out_dtype = read_dtype(record.dtype, as_dtype)
        self._array: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    @property
    def array(self) -> Any:
        if self._array is None:
            try:
                self._array = zarr.open_array(self.path, mode="r")
            except (OSError, ValueError, KeyError, zarr.errors.BaseZarrError) as exc:
                raise SiteError(
                    f"site {self.site}: its array {self.path} cannot be opened ({exc!s:.120}); "
                    "the site was replaced or damaged since the store was opened: reopen it, "
                    "or run `actstore verify`"
                ) from None
        return self._array

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a numpy array of the site's read dtype."""
        touched = range(start // self.chunk_rows, (stop - 1) // self.chunk_rows + 1)
        check_present(Path(self.path), self.site, touched, self.size)
        block = np.asarray(self.array[start:stop])
        # zarr reads a chunk file that vanished meanwhile as zeros; paths are never
        # reused, so a file still there after the read was there during it
        check_present(Path(self.path), self.site, touched, self.size)
        if self.dtype == "bfloat16":
            block = from_bfloat16_bits(block)
        return block.astype(self.out_dtype, copy=False)


def _read_span(reader: RowReader, start: int, stop: int, take: np.ndarray | None) -> np.ndarray:
    block = reader.read(start, stop)
    return block if take is None else block[take]


def lazy_rows(
    reader: RowReader,
    n_units: int,
    chunk_rows: int,
    rows: np.ndarray,
    *,
    contiguous: bool,
) -> da.Array:
    """A dask array of ``rows`` (sorted, unique) of the site behind ``reader``.

    One block per touched chunk; each block reads the span from its first to its
    last selected row. ``contiguous`` says ``rows`` is a plain range, so blocks need
    no gather step.
    """
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    dtype = reader.out_dtype
    if not rows.size:
        empty: da.Array = da.zeros((0, n_units), dtype=dtype)
        return empty
    name = "actstore-" + tokenize(reader.path, rows.tobytes())
    dsk: dict[Any, Any] = {}
    sizes: list[int] = []
    chunk_of = rows // chunk_rows
    bounds = np.flatnonzero(np.diff(chunk_of)) + 1
    for i, (lo, hi) in enumerate(itertools.pairwise([0, *bounds.tolist(), rows.size])):
        first, last = int(rows[lo]), int(rows[hi - 1])
        take = None if contiguous else rows[lo:hi] - first
        dsk[(name, i, 0)] = (_read_span, reader, first, last + 1, take)
        sizes.append(hi - lo)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(  # type: ignore[no-untyped-call]
        graph, name, chunks=(tuple(sizes), (n_units,)), dtype=dtype, meta=np.empty((0, 0), dtype)
    )
