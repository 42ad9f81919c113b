"""Representational dissimilarity matrices (METHODS.md, "Representational similarity").

An RDM holds the dissimilarity of every pair of condition vectors (k conditions x
units). Every metric is one matrix product (a GEMM) of prepared vectors:

- ``correlation``: 1 - Pearson r; each vector centred on its own mean and scaled to
  unit length, then 1 - Z Zᵀ (rsatoolbox's ``correlation``);
- ``cosine``: 1 - cosine similarity, the same without centring;
- ``euclidean`` and ``sqeuclidean``: from |a|² + |b|² - 2 a·b, after the mean vector
  over conditions is subtracted (the distances do not change, and the products lose
  fewer digits), clipped at 0. rsatoolbox's ``euclidean`` is the squared distance
  divided by the number of units.

The diagonal is exactly 0 and the matrix exactly symmetric. :func:`rdm` computes in
float64. For k too large for memory (k = 50,000 is 10 GB as float32),
:func:`rdm_to_store` writes the RDM block of rows by block of rows into a matrix
result of the store (float32), never holding more than one block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import actstore
from actstore.errors import ParameterError, SchemaError

METRICS = ("correlation", "cosine", "euclidean", "sqeuclidean")


def check_metric(metric: str) -> str:
    """``metric`` if it is one of :data:`METRICS`, else a :class:`ParameterError`.

    Examples
    --------
    >>> check_metric("manhattan")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: metric 'manhattan' is not known; metrics: correlation, ...
    """
    if metric not in METRICS:
        raise ParameterError("metric", f"{metric!r} is not known; metrics: {', '.join(METRICS)}")
    return metric


def prepare(vectors: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The vectors as the GEMM of ``metric`` takes them (float64), and for the Euclidean
    metrics their squared norms.

    A vector with no variance (``correlation``) or of length 0 (``cosine``) has no
    defined dissimilarity: its row and column are NaN.
    """
    check_metric(metric)
    x = np.asarray(vectors, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise SchemaError(
            f"an RDM needs a conditions x units matrix of 2 or more rows, got {x.shape}"
        )
    if not np.isfinite(x).all():
        raise SchemaError("condition vectors hold NaN or infinite values")
    if metric in ("euclidean", "sqeuclidean"):
        x = x - x.mean(axis=0)
        return x, np.einsum("ij,ij->i", x, x)
    if metric == "correlation":
        x = x - x.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        return x / norms[:, None], None


def _tile(
    z: np.ndarray, squares: np.ndarray | None, rows: slice, columns: slice, metric: str
) -> np.ndarray:
    """The RDM of prepared vectors ``z`` at ``rows`` x ``columns`` (float64)."""
    out: np.ndarray = z[rows] @ z[columns].T  # in place from here: a streamed tile is large
    if squares is None:
        np.subtract(1.0, out, out=out)
    else:
        out *= -2.0
        out += squares[rows, None]
        out += squares[None, columns]
        np.maximum(out, 0.0, out=out)
        if metric == "euclidean":
            np.sqrt(out, out=out)
    first, last = max(rows.start, columns.start), min(rows.stop, columns.stop)
    same = np.arange(first, last)
    out[same - rows.start, same - columns.start] = 0.0
    return out


def rdm(vectors: np.ndarray, metric: str = "correlation") -> np.ndarray:
    """The k x k RDM (float64) of k condition vectors (k x units).

    Examples
    --------
    >>> x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 4.0], [3.0, 2.0, 1.0]])
    >>> rdm(x).round(4).tolist()
    [[0.0, 0.0179, 2.0], [0.0179, 0.0, 1.9821], [2.0, 1.9821, 0.0]]
    >>> rdm(x, "euclidean")[0, 1]
    np.float64(1.0)
    """
    z, squares = prepare(vectors, metric)
    everything = slice(0, len(z))
    out = _tile(z, squares, everything, everything, metric)
    symmetric: np.ndarray = (out + out.T) / 2
    return symmetric  # exactly symmetric (the product's halves may round apart)


def upper(matrix: Any) -> np.ndarray:
    """The upper triangle of a square matrix without the diagonal, row by row: the order
    of scipy's ``pdist`` and ``squareform``.

    Examples
    --------
    >>> upper(np.arange(9.0).reshape(3, 3)).tolist()
    [1.0, 2.0, 5.0]
    """
    values = np.asarray(matrix)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise SchemaError(f"an RDM is a square matrix, got shape {values.shape}")
    return values[np.triu_indices(values.shape[0], 1)]


def rdm_to_store(
    store: actstore.Store,
    name: str,
    vectors: np.ndarray,
    metric: str = "correlation",
    *,
    labels: Sequence[str] | None = None,
    block_rows: int | None = None,
    provenance: Mapping[str, Any] | None = None,
    replace: bool = False,
) -> None:
    """Write the RDM of ``vectors`` as matrix result ``name`` (float32), block of rows by
    block of rows, for k too large to hold the RDM in memory.

    ``block_rows`` rows (default: about 128 MiB of float64, rounded to whole chunks of
    the matrix so no chunk is written twice) are computed as one product with all k
    vectors and written; memory is the vectors plus one block. The labels default to
    ``0 .. k-1``.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(5, 3))
    >>> rdm_to_store(store, "rdm_demo", x, block_rows=2)
    >>> stored = store.matrix("rdm_demo").values.values
    >>> bool(np.allclose(stored, rdm(x), atol=1e-6))
    True
    """
    z, squares = prepare(vectors, metric)
    k = len(z)
    names = [str(i) for i in range(k)] if labels is None else [str(s) for s in labels]
    if len(names) != k:
        raise SchemaError(f"{len(names)} labels for {k} condition vectors")
    made = {"analysis": "rdm", "metric": metric, "n_conditions": k, **(provenance or {})}
    writer = store.create_matrix(
        name, (k, k), rows=names, columns=names, dtype="float32", provenance=made,
        replace=replace,
    )  # fmt: skip
    step = block_rows or int(writer.array.chunks[0])
    if step < 1:
        raise ParameterError("block_rows", f"must be at least 1, got {step}")
    for top in range(0, k, step):
        rows = slice(top, min(top + step, k))
        for left in range(top, k, step):
            columns = slice(left, min(left + step, k))
            tile = _tile(z, squares, rows, columns, metric).astype(np.float32)
            writer.write(top, left, tile)
            if left != top:
                writer.write(left, top, tile.T)
    writer.commit()
