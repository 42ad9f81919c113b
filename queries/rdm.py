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

Only the upper triangle of the product is computed (BLAS ``syrk``: half the flops of a
GEMM, no symmetrising copy). The diagonal is exactly 0 and the matrix exactly
symmetric. The vectors are prepared in float64 either way; ``precision`` is that of
the product and the result:

- :func:`rdm` defaults to ``float64``: the matrix is a result in its own right (saved,
  reused, plotted) and matches scipy's ``pdist`` to 1e-10;
- :func:`rdm_upper` (the triangle alone, for a comparison) defaults to ``float32``:
  half the time and memory of the product, entries within ~1e-7 of float64 relative
  to the vectors' norms, which moves a Spearman or Pearson comparison of two RDMs by
  ~1e-9, far inside the 1e-6 the tests hold it to against rsatoolbox. For Euclidean
  metrics float32 loses the small distances of near-duplicate conditions (|a|² +
  |b|² - 2 a·b cancels): ask ``precision="float64"`` where those matter.

For k too large for memory (k = 50,000 is 10 GB as float32), :func:`rdm_to_store`
writes the RDM block of rows by block of rows into a matrix result of the store
(float32), never holding more than one block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.linalg import blas

import actstore
from actstore.errors import ParameterError, SchemaError

METRICS = ("correlation", "cosine", "euclidean", "sqeuclidean")
PRECISIONS = ("float32", "float64")
PREPARE_ROWS = 128  # vectors prepared in float64 this many at a time (4 MiB at 4,096 units)
MIRROR_ROWS = 512  # rows of the upper triangle copied below the diagonal at a time


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


def check_precision(precision: str) -> np.dtype[Any]:
    """The dtype of ``precision`` if it is one of :data:`PRECISIONS`, else a
    :class:`ParameterError`.

    Examples
    --------
    >>> check_precision("float16")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: precision 'float16' is not known; precisions: float32, float64
    """
    if precision not in PRECISIONS:
        raise ParameterError(
            "precision", f"{precision!r} is not known; precisions: {', '.join(PRECISIONS)}"
        )
    return np.dtype(precision)


def prepare(
    vectors: np.ndarray, metric: str, precision: str = "float64"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The vectors as the GEMM of ``metric`` takes them, and for the Euclidean metrics
    their squared norms (float64, of the vectors as returned).

    They are computed in float64 ``PREPARE_ROWS`` rows at a time and returned in
    ``precision``. A vector with no variance (``correlation``) or of length 0
    (``cosine``) has no defined dissimilarity: its row and column are NaN.
    """
    check_metric(metric)
    dtype = check_precision(precision)
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] < 2:
        raise SchemaError(
            f"an RDM needs a conditions x units matrix of 2 or more rows, got {x.shape}"
        )
    if not np.isfinite(x).all():
        raise SchemaError("condition vectors hold NaN or infinite values")
    euclidean = metric in ("euclidean", "sqeuclidean")
    centre = x.mean(axis=0, dtype=np.float64) if euclidean else None
    out = np.empty(x.shape, dtype)
    squares = np.empty(len(x)) if euclidean else None
    for top in range(0, len(x), PREPARE_ROWS):
        rows = slice(top, top + PREPARE_ROWS)
        part = np.array(x[rows], np.float64)
        if centre is not None:
            part -= centre
        else:
            if metric == "correlation":
                part -= part.mean(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                part /= np.sqrt(np.einsum("ij,ij->i", part, part))[:, None]
        out[rows] = part
        if squares is not None:
            exact = out[rows].astype(np.float64)  # the norms of the vectors as multiplied
            squares[rows] = np.einsum("ij,ij->i", exact, exact)
    return out, squares


def _gram_upper(z: np.ndarray) -> np.ndarray:
    """z zᵀ (k x k, C order, z's dtype) with only the upper triangle and diagonal
    filled: one BLAS ``syrk``."""
    syrk = blas.get_blas_funcs("syrk", (z,))
    # z (C order) is zᵀ in Fortran order, passed without a copy; the product's lower
    # triangle in Fortran order is the upper triangle of its C-order transpose.
    product: np.ndarray = syrk(1.0, z.T, trans=1, lower=1).T
    return product


def _dissimilarities(
    similarities: np.ndarray, i: int, squares: np.ndarray | None, metric: str
) -> None:
    """Turn row ``i``'s products with the conditions after it into dissimilarities, in
    place."""
    if squares is None:
        np.subtract(1.0, similarities, out=similarities)
        return
    similarities *= -2.0
    similarities += squares[i]
    similarities += squares[i + 1 : i + 1 + similarities.size]
    np.maximum(similarities, 0.0, out=similarities)
    if metric == "euclidean":
        np.sqrt(similarities, out=similarities)


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


def rdm(vectors: np.ndarray, metric: str = "correlation", precision: str = "float64") -> np.ndarray:
    """The k x k RDM of k condition vectors (k x units), in ``precision`` (float64 by
    default: see the module's notes).

    Examples
    --------
    >>> x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 4.0], [3.0, 2.0, 1.0]])
    >>> rdm(x).round(4).tolist()
    [[0.0, 0.0179, 2.0], [0.0179, 0.0, 1.9821], [2.0, 1.9821, 0.0]]
    >>> rdm(x, "euclidean")[0, 1]
    np.float64(1.0)
    >>> rdm(x, precision="float32").dtype
    dtype('float32')
    """
    z, squares = prepare(vectors, metric, precision)
    out = _gram_upper(z)
    del z
    k = len(out)
    for i in range(k - 1):
        _dissimilarities(out[i, i + 1 :], i, squares, metric)
    for top in range(0, k, MIRROR_ROWS):
        end = min(top + MIRROR_ROWS, k)
        corner = np.triu(out[top:end, top:end], 1)
        out[top:end, top:end] = corner + corner.T  # the diagonal exactly 0
        out[end:, top:end] = out[top:end, end:].T
    return out


def rdm_upper(
    vectors: np.ndarray, metric: str = "correlation", precision: str = "float32"
) -> np.ndarray:
    """The upper triangle of the RDM of k condition vectors, as :func:`upper` gives it,
    without the k x k matrix outliving the call: what a comparison needs. In
    ``precision`` (float32 by default: see the module's notes).

    Examples
    --------
    >>> x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 4.0], [3.0, 2.0, 1.0]])
    >>> rdm_upper(x).astype(np.float64).round(4).tolist()
    [0.0179, 2.0, 1.9821]
    >>> bool(np.array_equal(rdm_upper(x, "cosine", "float64"), upper(rdm(x, "cosine"))))
    True
    """
    z, squares = prepare(vectors, metric, precision)
    products = _gram_upper(z)
    del z
    k = len(products)
    values = upper(products)
    del products  # only the triangle is kept
    if squares is None:
        np.subtract(1.0, values, out=values)
        return values
    done = 0
    for i in range(k - 1):
        _dissimilarities(values[done : done + k - 1 - i], i, squares, metric)
        done += k - 1 - i
    return values


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
    k = values.shape[0]
    out = np.empty(k * (k - 1) // 2, values.dtype)
    done = 0
    for i in range(k - 1):  # row by row: no k(k-1)/2 index arrays
        out[done : done + k - 1 - i] = values[i, i + 1 :]
        done += k - 1 - i
    return out


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
