"""What an analysis reads: a :class:`Selection` of rows of one store's sites, cut into
blocks, and a :class:`Stream` of one block's rows in cached pieces.

Blocks are whole chunks of the first site, as many as hold about 16 MiB of float32
values (``actstore.reader.block_cuts``: one or two chunks for a full scan, many for a
sparse selection), or runs of whole sentences of about a chunk each; the cuts depend
on the rows and the site's layout only. :mod:`queries.engine` runs block functions on
them.
"""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

import actstore
from actstore.coverage import require, uncovered
from actstore.errors import SchemaError, SiteError
from actstore.reader import SiteReader, block_cuts
from actstore.sql import quote_ident
from queries.select import check_columns, not_null, where_clause
from queries.sentences import sentence_spans


@dataclass(frozen=True, eq=False)
class Selection:
    """Sites of one store and the rows of their table an analysis reads, cut into blocks.

    Parameters
    ----------
    store
        An open store.
    sites
        Site names, all complete and aligned to the same table.
    where
        SQL condition over that table (None: every row).
    sentences
        Blocks are runs of whole sentences (the table needs ``sentence_id``) instead
        of whole chunks of the first site.
    block_rows
        Rows per block: sentence blocks of about this many rows (default: the first
        site's chunk rows); chunk blocks of at most this many rows unless one chunk
        holds more (default: about 16 MiB of float32 values).
    row_ids
        Explicit sorted row ids instead of ``where`` (see :meth:`subset`).

    Examples
    --------
    >>> selection = Selection(store, ("toy/layer.0", "toy/layer.1"), "depth > 2")
    >>> selection.table, bool(selection.rows.size == store.rows("depth > 2").size)
    ('tokens', True)
    >>> len(selection.spans) >= 1
    True
    """

    store: actstore.Store
    sites: tuple[str, ...]
    where: str | None = None
    sentences: bool = False
    block_rows: int | None = None
    row_ids: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.sites, str) or not self.sites:
            raise SchemaError(f"a selection needs a tuple of site names, got {self.sites!r}")
        infos = [self.store.site(name) for name in self.sites]
        for info in infos:
            if info.status != "complete":
                raise SiteError(
                    f"site {info.name} is incomplete ({info.done_chunks}/{info.n_chunks} "
                    "chunks written); rerun its extraction to resume"
                )
        first = infos[0]
        for info in infos[1:]:
            if info.table != first.table:
                raise SchemaError(
                    f"sites {first.name} and {info.name} are aligned to different tables "
                    f"({first.table}, {info.table})"
                )
        everything = self.row_ids is None and not (self.where and self.where.strip())
        table_rows = self.store.n_rows(first.table)
        for info in infos if everything else ():
            if info.n_covered != table_rows:
                raise SiteError(
                    f"{uncovered(info.name, info.table, info.covers, table_rows)}, or select "
                    "the rows it covers with --where"
                )

    @property
    def table(self) -> str:
        """The table the sites are aligned to."""
        return self.store.site(self.sites[0]).table

    @cached_property
    def rows(self) -> np.ndarray:
        """Selected row ids, sorted."""
        if self.row_ids is not None:
            rows = np.asarray(self.row_ids, np.int64).ravel()
            if rows.size and (rows[0] < 0 or (np.diff(rows) <= 0).any()):
                raise SchemaError("row_ids must be strictly increasing row ids (from 0)")
            return self._covered(rows)
        if self.where is None or not self.where.strip():
            return np.arange(self.store.site(self.sites[0]).n_rows, dtype=np.int64)
        return self._covered(self.store.rows(self.where, table=self.table))

    def _covered(self, rows: np.ndarray) -> np.ndarray:
        """``rows``, once every site is checked to hold them."""
        for name in self.sites:
            info = self.store.site(name)
            require(rows, info.name, info.table, info.covers, self.store.n_rows(info.table))
        return rows

    def values(self, columns: Sequence[str]) -> pa.Table:
        """Columns of the table at the selected rows, in row order (with a ``where``, one
        query fetches them and, if not yet known, the rows).

        Examples
        --------
        >>> Selection(store, ("toy/layer.0",), "row < 3").values(["form"]).num_rows
        3
        """
        check_columns(self.store, self.table, columns)
        if self.row_ids is not None or not (self.where and self.where.strip()):
            whole = self.store.columns(list(columns), table=self.table)
            return whole if self.row_ids is None else whole.take(pa.array(self.rows))
        quoted = ", ".join(["row", *(quote_ident(c) for c in columns)])
        table = quote_ident(self.table)
        query = f"SELECT {quoted} FROM {table}{where_clause(self.where)} ORDER BY row"
        result: pa.Table = self.store.sql(query, arrow=True)
        if "rows" not in self.__dict__:  # the cached property, filled by the same query
            rows = np.asarray(result.column(0).to_numpy(), np.int64)
            self.__dict__["rows"] = self._covered(rows)
        return result.remove_column(0)

    @cached_property
    def sentence(self) -> np.ndarray:
        """The sentence id of every selected row."""
        column = self.values(["sentence_id"]).column("sentence_id")
        return np.asarray(column.to_numpy(), np.int64)

    @cached_property
    def spans(self) -> list[slice]:
        """The blocks, as slices of :attr:`rows`: whole chunks of the first site, or runs
        of whole sentences."""
        info = self.store.site(self.sites[0])
        if self.sentences:
            return sentence_spans(self.sentence, self.block_rows or info.chunk_rows)
        row_bytes = 4 * max(self.store.site(name).n_units for name in self.sites)
        target = self.block_rows * row_bytes if self.block_rows else None
        cuts = block_cuts(self.rows, info.chunk_rows, row_bytes, target)
        return [slice(a, b) for a, b in itertools.pairwise(cuts)]

    def subset(self, keep: np.ndarray) -> Selection:
        """The selection of some of these rows (a boolean mask or positions into
        :attr:`rows`), blocked the same way.

        Examples
        --------
        >>> selection = Selection(store, ("toy/layer.0",))
        >>> selection.subset(selection.rows < 10).rows.size
        10
        """
        return Selection(
            self.store, self.sites, self.where, self.sentences, self.block_rows, self.rows[keep]
        )

    def acts(self, site: str | None = None, *, dtype: str | None = "float32") -> Any:
        """The lazy ``(row, unit)`` view of one site (default: the first) at these rows."""
        return self.store.acts(site or self.sites[0], self.rows, dtype=dtype)

    def readers(self, dtype: str | None = "float32") -> list[SiteReader]:
        """Each site's row reader (``dtype`` as in ``Store.acts``: None keeps the stored one)."""
        return [self.store.site_reader(name, dtype=dtype) for name in self.sites]

    def read(self, dtype: str | None = "float32", *, threads: int = 2) -> list[np.ndarray]:
        """Every selected row of every site, read into memory in this process (by
        ``threads`` threads filling disjoint blocks of one array per site).

        Examples
        --------
        >>> (x,) = Selection(store, ("toy/layer.0",), "upos = 'NOUN'").read()
        >>> x.shape == (store.rows("upos = 'NOUN'").size, 16)
        True
        """
        readers = self.readers(dtype)
        out = [np.empty((self.rows.size, r.n_units), r.out_dtype) for r in readers]
        jobs = [(r, o, span) for r, o in zip(readers, out, strict=True) for span in self.spans]

        def fill(job: tuple[SiteReader, np.ndarray, slice]) -> None:
            reader, array, span = job
            reader.take_into(self.rows[span], array[span])

        with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(fill, jobs))
        return out


@dataclass(frozen=True, eq=False)
class Stream:
    """A block's rows of one site, read piece by piece: iterating yields consecutive
    pieces of about ``piece_bytes`` (rows x units, the read dtype), each valid until the
    next, so the block is never in memory whole (see ``SiteReader.pieces``).

    Examples
    --------
    >>> stream = Stream(store.site_reader("toy/layer.0"), np.arange(100), 40 * 16 * 4)
    >>> len(stream), [len(piece) for piece in stream]
    (100, [40, 40, 20])
    """

    reader: SiteReader
    rows: np.ndarray
    piece_bytes: int

    def __len__(self) -> int:
        return int(self.rows.size)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.reader.pieces(self.rows, self.piece_bytes)


def with_values(
    store: actstore.Store,
    sites: tuple[str, ...],
    columns: Sequence[str],
    where: str | None = None,
    **kwargs: Any,
) -> tuple[Selection, pa.Table]:
    """The selection of rows where ``columns[0]`` has a value (and ``where`` holds), with
    the values of ``columns`` at those rows. Without ``where`` the columns are read
    straight from the Parquet parts (no SQL); ``kwargs`` go to :class:`Selection`.

    Examples
    --------
    >>> selection, values = with_values(store, ("toy/layer.0",), ["head_distance"])
    >>> selection.rows.size == values.num_rows == store.n_rows() - 30  # 30 roots
    True
    """
    first = quote_ident(columns[0])
    check_columns(store, store.site(sites[0]).table, columns)
    if where and where.strip():
        selection = Selection(store, sites, not_null(where, first), **kwargs)
        return selection, selection.values(columns)
    values = store.columns(list(columns), table=store.site(sites[0]).table)
    if values.column(0).null_count == 0:
        return Selection(store, sites, **kwargs), values
    present = values.column(0).is_valid()
    rows = np.flatnonzero(np.asarray(present.to_numpy(), bool))
    return Selection(store, sites, row_ids=rows, **kwargs), values.filter(present)
