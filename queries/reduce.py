"""Streaming reductions over sites: per-block partial results merged by a tree.

Every analysis that reduces a site builds a dask graph of one task per block (a
chunk of the selection, or a run of whole sentences) and merges the partial results
pairwise. The graph runs unchanged on the threaded scheduler, the process scheduler
or a ``dask.distributed`` client: whichever the caller's dask configuration chooses.
Large values every task needs (rank tables, type codes) are shared with
:func:`broadcast`, which scatters them to the workers under a distributed client.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
from dask.base import compute as _dask_compute
from dask.delayed import Delayed, delayed

import actstore


def compute(*args: Any, **kwargs: Any) -> Any:
    """dask's compute; the scheduler is the caller's dask configuration unless given."""
    return _dask_compute(*args, **kwargs)  # type: ignore[no-untyped-call]


def tree(parts: list[Any], merge: Callable[[Any, Any], Any]) -> Any:
    """A balanced tree of delayed merges: the scheduler frees each pair once merged."""
    if not parts:
        raise ValueError("nothing to merge: the selection has no blocks")
    while len(parts) > 1:
        pairs = [delayed(merge)(a, b) for a, b in zip(parts[::2], parts[1::2], strict=False)]
        parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


def broadcast(value: Any) -> Any:
    """``value`` as one shared graph node, so dask neither hashes nor copies it per task.

    Under a ``dask.distributed`` client the value is scattered to every worker once;
    otherwise it is a named delayed leaf.
    """
    try:
        from distributed import default_client

        client = default_client()  # type: ignore[no-untyped-call]
    except (ImportError, ValueError):
        return delayed(value, name=f"shared-{uuid.uuid4().hex}", traverse=False)
    return client.scatter(value, broadcast=True, hash=False)


def blocks(acts: Any) -> list[Delayed]:
    """The blocks of a lazy ``store.acts`` view as delayed numpy arrays, in row order."""
    result: list[Delayed] = acts.data.to_delayed().ravel().tolist()
    return result


def block_bounds(acts: Any) -> np.ndarray:
    """Offsets of the blocks of ``acts`` within its selection: ``[0, n1, n1 + n2, ...]``."""
    return np.cumsum((0, *acts.data.chunks[0]))


def sentence_spans(sentence: np.ndarray, target_rows: int) -> list[slice]:
    """Cut a selection into runs of whole sentences of about ``target_rows`` rows.

    ``sentence`` holds the sentence id of each selected row, in row order. Analyses
    that look at a sentence's words together (distance reduction, sentence dynamics)
    need each sentence inside one block. Returns slices into the selection.
    """
    starts = np.flatnonzero(np.diff(sentence)) + 1
    spans: list[slice] = []
    lo = 0
    for cut in starts.tolist():
        if cut - lo >= target_rows:
            spans.append(slice(lo, cut))
            lo = cut
    if lo < sentence.size:
        spans.append(slice(lo, sentence.size))
    return spans


def sentence_bounds(sentence: np.ndarray) -> np.ndarray:
    """Start offsets of each sentence's run in a block (plus the block's end)."""
    return np.concatenate([[0], np.flatnonzero(np.diff(sentence)) + 1, [sentence.size]])


def span_blocks(
    store: actstore.Store, site: str, rows: np.ndarray, spans: list[slice]
) -> list[Any]:
    """One delayed array per span of ``rows`` (each reading only the chunks it touches)."""
    out = []
    for span in spans:
        parts = blocks(store.acts(site, rows[span]))
        out.append(parts[0] if len(parts) == 1 else delayed(np.concatenate)(parts))
    return out
