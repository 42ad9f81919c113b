"""The query engine under every analysis: a :class:`Selection` and a deterministic map-reduce.

A selection names what an analysis reads: one or more sites of one store, aligned to
the same table, and the rows of that table an SQL ``where`` keeps (or an explicit row
list, such as a probe's training split). It cuts those rows into blocks: whole chunks
of the first site, as many as hold about 16 MiB of float32 values (one or two chunks
for a full scan, many for a sparse selection), or, with ``sentences=True``, runs of
whole sentences of about a chunk each (for analyses that look at a sentence's words
together). The cuts depend on the rows and the site's layout only.

:func:`map_reduce` applies a block function to every block (a dask task each, which
reads the block's rows with :meth:`actstore.Store.site_reader` and calls the function)
and merges the partial results by a balanced tree fixed by the block order: block 0 with
1, 2 with 3, ..., then the pairs, and so on. The graph is the same whatever runs it,
the threaded or process scheduler or a ``dask.distributed`` client (the caller's dask
configuration chooses), so with block functions that do not depend on the thread
count (``queries.moments``) the numbers are identical bit for bit. :func:`map_blocks`
returns every block's result in block order instead. Large values every block needs
(a covariate's ranks) are passed as ``shared`` and sent once (:func:`broadcast`).

A computation may carry a ``label``: a progress bar (:mod:`queries.progress`) of that
name then counts its blocks as they finish, advanced by a dask callback on the
scheduling thread of the threaded, process or synchronous scheduler; it watches and
never changes the graph. Under a ``dask.distributed`` client no bar is drawn (the
client's dashboard shows the tasks).

Threads are sized once: dask's workers (one per core by default) are the parallelism,
and torch runs single-threaded inside every task (set for the duration of a
computation and restored after), so two tasks never fight over the cores with torch's
own thread pool.

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

import contextlib
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import numpy as np
from dask.base import compute as _dask_compute
from dask.delayed import Delayed, delayed

from actstore import progress
from actstore.errors import SchemaError
from actstore.reader import SiteReader
from queries.selection import Selection, Stream

__all__ = [
    "Selection",
    "Stream",
    "broadcast",
    "compute",
    "map_blocks",
    "map_reduce",
    "n_workers",
    "tree",
]

T = TypeVar("T")


def compute(
    *args: Any,
    label: str | None = None,
    count: Sequence[Delayed] | None = None,
    unit: str = "blocks",
    **kwargs: Any,
) -> Any:
    """dask's compute with torch single-threaded inside the tasks; the scheduler is the
    caller's dask configuration unless given. With a ``label``, a progress bar of that
    name counts the tasks of ``count`` (default: ``args``) as they finish.

    Examples
    --------
    >>> compute(delayed(sum)([1, 2]), label="sum")
    (3,)
    """
    with torch_single_threaded(), _counted(args if count is None else count, label, unit):
        return _dask_compute(*args, **kwargs)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def _counted(parts: Sequence[Any], label: str | None, unit: str) -> Iterator[None]:
    """A bar advanced as each of ``parts`` finishes (local schedulers run dask's
    callbacks; a ``dask.distributed`` client runs none, so it gets no bar). Callbacks
    are global, so other computations' tasks are told apart by key."""
    keys = {p.key for p in parts if isinstance(p, Delayed)}
    if label is None or not keys or not progress.active() or _client() is not None:
        yield
        return
    from dask.callbacks import Callback

    def finished(key: Any, result: Any, dsk: Any, state: Any, worker: Any) -> None:
        if key in keys:
            shown.update(1)

    watch = Callback(posttask=finished)  # type: ignore[no-untyped-call]
    with progress.bar(len(keys), unit=unit, desc=label) as shown, watch:
        yield


_pinned = {"depth": 0, "before": 1}  # computations running, torch's threads before them
_pin_lock = threading.Lock()


@contextlib.contextmanager
def torch_single_threaded() -> Iterator[None]:
    """torch on one thread while any computation (or CPU training loop) runs; the first
    to start saves the thread count and the last to finish restores it (they may
    overlap). On 2 shared cores a probe trained 2.4x slower with 2 threads than with 1
    while another process kept a core busy, and only 15% faster when idle."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    with _pin_lock:
        if _pinned["depth"] == 0:
            _pinned["before"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _pinned["depth"] += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pinned["depth"] -= 1
            if _pinned["depth"] == 0 and _pinned["before"] != 1:
                torch.set_num_threads(_pinned["before"])


def _one_thread() -> None:
    """Inside a task: torch single-threaded (worker processes of the process scheduler
    or a cluster start with a thread per core; the threaded scheduler already is)."""
    if "torch" not in sys.modules:
        return
    import torch  # waits while another task's thread is still importing it

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def n_workers() -> int:
    """How many tasks run at once: the threads of the ``dask.distributed`` client's
    workers if there is one, else dask's ``num_workers`` setting or the CPU count.

    Examples
    --------
    >>> n_workers() >= 1
    True
    """
    client = _client()
    if client is None:
        import dask

        if dask.config.get("scheduler", None) in ("sync", "synchronous", "single-threaded"):
            return 1
        return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    return max(1, int(sum(client.nthreads().values())))


def _client() -> Any:
    """The ``dask.distributed`` client computations go to, or None (without importing
    distributed, which takes a while, when nothing has: then there is no client)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import default_client

        return default_client()  # type: ignore[no-untyped-call]
    except (ImportError, ValueError):
        return None


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
    return merge_in_order(parts, delayed(merge))


def merge_in_order(parts: Sequence[T], merge: Callable[[T, T], T]) -> T:
    """Merge values now, pairing them as :func:`tree` does: the same result, bit for bit,
    as the same partial results merged by a dask graph.

    Examples
    --------
    >>> merge_in_order(["0", "1", "2", "3", "4"], lambda a, b: f"({a}+{b})")
    '(((0+1)+(2+3))+4)'
    """
    if not parts:
        raise SchemaError("nothing to merge: the selection has no blocks")
    level = list(parts)
    while len(level) > 1:
        pairs = [merge(a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
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
    client = _client()
    if client is None:
        return delayed(value, name=f"shared-{uuid.uuid4().hex}", traverse=False)
    return client.scatter(value, broadcast=True, hash=False)


def _run_block(
    block_fn: Callable[..., T],
    readers: Sequence[SiteReader],
    rows: np.ndarray,
    stream: int | None,
    **kwargs: Any,
) -> T:
    """One task: read the block's rows of every site (or stream them), apply ``block_fn``."""
    _one_thread()
    if stream is not None:
        return block_fn(*(Stream(reader, rows, stream) for reader in readers), **kwargs)
    return block_fn(*(reader.take(rows) for reader in readers), **kwargs)


def _tasks(
    block_fn: Callable[..., T],
    selection: Selection,
    per_row: Mapping[str, np.ndarray] | None,
    shared: Mapping[str, Any] | None,
    dtype: str | None,
    stream: int | None = None,
) -> list[Delayed]:
    per_row = dict(per_row or {})
    for name, values in per_row.items():
        if len(values) != selection.rows.size:
            raise SchemaError(
                f"per-row value {name!r} has {len(values)} entries for {selection.rows.size} rows"
            )
    if not selection.rows.size:
        where = f" by {selection.where!r}" if selection.where else ""
        raise SchemaError(f"no rows of {selection.table} are selected{where}")
    sent = {name: broadcast(value) for name, value in (shared or {}).items()}
    readers = selection.readers(dtype)
    function = delayed(partial(_run_block, block_fn))
    return [
        function(
            readers,
            selection.rows[span],
            stream,
            **{k: v[span] for k, v in per_row.items()},
            **sent,
        )
        for span in selection.spans
    ]


def map_reduce(
    block_fn: Callable[..., T],
    merge: Callable[[T, T], T],
    selection: Selection,
    *,
    per_row: Mapping[str, np.ndarray] | None = None,
    shared: Mapping[str, Any] | None = None,
    dtype: str | None = "float32",
    stream: int | None = None,
    label: str | None = None,
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
    dtype
        What the blocks are read as (``Store.acts``'s ``dtype``: None keeps the stored
        dtype, bfloat16 comes as float32).
    stream
        Give ``block_fn`` each site's block as a :class:`Stream` of pieces of this many
        bytes instead of an array: a kernel that consumes pieces while they are in
        cache never writes the block to memory whole.
    label
        The name of the progress bar counting blocks (default: ``block_fn``'s name);
        it shows as :mod:`queries.progress` says.

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
    parts = _tasks(block_fn, selection, per_row, shared, dtype, stream)
    result: T = compute(tree(parts, merge), label=label or _name(block_fn), count=parts)[0]
    return result


def map_blocks(
    block_fn: Callable[..., T],
    selection: Selection,
    *,
    per_row: Mapping[str, np.ndarray] | None = None,
    shared: Mapping[str, Any] | None = None,
    dtype: str | None = "float32",
    label: str | None = None,
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
    parts = _tasks(block_fn, selection, per_row, shared, dtype)
    return list(compute(*parts, label=label or _name(block_fn)))


def _name(block_fn: Callable[..., Any]) -> str:
    """A block function's name (a ``functools.partial``'s function's), for its bar."""
    while isinstance(block_fn, partial):
        block_fn = block_fn.func
    return str(getattr(block_fn, "__name__", "blocks")).strip("_")
