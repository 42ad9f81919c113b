"""The store: a directory of Parquet tables and Zarr site arrays under one manifest.

This module is the façade; the work is done in :mod:`actstore.commit` (the manifest
and its commits), :mod:`actstore.tables` (Parquet), :mod:`actstore.sites` (site
arrays), :mod:`actstore.results` (analysis output) and :mod:`actstore.sql`. See
``docs/FORMAT.md`` for the layout. ``create`` and ``open(mode="a")`` take the
single-writer lock; ``open(mode="r")`` takes a snapshot of the manifest and never
waits for a writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from actstore import results, sites, tables
from actstore.commit import Ledger, remove_uncommitted
from actstore.errors import ParameterError, SchemaError
from actstore.lock import ObjectClaim, WriterLock
from actstore.manifest import ResultRecord, SourceInfo, TableRecord
from actstore.names import Params, did_you_mean, needed_views, quote_ident
from actstore.results import MatrixResult, ResultInfo
from actstore.sites import SiteInfo
from actstore.storage import LocalStorage, Storage
from actstore.writing import StoreWriting

if TYPE_CHECKING:  # xarray, dask and zarr load when a site is first read or written
    import xarray as xr

    from actstore.reader import SiteReader

__all__ = ["SiteInfo", "SourceInfo", "Store", "TableInfo"]


@dataclass(frozen=True)
class TableInfo:
    """A committed SQL table (a corpus table or a table result): name, rows, parts."""

    name: str
    n_rows: int
    n_parts: int


class Store(StoreWriting):
    """An open store. Use :func:`actstore.open` or :func:`actstore.create`.

    Examples
    --------
    >>> store.n_rows("tokens"), sorted(store.sites)
    (698, ['toy/layer.0', 'toy/layer.1'])
    """

    def __init__(
        self, storage: Storage, mode: Literal["r", "a"], lock: WriterLock | ObjectClaim | None
    ) -> None:
        self.storage = storage
        self.mode = mode
        self._ledger = Ledger(storage, lock)
        if mode == "a" and not self._ledger.shared and isinstance(storage, LocalStorage):
            remove_uncommitted(storage.root, self._ledger.manifest)

    @property
    def location(self) -> str:
        """Where the store is: its directory, or its URL (``s3://bucket/prefix``)."""
        return self.storage.where()

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Release the writer lock."""
        if self._ledger.lock is not None:
            self._ledger.lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        counts = ", ".join(f"{t.name}={t.n_rows}" for t in self.tables.values())
        sites = len(self._ledger.manifest.sites)
        return f"<actstore.Store {self.location} mode={self.mode!r} tables[{counts}] sites={sites}>"

    @property
    def shared(self) -> bool:
        """Whether this handle is a shard writer (may fill sites, nothing else)."""
        return self._ledger.shared

    def check_writable(self, *, exclusive: bool = False) -> None:
        """Raise :class:`~actstore.ReadOnlyError` unless this handle may write (``exclusive``:
        may change more than the sites' chunks, i.e. is not a shard writer)."""
        self._ledger.require_writable(exclusive=exclusive)

    # -- what is committed -------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """The manifest's header: format version, actstore version, dates, generation."""
        m = self._ledger.manifest
        return {
            "format_version": m.format_version,
            "actstore_version": m.actstore_version,
            "created": m.created,
            "updated": m.updated,
            "generation": m.generation,
        }

    @property
    def generation(self) -> int:
        """The commit counter: it grows by one with every commit."""
        return self._ledger.manifest.generation

    @property
    def tables(self) -> dict[str, TableInfo]:
        """Committed SQL tables (corpus tables and table results), by name."""
        m = self._ledger.manifest
        out = {n: TableInfo(n, t.n_rows, len(t.parts)) for n, t in m.tables.items()}
        for name, r in m.results.items():
            if r.kind == "table":
                out[name] = TableInfo(name, r.n_rows, len(r.parts))
        return out

    @property
    def sites(self) -> dict[str, SiteInfo]:
        """Declared sites by name, complete or in progress (see ``SiteInfo.status``)."""
        return {n: sites.info_of(n, r) for n, r in self._ledger.manifest.sites.items()}

    def site(self, name: str) -> SiteInfo:
        """The declared site ``name``; the error lists the sites there are."""
        return sites.info_of(name, sites.record_of(self._ledger, name))

    @property
    def results(self) -> dict[str, ResultInfo]:
        """Committed results (tables and matrices) by name."""
        return {n: results.info_of(n, r) for n, r in self._ledger.manifest.results.items()}

    def result(self, name: str) -> ResultInfo:
        """The committed result ``name`` (without building every result's info, as
        :attr:`results` does); the error lists the results there are."""
        record = self._ledger.manifest.results.get(name)
        if record is None:
            raise SchemaError(f"no result {name!r}; results: {_names(self.results)}")
        return results.info_of(name, record)

    @property
    def sources(self) -> tuple[SourceInfo, ...]:
        """The ingested corpus files, in order."""
        return tuple(self._ledger.manifest.sources)

    def n_rows(self, table: str = "tokens") -> int:
        """Committed rows of ``table`` (0 if it has none yet)."""
        record = self._ledger.manifest.table_like(table)
        return record.n_rows if record is not None else 0

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary: tables, sites, results, sources, bytes on disk.

        Examples
        --------
        >>> store.info()["sites"]["toy/layer.0"]["shape"]
        [698, 16]
        """
        from actstore.summary import summarize

        return summarize(self)

    # -- reading -----------------------------------------------------------------------
    def _views(self) -> dict[str, list[str]]:
        m = self._ledger.manifest
        parts = {n: t.parts for n, t in m.tables.items()}
        parts.update({n: r.parts for n, r in m.results.items() if r.kind == "table"})
        return {name: [p.path for p in listed] for name, listed in parts.items()}

    def sql(
        self,
        query: str,
        params: Params = None,
        *,
        arrow: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Run a read-only SQL query over the store's tables; a DataFrame (or Arrow table).

        ``params`` fills ``?`` (a sequence) or ``$name`` (a mapping) placeholders;
        ``timeout`` stops the query after so many seconds.

        Examples
        --------
        >>> store.sql("SELECT count(*) AS n FROM tokens WHERE depth > ?", [5]).n[0]
        np.int64(92)
        """
        from actstore import sql  # duckdb loads with the first query

        with sql.connect(self.storage, needed_views(query, self._views())) as con:
            return sql.run_query(con, query, params, arrow=arrow, timeout=timeout)

    def rows(
        self, where: str | None = None, table: str = "tokens", params: Params = None
    ) -> np.ndarray:
        """Sorted row ids of ``table`` matching an SQL condition (all rows when None).

        Examples
        --------
        >>> store.rows("upos = 'PROPN' AND depth > 3")[:3]
        array([23, 43, 46])
        """
        if table not in self.tables:
            raise SchemaError(f"no table {table!r}; tables: {sorted(self.tables)}")
        from actstore.sql import condition

        query = f"SELECT row FROM {quote_ident(table)}"
        if where is not None and where.strip():
            query += f" WHERE ({condition(where)})"
        result = self.sql(query + " ORDER BY row", params, arrow=True)
        return np.asarray(result.column("row").to_numpy(), dtype=np.int64)

    def columns(self, names: Sequence[str], table: str = "tokens") -> pa.Table:
        """Whole columns of ``table`` in row order, read straight from its Parquet parts.

        Far leaner than SQL for every row; strings come dictionary-encoded, and a column
        missing from some parts (a UD feature absent in one corpus) is NULL there.

        Examples
        --------
        >>> store.columns(["sentence_id", "upos"]).num_rows
        698
        """
        return tables.read_columns(self.storage, self._table(table), table, names)

    def require_columns(self, names: Sequence[str], table: str = "tokens") -> None:
        """Raise :class:`SchemaError` naming the first of ``names`` that ``table`` lacks
        (and the columns closest to it).

        Examples
        --------
        >>> store.require_columns(["upos", "tense"])
        Traceback (most recent call last):
        ...
        actstore.errors.SchemaError: no column 'tense' in tokens (did you mean Tense?); columns: ...
        """
        columns = self.schema(table).names
        for name in names:
            if name not in columns:
                hint = did_you_mean(name, columns)
                raise SchemaError(
                    f"no column {name!r} in {table}{f' ({hint})' if hint else ''}; "
                    f"columns: {', '.join(columns)}"
                )

    def schema(self, table: str = "tokens") -> pa.Schema:
        """The columns and types of ``table`` (a corpus table or a table result), from footers.

        Examples
        --------
        >>> store.schema().names[:4], str(store.schema().field("depth").type)
        (['row', 'sentence_id', 'position', 'form'], 'int32')
        """
        return tables.schema(self.storage, self._table(table), table)

    def _table(self, table: str) -> TableRecord | ResultRecord:
        record = self._ledger.manifest.table_like(table)
        if record is None:
            raise SchemaError(f"no table {table!r}; tables: {sorted(self.tables)}")
        return record

    def acts(
        self,
        site: str,
        rows: Iterable[int] | np.ndarray | None = None,
        *,
        where: str | None = None,
        coords: Sequence[str] = (),
        dtype: str | None = "float32",
    ) -> xr.DataArray:
        """A lazy ``(row, unit)`` view of a complete site: the rows it covers, or some.

        Nothing is read until the result (or a reduction of it) is computed. ``rows``
        are strictly increasing row ids (from :meth:`rows`), or ``where`` an SQL
        condition choosing them. ``coords`` names columns of the site's table to carry
        along the ``row`` dimension (read now: they are small), so ``groupby`` works
        without a join. Blocks are read as ``dtype`` (float32 by default: float16 sums
        lose precision; float16, float64; None: as stored, bfloat16 as float32, its
        raw bits with ``dtype="uint16"``).

        Examples
        --------
        >>> view = store.acts("toy/layer.0", store.rows("upos = 'NOUN'"))
        >>> view.sizes["unit"], view.mean("row").compute().shape
        (16, (16,))
        >>> view = store.acts("toy/layer.0", where="depth > 2", coords=["upos", "lemma"])
        >>> means = view.groupby("upos").mean()
        >>> type(means.data).__name__, means.sizes["upos"], str(view.upos.values[0])  # lazy
        ('Array', 14, 'ADP')
        >>> store.sql("SELECT count(DISTINCT upos) AS n FROM tokens WHERE depth > 2").n[0]
        np.int64(14)
        """
        table = self.site(site).table
        if where is not None:
            if rows is not None:
                raise ParameterError("where", "give rows or where, not both")
            rows = self.rows(where, table=table)
        view = sites.view(self._ledger, site, rows, dtype)
        if not coords:
            return view
        names = list(dict.fromkeys(coords))
        self.require_columns(names, table)
        chosen = pa.array(view.row.values)
        columns = tables.read_columns(self.storage, self._table(table), table, names).take(chosen)
        return view.assign_coords(
            {n: ("row", columns.column(n).to_numpy(zero_copy_only=False)) for n in names}
        )

    def token_vectors(self, site: str = "glove/vectors", **options: Any) -> xr.DataArray:
        """A site over the ``words`` table seen over the tokens, out-of-vocabulary tokens
        as NaN rows with ``in_vocab`` False and the coverage in ``attrs``; ``options``:
        ``by`` (form, lemma), ``lowercase``, ``where`` (:func:`actstore.words.token_vectors`).
        """
        from actstore.words import token_vectors

        return token_vectors(self, site, **options)

    def site_reader(self, site: str, *, dtype: str | None = "float32") -> SiteReader:
        """The row reader behind :meth:`acts`, for code that runs its own tasks (the engine).

        Examples
        --------
        >>> store.site_reader("toy/layer.0").take(np.array([1, 2, 9])).shape
        (3, 16)
        """
        return sites.reader(self._ledger, site, dtype)

    def matrix(self, name: str) -> MatrixResult:
        """The matrix result ``name`` (lazy values with row and column labels)."""
        record = self._ledger.manifest.results.get(name)
        if record is None:
            raise SchemaError(f"no result {name!r}; results: {_names(self.results)}")
        return results.read_matrix(self.storage, name, record)

    def written_chunks(self, site: str) -> frozenset[int]:
        """Chunks of ``site`` whose bytes are durably written (a running writer's too)."""
        return sites.written_chunks(self._ledger, site)


def _names(named: Mapping[str, Any]) -> str:
    return ", ".join(sorted(named)) or "none"
