"""The query engine under every analysis: a :class:`Selection` and a deterministic map-reduce.

A selection names what an analysis reads: one or more sites of one store, aligned to
the same table, and the rows of that table an SQL ``where`` keeps (or an explicit row
list, such as a probe's training split). It cuts those rows into blocks: one per
chunk of the first site touched by the selection, or, with ``sentences=True``, runs of
whole sentences of about a chunk each (for analyses that look at a sentence's words
together).

:func:`map_reduce` applies a block function to every block (a dask task each) and
merges the partial results by a balanced tree fixed by the block order: block 0 with
1, 2 with 3, ..., then the pairs, and so on. The graph is the same whatever runs it,
the threaded or process scheduler or a ``dask.distributed`` client (the caller's dask
configuration chooses), so with block functions that do not depend on the thread
count (``queries.moments``) the numbers are identical bit for bit. :func:`map_blocks`
returns every block's result in block order instead. Large values every block needs
(rank tables) are passed as ``shared`` and sent once (:func:`broadcast`).

An analysis is a block function, a merge and a few lines that build the selection;
nothing needs registering anywhere.

Examples
--------
>>> selection = Selection(store, ("toy/layer.0",), where="upos = 'NOUN'")
>>> def sums(x):
...     return x.sum(axis=0, dtype="float64"), len(x)
>>> def add(a, b):
...     return a[0] + b[0], a[1] + b[1]
>>> total, n = map_reduce(sums, add, selection)
>>> n == selection.rows.size, total.shape
(True, (16,))
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
from dask.base import compute as _dask_compute
from dask.delayed import Delayed, delayed

import actstore
from actstore.errors import SchemaError, SiteError
from actstore.sql import quote_ident
from queries.select import check_columns, where_clause
from queries.sentences import sentence_spans

T = TypeVar("T")


def compute(*args: Any, **kwargs: Any) -> Any:
    """dask's compute; the scheduler is the caller's dask configuration unless given.

    Examples
    --------
    >>> compute(delayed(sum)([1, 2]))
    (3,)
    """
    return _dask_compute(*args, **kwargs)  # type: ignore[no-untyped-call]


def tree(parts: Sequence[Any], merge: Callable[[Any, Any], Any]) -> Any:
    """A balanced tree of delayed merges in block order: (0, 1), (2, 3) ..., then pairs.

    The shape depends only on the number of parts, so the order in which partial
    results meet is the same on every scheduler; the scheduler frees each pair once
    merged.

    Examples
    --------
    >>> parts = [delayed(str)(i) for i in range(5)]
    >>> compute(tree(parts, lambda a, b: f"({a}+{b})"))[0]
    '(((0+1)+(2+3))+4)'
    """
    if not parts:
        raise SchemaError("nothing to merge: the selection has no blocks")
    level = list(parts)
    while len(level) > 1:
        pairs = [delayed(merge)(a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def broadcast(value: Any) -> Any:
    """``value`` as one shared graph node, so dask neither hashes nor copies it per task.

    Under a ``dask.distributed`` client the value is scattered to every worker once;
    otherwise it is a named delayed leaf.

    Examples
    --------
    >>> compute(broadcast(np.arange(3)))[0]
    array([0, 1, 2])
    """
    try:
        from distributed import default_client

        client = default_client()  # type: ignore[no-untyped-call]
    except (ImportError, ValueError):
        return delayed(value, name=f"shared-{uuid.uuid4().hex}", traverse=False)
    return client.scatter(value, broadcast=True, hash=False)


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
        of one block per chunk of the first site.
    block_rows
        Rows per sentence block (default: the first site's chunk rows).
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
            if (info.table, info.n_rows) != (first.table, first.n_rows):
                raise SchemaError(
                    f"sites {first.name} ({first.table}, {first.n_rows} rows) and {info.name} "
                    f"({info.table}, {info.n_rows} rows) do not cover the same rows"
                )
        everything = self.row_ids is None and not (self.where and self.where.strip())
        if everything and first.n_rows != self.store.n_rows(first.table):
            raise SchemaError(
                f"{self._coverage()}; select them with --where 'row < {first.n_rows}' "
                "or extract the site again with --overwrite"
            )

    def _coverage(self) -> str:
        info = self.store.site(self.sites[0])
        return (
            f"site {info.name} covers rows 0..{info.n_rows - 1} of {info.table}, which has "
            f"{self.store.n_rows(info.table):,} rows now (rows were added after it was written)"
        )

    @property
    def table(self) -> str:
        """The table the sites are aligned to."""
        return self.store.site(self.sites[0]).table

    @cached_property
    def rows(self) -> np.ndarray:
        """Selected row ids, sorted."""
        if self.row_ids is not None:
            rows = np.asarray(self.row_ids, np.int64)
        elif self.where is None or not self.where.strip():
            return np.arange(self.store.site(self.sites[0]).n_rows, dtype=np.int64)
        else:
            rows = self.store.rows(self.where, table=self.table)
        covered = self.store.site(self.sites[0]).n_rows
        if rows.size and rows[-1] >= covered:
            raise SchemaError(
                f"the selected rows reach row {rows[-1]:,}, but {self._coverage()}; "
                f"add 'row < {covered}' to --where to select only rows it covers"
            )
        return rows

    def values(self, columns: Sequence[str]) -> pa.Table:
        """Columns of the table at the selected rows, in row order.

        Examples
        --------
        >>> Selection(store, ("toy/layer.0",), "row < 3").values(["form"]).num_rows
        3
        """
        check_columns(self.store, self.table, columns)
        if self.row_ids is not None or not (self.where and self.where.strip()):
            whole = self.store.columns(list(columns), table=self.table)
            return whole if self.row_ids is None else whole.take(pa.array(self.rows))
        quoted = ", ".join(quote_ident(c) for c in columns)
        table = quote_ident(self.table)
        query = f"SELECT {quoted} FROM {table}{where_clause(self.where)} ORDER BY row"
        result: pa.Table = self.store.sql(query, arrow=True)
        return result

    @cached_property
    def sentence(self) -> np.ndarray:
        """The sentence id of every selected row."""
        column = self.values(["sentence_id"]).column("sentence_id")
        return np.asarray(column.to_numpy(), np.int64)

    @cached_property
    def spans(self) -> list[slice]:
        """The blocks, as slices of :attr:`rows`: chunks of the first site touched, or
        runs of whole sentences."""
        info = self.store.site(self.sites[0])
        if self.sentences:
            return sentence_spans(self.sentence, self.block_rows or info.chunk_rows)
        chunk = self.rows // info.chunk_rows
        cuts = [0, *(np.flatnonzero(np.diff(chunk)) + 1).tolist(), self.rows.size]
        return [slice(a, b) for a, b in itertools.pairwise(cuts) if b > a]

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

    def _view(self, site: str, rows: np.ndarray, dtype: str | None, units: slice | None) -> Any:
        view = self.store.acts(site, rows, dtype=dtype)
        return view if units is None else view.isel(unit=units)

    def acts(self, site: str | None = None, *, dtype: str | None = "float32") -> Any:
        """The lazy ``(row, unit)`` view of one site (default: the first) at these rows."""
        return self.store.acts(site or self.sites[0], self.rows, dtype=dtype)

    def blocks(
        self, *, dtype: str | None = "float32", units: slice | None = None
    ) -> list[tuple[Delayed, ...]]:
        """Per block, one delayed array per site (rows x units), in block order.

        ``dtype`` as in ``Store.acts`` (None keeps the stored dtype); ``units`` reads
        some units only.
        """
        spans = self.spans
        per_site = []
        for site in self.sites:
            whole = self._view(site, self.rows, dtype, units)
            if [s.stop - s.start for s in spans] == list(whole.data.chunks[0]):
                per_site.append(whole.data.to_delayed().ravel().tolist())
                continue
            parts = []
            for span in spans:  # a block across chunks: read only its rows, then join
                pieces = self._view(site, self.rows[span], dtype, units).data.to_delayed()
                pieces = pieces.ravel().tolist()
                parts.append(pieces[0] if len(pieces) == 1 else delayed(np.concatenate)(pieces))
            per_site.append(parts)
        return list(zip(*per_site, strict=True))


def _tasks(
    block_fn: Callable[..., T],
    selection: Selection,
    per_row: Mapping[str, np.ndarray] | None,
    shared: Mapping[str, Any] | None,
    dtype: str | None,
    units: slice | None,
) -> list[Delayed]:
    per_row = dict(per_row or {})
    for name, values in per_row.items():
        if len(values) != selection.rows.size:
            raise SchemaError(
                f"per-row value {name!r} has {len(values)} entries for {selection.rows.size} rows"
            )
    sent = {name: broadcast(value) for name, value in (shared or {}).items()}
    blocks = selection.blocks(dtype=dtype, units=units)
    if not blocks:
        where = f" by {selection.where!r}" if selection.where else ""
        raise SchemaError(f"no rows of {selection.table} are selected{where}")
    function = delayed(block_fn)
    return [
        function(*arrays, **{k: v[span] for k, v in per_row.items()}, **sent)
        for arrays, span in zip(blocks, selection.spans, strict=True)
    ]


def map_reduce(
    block_fn: Callable[..., T],
    merge: Callable[[T, T], T],
    selection: Selection,
    *,
    per_row: Mapping[str, np.ndarray] | None = None,
    shared: Mapping[str, Any] | None = None,
    dtype: str | None = "float32",
    units: slice | None = None,
) -> T:
    """Apply ``block_fn`` to every block of ``selection`` and merge the results by
    :func:`tree` (a fixed order: the same numbers on every scheduler).

    Parameters
    ----------
    block_fn
        Called per block as ``block_fn(*arrays, **per_row_slices, **shared)``: one
        array (rows x units) per site of the selection, the block's slice of every
        ``per_row`` array, and the ``shared`` values whole. It must be a picklable
        module-level function (or ``functools.partial`` of one) to run in processes.
    merge
        Combines two partial results; it needs to be associative, not commutative.
    selection
        What to read.
    per_row
        Arrays with one entry per selected row (a covariate, labels).
    shared
        Large values every block needs, sent to each worker once.
    dtype, units
        Passed to :meth:`Selection.blocks`.

    Returns
    -------
    The merged result.

    Examples
    --------
    >>> selection = Selection(store, ("toy/layer.0",))
    >>> def count(x, depth):
    ...     return int((depth > 2).sum())
    >>> depth = selection.values(["depth"]).column("depth").to_numpy()
    >>> deep = map_reduce(count, int.__add__, selection, per_row={"depth": depth})
    >>> deep == int((depth > 2).sum())
    True
    """
    parts = _tasks(block_fn, selection, per_row, shared, dtype, units)
    result: T = compute(tree(parts, merge))[0]
    return result


def map_blocks(
    block_fn: Callable[..., T],
    selection: Selection,
    *,
    per_row: Mapping[str, np.ndarray] | None = None,
    shared: Mapping[str, Any] | None = None,
    dtype: str | None = "float32",
    units: slice | None = None,
) -> list[T]:
    """Every block's result of ``block_fn``, in block order (one dask graph).

    For analyses whose result has a part per block (a value per row or per sentence);
    arguments as in :func:`map_reduce`.

    Examples
    --------
    >>> selection = Selection(store, ("toy/layer.0",), sentences=True, block_rows=50)
    >>> parts = map_blocks(len, selection)
    >>> bool(sum(parts) == selection.rows.size)
    True
    """
    parts = _tasks(block_fn, selection, per_row, shared, dtype, units)
    return list(compute(*parts))


def read_block(part: Any) -> np.ndarray:
    """One block, read in this process (for loops that stay local, such as training).

    Examples
    --------
    >>> (block,) = Selection(store, ("toy/layer.0",)).blocks()[0]
    >>> read_block(block).shape[1]
    16
    """
    return np.asarray(compute(part, scheduler="sync")[0])
