"""The store: a directory of Parquet tables and Zarr site arrays under one manifest.

See ``docs/FORMAT.md`` for the layout. ``create`` and ``open(mode="a")`` take the
single-writer lock; ``open(mode="r")`` takes a snapshot of the manifest and never
waits for a writer.
"""

from __future__ import annotations

import contextlib
import copy
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr

from actstore import arrays, sql
from actstore.errors import (
    ReadOnlyError,
    SchemaError,
    SiteError,
    SiteNotFoundError,
    StoreExistsError,
    StoreNotFoundError,
)
from actstore.lock import WriterLock, commit_lock
from actstore.manifest import (
    MANIFEST,
    PARTIAL_SUFFIX,
    Manifest,
    fsync_dir,
    new_manifest,
    now_utc,
    read_manifest,
    write_manifest,
)
from actstore.sql import Params
from actstore.version import __version__
from actstore.writer import PROGRESS_DIR, SiteWriter

TABLES_DIR = "tables"
ARRAYS_DIR = "arrays.zarr"
RESULTS_DIR = "results"
ROW_TABLES = ("tokens", "sentences")
_SITE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class TableInfo:
    """A committed table: its name, row count and the Parquet parts holding it."""

    name: str
    n_rows: int
    n_parts: int


@dataclass(frozen=True)
class SiteInfo:
    """A declared site: shape, storage, provenance and whether it is complete."""

    name: str
    table: str
    n_rows: int
    n_units: int
    dtype: str
    chunk_rows: int
    codec: str
    status: str
    done_chunks: int
    n_chunks: int
    provenance: dict[str, Any]


def check_site_name(name: str) -> str:
    """Site names are ``<model>/<component>[/...]`` of letters, digits, ``_ . -``."""
    parts = name.split("/")
    if len(parts) < 2 or not all(_SITE_PART.match(p) and p not in {".", ".."} for p in parts):
        raise SchemaError(
            f"invalid site name {name!r}: expected '<model>/<component>' such as "
            "'minilm/layer.3', each part of letters, digits, '_', '.', '-'"
        )
    return name


class Store:
    """An open store. Use :func:`actstore.open` or :func:`actstore.create`."""

    def __init__(self, path: Path, mode: Literal["r", "a"], lock: WriterLock | None) -> None:
        self.path = path
        self.mode = mode
        self._lock = lock
        self.manifest: Manifest = read_manifest(path)
        self._con: duckdb.DuckDBPyConnection | None = None
        self.shared = lock is not None and lock.shared
        if mode == "a" and not self.shared:
            self._remove_uncommitted()

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Release the writer lock and the SQL connection."""
        if self._con is not None:
            self._con.close()
            self._con = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        tables = ", ".join(f"{t.name}={t.n_rows}" for t in self.tables.values())
        return (
            f"<actstore.Store {self.path} mode={self.mode!r} tables[{tables}] "
            f"sites={len(self.sites)}>"
        )

    # -- reading the manifest ----------------------------------------------------------------
    @property
    def tables(self) -> dict[str, TableInfo]:
        """Committed tables (corpus tables and results), by name."""
        out = {}
        for kind in ("tables", "results"):
            for name, entry in self.manifest[kind].items():
                out[name] = TableInfo(name, entry["n_rows"], len(entry["parts"]))
        return out

    @property
    def sites(self) -> dict[str, SiteInfo]:
        """Declared sites by name, complete or in progress (see ``SiteInfo.status``)."""
        out = {}
        for name, e in self.manifest["sites"].items():
            out[name] = SiteInfo(
                name=name,
                table=e["table"],
                n_rows=e["n_rows"],
                n_units=e["n_units"],
                dtype=e["dtype"],
                chunk_rows=e["chunk_rows"],
                codec=e["codec"],
                status=e["status"],
                done_chunks=e["done_chunks"],
                n_chunks=-(-e["n_rows"] // e["chunk_rows"]),
                provenance=e["provenance"],
            )
        return out

    def n_rows(self, table: str = "tokens") -> int:
        """Committed rows of ``table`` (0 if it has none yet)."""
        entry = self.manifest["tables"].get(table) or self.manifest["results"].get(table)
        return int(entry["n_rows"]) if entry else 0

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary: tables, sites, sources, bytes on disk."""
        return {
            "path": str(self.path),
            "format_version": self.manifest["format_version"],
            "actstore_version": self.manifest["actstore_version"],
            "created": self.manifest["created"],
            "updated": self.manifest["updated"],
            "tables": {
                n: {"n_rows": t.n_rows, "n_parts": t.n_parts} for n, t in self.tables.items()
            },
            "sites": {
                n: {
                    "table": s.table,
                    "shape": [s.n_rows, s.n_units],
                    "dtype": s.dtype,
                    "chunk_rows": s.chunk_rows,
                    "codec": s.codec,
                    "status": s.status,
                    "chunks_done": f"{s.done_chunks}/{s.n_chunks}",
                    "bytes": _dir_bytes(self.path / ARRAYS_DIR / n),
                    "provenance": s.provenance,
                }
                for n, s in self.sites.items()
            },
            "sources": self.manifest["sources"],
            "bytes": {
                "tables": _dir_bytes(self.path / TABLES_DIR),
                "arrays": _dir_bytes(self.path / ARRAYS_DIR),
                "results": _dir_bytes(self.path / RESULTS_DIR),
                "total": _dir_bytes(self.path),
            },
        }

    # -- SQL ---------------------------------------------------------------------------
    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            views = {
                name: [p["path"] for p in entry["parts"]]
                for kind in ("tables", "results")
                for name, entry in self.manifest[kind].items()
            }
            self._con = sql.connect(self.path, views)
        return self._con

    def sql(self, query: str, params: Params = None, *, arrow: bool = False) -> Any:
        """Run a read-only SQL query over the store's tables.

        Parameters
        ----------
        query
            One DuckDB query over the views ``tokens``, ``sentences`` and any results.
        params
            Values for ``?`` (a sequence) or ``$name`` (a mapping) placeholders.
        arrow
            Return a ``pyarrow.Table`` instead of a pandas DataFrame.

        Examples
        --------
        >>> store.sql("SELECT upos, count(*) AS n FROM tokens GROUP BY upos")  # doctest: +SKIP
        >>> store.sql("SELECT * FROM tokens WHERE depth > ?", [5])  # doctest: +SKIP
        """
        return sql.run_query(self._connection(), query, params, arrow=arrow)

    def rows(
        self, where: str | None = None, table: str = "tokens", params: Params = None
    ) -> np.ndarray:
        """Sorted row ids of ``table`` matching an SQL condition (all rows when None).

        Examples
        --------
        >>> store.rows("upos = 'NOUN' AND depth > 3")  # doctest: +SKIP
        array([    5,    17, ...])
        """
        if table not in self.tables:
            raise SchemaError(f"no table {table!r}; tables: {sorted(self.tables)}")
        query = f"SELECT row FROM {sql.quote_ident(table)}"
        if where is not None and where.strip():
            query += f" WHERE ({where})"
        result = sql.run_query(self._connection(), query + " ORDER BY row", params, arrow=True)
        return np.asarray(result.column("row").to_numpy(), dtype=np.int64)

    def columns(self, names: Sequence[str], table: str = "tokens") -> pa.Table:
        """Whole columns of ``table`` in row order, read straight from its Parquet parts.

        Far leaner than SQL for reading every row (no sort, no query engine memory).
        Strings come dictionary-encoded; a column missing from some parts (a UD feature
        absent in one corpus) is NULL there.

        Examples
        --------
        >>> store.columns(["sentence_id", "upos"]).column("upos")  # doctest: +SKIP
        """
        entry = self.manifest["tables"].get(table) or self.manifest["results"].get(table)
        if entry is None:
            raise SchemaError(f"no table {table!r}; tables: {sorted(self.tables)}")
        parts = [pq.ParquetFile(self.path / part["path"]) for part in entry["parts"]]
        fields = {f.name: f.type for part in parts for f in part.schema_arrow}
        unknown = [n for n in names if n not in fields]
        if unknown:
            raise SchemaError(f"no column {unknown[0]!r} in {table}; columns: {', '.join(fields)}")
        strings = [n for n in names if pa.types.is_string(fields[n])]
        pieces = []
        for part, file in zip(entry["parts"], parts, strict=True):
            have = [n for n in names if n in file.schema_arrow.names]
            piece = pq.read_table(self.path / part["path"], columns=have, read_dictionary=strings)
            for n in names:
                if n not in have:
                    kind = pa.dictionary(pa.int32(), pa.string()) if n in strings else fields[n]
                    piece = piece.append_column(n, pa.nulls(piece.num_rows, kind))
            pieces.append(piece.select(list(names)))
        return pa.concat_tables(pieces, promote_options="permissive")

    # -- activations ------------------------------------------------------------------
    def acts(
        self,
        site: str,
        rows: Iterable[int] | np.ndarray | None = None,
        *,
        dtype: str | None = "float32",
    ) -> xr.DataArray:
        """A lazy ``(row, unit)`` view of a complete site, optionally of some rows only.

        Nothing is read until the result (or a reduction of it) is computed.

        Parameters
        ----------
        site
            Site name, e.g. ``"minilm/layer.3"``.
        rows
            Strictly increasing row ids (from :meth:`rows`), or None for all rows.
        dtype
            dtype of the blocks, converted chunk by chunk as they are read. float32 by
            default: sums and means in float16 lose precision. None keeps the stored
            dtype (bfloat16 sites are always read as float32).

        Examples
        --------
        >>> nouns = store.rows("upos = 'NOUN'")  # doctest: +SKIP
        >>> store.acts("minilm/layer.3", nouns).mean("row").compute()  # doctest: +SKIP
        """
        info = self.site(site)
        if info.status != "complete":
            raise SiteError(
                f"site {site} is incomplete ({info.done_chunks}/{info.n_chunks} chunks written); "
                "rerun its extraction to resume"
            )
        if rows is None:
            selected, contiguous = np.arange(info.n_rows, dtype=np.int64), True
        else:
            selected = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows)
            selected = _check_rows(selected, info)
            contiguous = selected.size == 0 or int(selected[-1] - selected[0]) + 1 == selected.size
        reader = arrays.RowReader(self.path / ARRAYS_DIR / site, info.dtype, dtype)
        data = arrays.lazy_rows(
            reader, info.n_units, info.chunk_rows, selected, contiguous=contiguous
        )
        return xr.DataArray(
            data,
            dims=("row", "unit"),
            coords={"row": selected, "unit": np.arange(info.n_units)},
            name=site,
            attrs={"site": site, "table": info.table, "stored_dtype": info.dtype},
        )

    def site(self, name: str) -> SiteInfo:
        """The declared site ``name``; the error lists the sites there are."""
        sites = self.sites
        if name not in sites:
            raise SiteNotFoundError(
                f"no site {name!r} in {self.path}; sites: {', '.join(sorted(sites)) or 'none'}"
            )
        return sites[name]

    # -- writing -------------------------------------------------------------------------
    def _require_writable(self, *, exclusive: bool = False) -> None:
        if self.mode != "a" or self._lock is None:
            raise ReadOnlyError(f"{self.path} is open read-only; use actstore.open(path, mode='a')")
        if exclusive and self.shared:
            raise ReadOnlyError(
                f"{self.path} is open as a shared (shard) writer, which may only fill sites; "
                "open it with mode='a' alone for this change"
            )

    def commit(self) -> None:
        """Write the manifest (the commit point) and refresh SQL views."""
        with self.update():
            pass

    @contextlib.contextmanager
    def update(self) -> Iterator[Manifest]:
        """Read-modify-write the manifest under the commit lock; written when the block ends.

        A shared (shard) writer first reloads the manifest, so concurrent shards never
        undo each other's changes. An exception inside the block writes nothing.
        """
        self._require_writable()
        with commit_lock(self.path):
            if self.shared:
                self.manifest = read_manifest(self.path)
            yield self.manifest
            write_manifest(self.path, self.manifest)
        if self._con is not None:
            self._con.close()
            self._con = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group changes into one commit; on an exception the manifest is left as it was.

        Files written inside a failed transaction are not named by the manifest and
        are deleted the next time the store is opened for writing.
        """
        self._require_writable(exclusive=True)
        snapshot = copy.deepcopy(self.manifest)
        try:
            yield
        except BaseException:
            self.manifest = snapshot
            raise
        self.commit()

    def append_table(self, name: str, table: pa.Table, *, kind: str = "tables") -> None:
        """Write ``table`` as the next Parquet part of table ``name`` (commit to publish).

        ``kind`` is ``"tables"`` for corpus tables or ``"results"`` for analysis output.
        """
        self._require_writable(exclusive=True)
        sql.check_table_name(name)
        entry = self.manifest[kind].setdefault(name, {"n_rows": 0, "parts": []})
        folder = self.path / (TABLES_DIR if kind == "tables" else RESULTS_DIR) / name
        folder.mkdir(parents=True, exist_ok=True)
        rel = f"{folder.relative_to(self.path)}/part-{len(entry['parts']):05d}.parquet"
        self._write_parquet(rel, table)
        entry["parts"].append({"path": rel, "n_rows": table.num_rows, "first_row": entry["n_rows"]})
        entry["n_rows"] += table.num_rows

    def write_result(self, name: str, table: pa.Table) -> None:
        """Write (or replace) the results table ``name`` and commit it.

        Allowed for shard writers too. Replaced parts stay on disk until the next
        exclusive writer opens the store, so readers holding the old manifest finish.
        """
        self._require_writable()
        sql.check_table_name(name)
        if name in self.manifest["tables"]:
            raise SchemaError(f"{name!r} is a corpus table; choose another name for a result")
        (self.path / RESULTS_DIR / name).mkdir(parents=True, exist_ok=True)
        rel = f"{RESULTS_DIR}/{name}/part-{uuid.uuid4().hex[:16]}.parquet"
        self._write_parquet(rel, table)
        with self.update() as manifest:
            part = {"path": rel, "n_rows": table.num_rows, "first_row": 0}
            manifest["results"][name] = {"n_rows": table.num_rows, "parts": [part]}

    def _write_parquet(self, rel: str, table: pa.Table) -> None:
        tmp = self.path / (rel + PARTIAL_SUFFIX)
        pq.write_table(table, tmp, compression="zstd", row_group_size=128 * 1024)
        tmp.replace(self.path / rel)
        fsync_dir(tmp.parent)

    def create_site(
        self,
        name: str,
        *,
        table: str = "tokens",
        n_units: int,
        dtype: str = "float16",
        chunk_rows: int | None = None,
        codec: str = "none",
        provenance: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> SiteWriter:
        """Declare a site (or resume it) and return its writer.

        A site already declared with the same table, shape, dtype and provenance is
        resumed: its writer skips the chunks already written. A different declaration
        under the same name is refused unless ``overwrite`` is true, which deletes the
        old site first.

        Parameters
        ----------
        name
            ``<model>/<component>``, e.g. ``"minilm/layer.3"``.
        table
            The row table the site is aligned to; the site has one row per table row.
        n_units
            Units per row.
        dtype
            ``float16`` (default), ``float32`` or ``bfloat16``.
        chunk_rows
            Rows per chunk; default chooses chunks of about 8 MiB.
        codec
            ``"none"`` (default: activations barely compress) or ``"zstd"``.
        provenance
            JSON-ready description of how the values were made (model, weights hash ...).
        """
        self._require_writable()
        check_site_name(name)
        arrays.check_dtype(dtype)
        if table not in self.manifest["tables"]:
            raise SchemaError(
                f"no table {table!r} to align site {name} to; "
                f"tables: {sorted(self.manifest['tables'])}"
            )
        if not isinstance(n_units, int) or n_units < 1:
            raise SchemaError(f"site {name}: n_units must be a positive integer, got {n_units!r}")
        n_rows = self.n_rows(table)
        chunk_rows = chunk_rows or arrays.default_chunk_rows(n_rows, n_units, dtype)
        declared = {
            "table": table,
            "n_rows": n_rows,
            "n_units": n_units,
            "dtype": dtype,
            "chunk_rows": int(chunk_rows),
            "codec": codec,
            "provenance": provenance or {},
        }
        old = self.manifest["sites"].get(name)
        if old is not None and overwrite and any(old[k] != v for k, v in declared.items()):
            self.delete_site(name)
        with self.update() as manifest:  # shards declare the same site at once: decide here
            old = manifest["sites"].get(name)
            if old is not None:
                changed = [k for k, v in declared.items() if old[k] != v]
                if changed:
                    raise SiteError(
                        f"site {name} already exists with different {', '.join(changed)}; "
                        "pass overwrite=True (--overwrite) to replace it"
                    )
            else:
                arrays.create_array(
                    self.path / ARRAYS_DIR / name, n_rows, n_units, dtype, int(chunk_rows), codec
                )
                manifest["sites"][name] = {
                    **declared,
                    "path": f"{ARRAYS_DIR}/{name}",
                    "status": "partial",
                    "done_chunks": 0,
                    "created": now_utc(),
                }
        return SiteWriter(self, name)

    def delete_site(self, name: str) -> None:
        """Remove a site from the manifest (committed), then its arrays and progress."""
        self._require_writable(exclusive=True)
        self.site(name)
        del self.manifest["sites"][name]
        self.commit()
        shutil.rmtree(self.path / ARRAYS_DIR / name, ignore_errors=True)
        shutil.rmtree(self.path / PROGRESS_DIR / name, ignore_errors=True)

    def _remove_uncommitted(self) -> None:
        """Delete files a crashed writer left that the manifest does not name."""
        named = {
            p["path"]
            for kind in ("tables", "results")
            for e in self.manifest[kind].values()
            for p in e["parts"]
        }
        for folder in (TABLES_DIR, RESULTS_DIR):
            for path in (self.path / folder).glob("*/*"):
                if str(path.relative_to(self.path)) not in named:
                    path.unlink()
        (self.path / (MANIFEST + PARTIAL_SUFFIX)).unlink(missing_ok=True)
        # zarr writes each chunk to "<chunk>.<uuid>.partial" and renames it; a killed
        # writer leaves such files behind
        for path in (self.path / ARRAYS_DIR).rglob("*" + PARTIAL_SUFFIX):
            path.unlink()
        sites = self.manifest["sites"]
        arrays_root = self.path / ARRAYS_DIR
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


def _check_rows(rows: np.ndarray, info: SiteInfo) -> np.ndarray:
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise SchemaError(f"rows must be integers, got dtype {rows.dtype}")
    rows = rows.astype(np.int64, copy=False).ravel()
    if rows.size > 1 and not (np.diff(rows) > 0).all():
        raise SchemaError("rows must be strictly increasing (sort them, e.g. np.unique(rows))")
    if rows.size and (rows[0] < 0 or rows[-1] >= info.n_rows):
        raise SchemaError(f"rows must lie in 0..{info.n_rows - 1} for site {info.name}")
    return rows


def _dir_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def create(path: str | Path, *, overwrite: bool = False) -> Store:
    """Create an empty store at ``path`` and open it for writing.

    ``overwrite`` replaces an existing *store* (a directory with a manifest); any
    other existing path is refused.

    Examples
    --------
    >>> store = actstore.create("ewt.actstore")  # doctest: +SKIP
    """
    root = Path(path)
    if root.exists():
        if not overwrite or not (root / MANIFEST).is_file():
            what = "a store" if (root / MANIFEST).is_file() else "a path that is not a store"
            raise StoreExistsError(
                f"{root} already exists ({what}); "
                + (
                    "pass overwrite=True to replace it"
                    if what == "a store"
                    else "choose another path"
                )
            )
        old = open_store(root, mode="a")  # takes the lock: never delete under a writer
        old.close()
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for folder in (TABLES_DIR, ARRAYS_DIR, RESULTS_DIR):
        (root / folder).mkdir()
    write_manifest(root, new_manifest(__version__))
    return open_store(root, mode="a")


def open_store(path: str | Path, mode: Literal["r", "a"] = "r", *, shared: bool = False) -> Store:
    """Open the store at ``path``: ``mode="r"`` to read, ``"a"`` to add to it.

    ``shared=True`` (with ``mode="a"``) opens a shard writer: several processes may
    hold the store this way at once to fill disjoint chunks of the same sites; other
    changes need the exclusive writer (``mode="a"`` alone).

    Examples
    --------
    >>> with actstore.open("ewt.actstore") as store:  # doctest: +SKIP
    ...     print(store.sql("SELECT count(*) FROM tokens"))
    """
    root = Path(path)
    if mode not in ("r", "a"):
        raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
    if not (root / MANIFEST).is_file():
        read_manifest(root)  # raises the precise error
        raise StoreNotFoundError(str(root))
    if mode == "r":
        return Store(root, "r", None)
    lock = WriterLock(root, shared=shared)
    lock.acquire()
    try:
        return Store(root, "a", lock)
    except BaseException:
        lock.release()
        raise
