"""Site arrays on disk (Zarr v3) and their lazy views.

Reading is split in three, as in xarray: :class:`~actstore.reader.SiteReader` only
fetches rows of one array (and is cheap to pickle, so dask workers in other processes
read the same files); :func:`lazy_rows` builds a dask graph of row blocks without
touching data; data is read only when a reduction computes those blocks.

Row selections are served by blocks of whole chunks (one or two for a full scan, many
for a sparse selection: :func:`~actstore.reader.block_cuts`), and each block reads
only its selected rows (see :mod:`actstore.reader`), so a selection costs what it
selects.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from actstore.errors import ParameterError
from actstore.names import DTYPES
from actstore.reader import STORAGE_DTYPES, SiteReader, block_cuts

if TYPE_CHECKING:  # dask loads only when a site is read (writers need none of it)
    import dask.array as da

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


def create_array(
    store: Any,
    n_rows: int,
    n_units: int,
    dtype: str,
    chunk_rows: int,
    codec: str,
    unit_shape: list[int] | None = None,
) -> None:
    """Create an empty site array in ``store`` (what
    :meth:`~actstore.storage.Storage.writable_zarr` gives; metadata only, no chunk is
    written). A site with a
    ``unit_shape`` is stored flat, ``(n_rows, n_units)``, and says its shape in the
    array's attributes (``unit_shape``), for readers of the Zarr array alone."""
    check_codec(codec)
    compressors: Any = ZstdCodec(level=3) if codec == "zstd" else None
    zarr.create_array(
        store,
        shape=(n_rows, n_units),
        chunks=(chunk_rows, n_units),
        dtype=STORAGE_DTYPES[dtype],
        compressors=compressors,
        fill_value=0,
        dimension_names=("row", "unit"),
        attributes={"unit_shape": unit_shape} if unit_shape else None,
        overwrite=True,
    )


def lazy_rows(reader: SiteReader, rows: np.ndarray) -> da.Array:
    """A dask array of ``rows`` (sorted, unique) of the site behind ``reader``.

    Blocks end at chunk boundaries (:func:`~actstore.reader.block_cuts`) and read just
    their selected rows.
    """
    import dask.array as da
    import xxhash
    from dask.highlevelgraph import HighLevelGraph

    dtype = reader.out_dtype
    if not rows.size:
        empty: da.Array = da.zeros((0, reader.n_units), dtype=dtype)
        return empty
    # the graph's name identifies what it reads; xxh3 hashes the rows 100x faster than
    # dask's tokenize (md5), which took 0.1 s for a million rows
    identity = xxhash.xxh3_128(f"{reader.path}|{reader.out_dtype.str}|".encode())
    identity.update(np.ascontiguousarray(rows, np.int64).data)
    name = "actstore-" + identity.hexdigest()
    cuts = block_cuts(rows, reader.chunk_rows, reader.n_units * reader.out_dtype.itemsize)
    dsk: dict[Any, Any] = {
        (name, i, 0): (reader.take, rows[lo:hi])
        for i, (lo, hi) in enumerate(itertools.pairwise(cuts))
    }
    sizes = tuple(hi - lo for lo, hi in itertools.pairwise(cuts))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(  # type: ignore[no-untyped-call]
        graph, name, chunks=(sizes, (reader.n_units,)), dtype=dtype, meta=np.empty((0, 0), dtype)
    )
