"""Sites: declaring them, publishing their progress, reading them lazily, deleting them.

A site is one Zarr array aligned to a row table (row i of the array is row i of the
table). Declaring it creates the empty array and names it in the manifest as
``partial``; its :class:`~actstore.writer.SiteWriter` fills whole chunks and the
store publishes the chunks done; once all are, the site is ``complete`` and can be
read with :func:`view`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from actstore import chunks, coverage, growth, names
from actstore.commit import ARRAYS_DIR, Ledger
from actstore.errors import ParameterError, SchemaError, SiteError, SiteNotFoundError
from actstore.manifest import Manifest, SiteRecord, SiteStatus, now_utc
from actstore.marks import marks_for, publish
from actstore.names import check_site_name
from actstore.objects import ObjectStorage

if TYPE_CHECKING:  # zarr, dask and xarray load only when a site is written or read
    import xarray as xr

    from actstore.reader import SiteReader
    from actstore.writer import SiteWriter


MAX_CHUNK_BYTES = 1 << 30  # a writer holds a chunk in memory while it fills


@dataclass(frozen=True)
class SiteInfo:
    """A declared site: shape, storage, provenance (a copy) and whether it is complete."""

    name: str
    table: str
    n_rows: int
    n_units: int
    dtype: str
    chunk_rows: int
    codec: str
    status: SiteStatus
    done_chunks: int
    n_chunks: int
    provenance: dict[str, Any]
    path: str  # of its Zarr array, relative to the store
    covers: tuple[tuple[int, int], ...] = ()  # row ranges it holds values for
    unit_shape: tuple[int, ...] | None = None  # (C, H, W) of spatial maps; None: (n_units,)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n_rows, n_units)``, or ``(n_rows, C, H, W)`` for a site of spatial maps."""
        return (self.n_rows, *(self.unit_shape or (self.n_units,)))

    @property
    def n_covered(self) -> int:
        """How many rows the site holds values for."""
        return coverage.count(self.covers)


def info_of(name: str, record: SiteRecord) -> SiteInfo:
    return SiteInfo(
        name=name,
        table=record.table,
        n_rows=record.n_rows,
        n_units=record.n_units,
        dtype=record.dtype,
        chunk_rows=record.chunk_rows,
        codec=record.codec,
        status=record.status,
        done_chunks=record.done_chunks,
        n_chunks=record.n_chunks,
        provenance=copy.deepcopy(record.provenance),
        path=record.path,
        covers=tuple(record.covered()),
        unit_shape=tuple(record.unit_shape) if record.unit_shape else None,
    )


def record_of(ledger: Ledger, name: str) -> SiteRecord:
    """The manifest record of site ``name``; the error lists the sites there are."""
    sites = ledger.manifest.sites
    if name not in sites:
        raise SiteNotFoundError(
            f"no site {name!r} in {ledger.storage.where()}; sites: "
            f"{', '.join(sorted(sites)) or 'none'}"
        )
    return sites[name]


def declare(
    ledger: Ledger,
    name: str,
    *,
    table: str,
    n_units: int,
    dtype: str,
    chunk_rows: int | None,
    codec: str,
    provenance: Mapping[str, Any] | None,
    overwrite: bool,
    covers: Sequence[tuple[int, int]] | None = None,
    unit_shape: Sequence[int] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> SiteWriter:
    """Declare a site, resume it, or grow it to more rows, and return its writer
    (``shard``: which of how many writers fill it, so a resumed shard finds its own
    record of the chunks it wrote, in object storage).

    A site declared before with the same settings (provenance apart from
    :data:`~actstore.growth.EXTENT_KEYS`) grows to the table's rows and to ``covers``
    (row ranges; None: every row) joined with what it covers already: the chunks whose
    rows are all written and stay the same are kept, the others are written again.
    ``unit_shape`` (e.g. ``(C, H, W)`` of a CNN's feature maps) gives each row that
    shape: the array is stored as ``(n_rows, n_units)`` rows of ``n_units = C*H*W``
    values in C order and read back as ``(row, channel, y, x)``.
    """
    from actstore import arrays
    from actstore.writer import SiteWriter

    ledger.require_writable()
    check_site_name(name)
    arrays.check_dtype(dtype)
    arrays.check_codec(codec)
    if table not in ledger.manifest.tables:
        raise SchemaError(
            f"no table {table!r} to align site {name} to; tables: {sorted(ledger.manifest.tables)}"
        )
    if not isinstance(n_units, int) or isinstance(n_units, bool) or n_units < 1:
        raise SchemaError(f"site {name}: n_units must be a positive integer, got {n_units!r}")
    if chunk_rows is not None and (
        not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1
    ):
        raise ParameterError("chunk_rows", f"must be a positive integer, got {chunk_rows!r}")
    if chunk_rows is not None and chunk_rows * n_units * 4 > MAX_CHUNK_BYTES:
        raise ParameterError(
            "chunk_rows",
            f"{chunk_rows:,} rows of {n_units} units make chunks over "
            f"{MAX_CHUNK_BYTES >> 30} GiB; choose fewer (default: about 8 MiB a chunk)",
        )
    shape = _unit_shape(name, n_units, unit_shape)
    n_rows = ledger.manifest.tables[table].n_rows
    requested = _requested(covers, n_rows)

    def decide(manifest: Manifest) -> SiteWriter:  # shards declare one site at once
        old = manifest.sites.get(name)
        rows = chunk_rows
        if rows is None:
            rows = old.chunk_rows if old is not None and not overwrite else None
        declared: dict[str, Any] = {
            "table": table,
            "n_rows": n_rows,
            "n_units": n_units,
            "dtype": dtype,
            "chunk_rows": int(rows or arrays.default_chunk_rows(n_rows, n_units, dtype)),
            "codec": codec,
            "provenance": copy.deepcopy(dict(provenance or {})),
            "unit_shape": shape,
        }
        changed = growth.differences(old, declared) if old is not None else []
        if old is not None and changed and not overwrite:
            raise SiteError(
                f"site {name} was written with other settings ({'; '.join(changed)}); to "
                "keep both, give the new one another name (actstore extract --name), or "
                "replace it with overwrite=True (--overwrite)"
            )
        if old is not None and not changed and n_rows < old.n_rows:
            raise SiteError(
                f"site {name} has {old.n_rows:,} rows but table {table} only {n_rows:,} now; "
                "replace it with overwrite=True (--overwrite)"
            )
        same = old is not None and not changed
        wanted = coverage.merge(old.covered() + requested) if same and old else requested
        if same and old and (n_rows, wanted) == (old.n_rows, old.covered()):
            record = old
        elif same and old and ledger.shared and old.status != "complete":
            raise SiteError(
                f"site {name} is being written ({old.done_chunks}/{old.n_chunks} chunks) and "
                "would grow: shards must ask for the same rows; finish it first"
            )
        else:
            # a new array goes beside the old one: readers of the old manifest keep
            # reading it, and it is deleted only when the next exclusive writer opens
            path = _new_path(manifest, name, unique=not ledger.storage.exclusive)
            growth.clear_debris(ledger.storage, path)
            built.append(path)
            arrays.create_array(
                ledger.storage.writable_zarr(path), n_rows, n_units, dtype,
                declared["chunk_rows"], codec, shape,
            )  # fmt: skip
            whole = wanted == ([(0, n_rows)] if n_rows else [])
            record = SiteRecord(
                **declared,
                path=path,
                created=now_utc(),
                covers=None if whole else [list(r) for r in wanted],
            )
            record.done_chunks = growth.start(ledger.storage, record, None if changed else old)
        # built before the declaration commits: its check of the chunks marked done may
        # fail (an undecodable chunk is unmarked, not fatal, but an unreadable array is),
        # and then the manifest is as it was
        writer = SiteWriter(
            ledger.storage,
            name,
            copy.deepcopy(record),
            lambda n, p, m: publish(ledger, n, p, m),
            marks_for(ledger.storage, record, f"shard-{shard[0]}-of-{shard[1]}"),
        )
        manifest.sites[name] = record
        return writer

    built: list[str] = []  # arrays a declaration that lost its commit made: nobody's

    def forget() -> None:
        while built:
            growth.clear_debris(ledger.storage, built.pop())

    return ledger.change(decide, forget)


def _unit_shape(name: str, n_units: int, unit_shape: Sequence[int] | None) -> list[int] | None:
    if unit_shape is None:
        return None
    shape = [int(n) for n in unit_shape]
    if not shape or min(shape) < 1 or int(np.prod(shape)) != n_units:
        raise SchemaError(
            f"site {name}: unit_shape {tuple(unit_shape)} must be positive sizes whose "
            f"product is n_units ({n_units})"
        )
    return shape


def _requested(covers: Sequence[tuple[int, int]] | None, n_rows: int) -> coverage.Ranges:
    if covers is None:
        return [(0, n_rows)] if n_rows else []
    ranges = coverage.merge(covers)
    if ranges and (ranges[0][0] < 0 or ranges[-1][1] > n_rows):
        raise ParameterError("covers", f"row ranges must lie in 0..{n_rows}, got {ranges}")
    return ranges


def _new_path(manifest: Manifest, name: str, *, unique: bool = False) -> str:
    """A path no array of this store has had: ``arrays.zarr/<name>@<generation>``, the
    generation of the commit that declares it. Never reusing a path is what keeps a
    reader of an older manifest from reading a newer array under the same name.

    ``unique`` (object storage, where no lock serialises declarations) adds a random
    tag: writers declaring at once each build their own array, so the ones whose commit
    loses never touch the array the winner's writers are filling."""
    tag = f".{uuid.uuid4().hex[:8]}" if unique else ""
    return f"{ARRAYS_DIR}/{name}@{manifest.generation + 1}{tag}"


def written_chunks(ledger: Ledger, name: str) -> frozenset[int]:
    """Chunks of site ``name`` whose bytes are durably written, a running writer's too."""
    record = record_of(ledger, name)
    if record.status == "complete":
        return frozenset(range(record.n_chunks))
    return frozenset(growth.written(ledger.storage, record))


def delete(ledger: Ledger, name: str) -> None:
    """Remove a site from the manifest (committed). Its array stays until the next
    exclusive writer opens the store, so readers that still see the site finish."""
    ledger.require_writable(exclusive=True)
    record_of(ledger, name)
    with ledger.update() as manifest:
        del manifest.sites[name]


def reader(ledger: Ledger, name: str, dtype: str | None) -> SiteReader:
    """The row reader of a complete site, converting to ``dtype`` (None: its read dtype)."""
    from actstore.reader import STORAGE_DTYPES, SiteReader

    record = record_of(ledger, name)
    if record.status != "complete":
        raise SiteError(
            f"site {name} is incomplete ({record.done_chunks}/{record.n_chunks} chunks "
            "written); rerun its extraction to resume"
        )
    raw = STORAGE_DTYPES[record.dtype]
    if dtype not in (None, "float16", "float32", "float64", raw):
        raise ParameterError(
            "dtype",
            f"must be None (the site's own), 'float16', 'float32', 'float64' or {raw!r} (its "
            f"stored values) for {record.dtype} site {name}, got {dtype!r}",
        )
    if isinstance(ledger.storage, ObjectStorage):
        from actstore.object_reader import ObjectSiteReader

        return ObjectSiteReader(ledger.storage, record.path, name, record, dtype)
    return SiteReader(ledger.root / record.path, name, record, dtype)


def view(
    ledger: Ledger,
    name: str,
    rows: Iterable[int] | np.ndarray | None,
    dtype: str | None,
) -> xr.DataArray:
    """A lazy ``(row, unit)`` view of a complete site, optionally of some rows only."""
    import xarray as xr

    from actstore import arrays

    site_reader = reader(ledger, name, dtype)
    record = record_of(ledger, name)
    if rows is None:  # the rows it covers
        parts = [np.arange(a, b, dtype=np.int64) for a, b in record.covered()]
        selected = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    else:
        selected = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows)
        selected = check_rows(selected, name, record, ledger.manifest.tables[record.table].n_rows)
    attrs = {"site": name, "table": site_reader.table, "stored_dtype": site_reader.dtype}
    lazy = arrays.lazy_rows(site_reader, selected)
    if record.unit_shape:  # spatial maps: each row read whole, then seen as (C, H, W)
        dims = ("row", *names.unit_dims(len(record.unit_shape)))
        return xr.DataArray(
            lazy.reshape((selected.size, *record.unit_shape)),  # type: ignore[no-untyped-call]
            dims=dims,
            coords={"row": selected},
            name=name,
            attrs=attrs,
        )
    return xr.DataArray(
        lazy,
        dims=("row", "unit"),
        coords={"row": selected, "unit": np.arange(site_reader.n_units)},
        name=name,
        attrs=attrs,
    )


def check_rows(rows: np.ndarray, name: str, record: SiteRecord, table_rows: int) -> np.ndarray:
    """``rows`` as sorted unique int64 row ids the site holds (of its table's
    ``table_rows``), or an error that says which rows it covers and how to extend it."""
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise SchemaError(f"rows must be integers, got dtype {rows.dtype}")
    rows = rows.astype(np.int64, copy=False).ravel()
    if rows.size > 1 and not (np.diff(rows) > 0).all():
        raise SchemaError("rows must be strictly increasing (sort them, e.g. np.unique(rows))")
    if rows.size and (rows[0] < 0 or rows[-1] >= max(table_rows, record.n_rows)):
        raise SchemaError(
            f"rows must lie in 0..{max(table_rows, record.n_rows) - 1} of table "
            f"{record.table} for site {name}"
        )
    coverage.require(rows, name, record.table, record.covered(), table_rows)
    return rows


def reopen(ledger: Ledger, name: str, damaged: list[int]) -> None:
    """Make a complete site partial again, without its ``damaged`` chunks: the intact
    ones get their progress markers back, so the next run of its extraction writes only
    the damaged chunks."""
    ledger.require_writable(exclusive=True)
    record = record_of(ledger, name)
    checksums = chunks.read_checksums(ledger.storage, record.path, record.n_chunks)
    marks = marks_for(ledger.storage, record, growth.DECLARED)
    bad = set(damaged)
    ledger.storage.delete_files(f"{record.path}/c/{chunk}/0" for chunk in sorted(bad))
    marks.mark_many({c: checksums[c] or "" for c in range(record.n_chunks) if c not in bad})
    with ledger.update() as manifest:
        manifest.sites[name].status = "partial"
        manifest.sites[name].done_chunks = record.n_chunks - len(bad)
        manifest.sites[name].progress = [marks.name] if marks.name else None
