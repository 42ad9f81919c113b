"""Lexical selectivity of units (METHODS.md, "Lexical selectivity of a unit").

The mean activation of every unit per word type (``form``, ``lemma`` or any token
column) with the type's count, in one pass: each block multiplies a sparse
type-by-row indicator with its rows, and the per-type sums are merged by a tree.
Types seen fewer than ``min_count`` times are left out (their means are noise, and
the sums stay types x units, whatever the corpus size).

The lexical map follows the LSTM probing paper: the type-mean vectors of a site are
projected on their first principal components (x, y from the first two, colour from
the first three as RGB), and each word is drawn with a size proportional to
log(1 + frequency) x |mean activation| of the chosen unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from dask.delayed import delayed
from scipy import sparse

import actstore
from actstore.errors import SchemaError
from queries.reduce import block_bounds, blocks, compute, tree
from queries.select import categorical_codes, token_column, where_clause


@dataclass(frozen=True)
class TypeMeans:
    """Per word type: its name, count, and mean activation of every unit."""

    site: str
    by: str
    types: list[str]
    counts: np.ndarray
    means: np.ndarray  # types x units


def _type_sums(x: np.ndarray, codes: np.ndarray, n_types: int) -> np.ndarray:
    keep = codes >= 0
    indicator = sparse.csr_matrix(
        (np.ones(int(keep.sum())), (codes[keep], np.flatnonzero(keep))),
        shape=(n_types, len(codes)),
    )
    return np.asarray(indicator @ np.asarray(x, np.float64))


def type_means(
    store: actstore.Store,
    site: str,
    by: str = "form",
    where: str | None = None,
    *,
    min_count: int = 5,
) -> TypeMeans:
    """Mean activation per word type of every unit of ``site``.

    Examples
    --------
    >>> means = type_means(store, "minilm/layer.1", "lemma", "upos = 'VERB'")  # doctest: +SKIP
    """
    quoted = token_column(store, by)
    table = store.sql(
        f"SELECT row, {quoted} AS t FROM tokens{where_clause(where)} ORDER BY row", arrow=True
    )
    rows = table.column("row").to_numpy().astype(np.int64)
    codes, names = categorical_codes(table.column("t"))
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    frequent = np.flatnonzero(counts >= min_count)
    if frequent.size == 0:
        raise SchemaError(
            f"no {by} type occurs {min_count} times or more in the selection; lower --min-count"
        )
    remap = np.full(len(names) + 1, -1, np.int64)
    remap[frequent] = np.arange(frequent.size)
    codes = remap[codes]  # -1 (NULL or rare) maps to the extra slot: -1
    acts = store.acts(site, rows)
    bounds = block_bounds(acts)
    parts = [
        delayed(_type_sums)(x, codes[a:b], frequent.size)
        for x, a, b in zip(blocks(acts), bounds[:-1], bounds[1:], strict=True)
    ]
    sums = compute(tree(parts, np.add))[0]
    kept = counts[frequent]
    return TypeMeans(site, by, [names[i] for i in frequent], kept, sums / kept[:, None])


def top_types(means: TypeMeans, k: int = 10) -> pd.DataFrame:
    """Per unit, the ``k`` types of highest and of lowest mean activation.

    Returns ``site, target, unit, metric ("top" | "bottom"), rank, type, value, n``.
    """
    k = min(k, len(means.types)) if k > 0 else len(means.types)
    order = np.argsort(-means.means, axis=0, kind="stable")
    n_units = means.means.shape[1]
    frames = []
    for metric, picked in (("top", order[:k]), ("bottom", order[::-1][:k])):
        units = np.tile(np.arange(n_units), k)
        flat = picked.ravel()
        frames.append(
            pd.DataFrame(
                {
                    "site": means.site,
                    "target": means.by,
                    "unit": units,
                    "metric": metric,
                    "rank": np.repeat(np.arange(1, k + 1), n_units),
                    "type": np.asarray(means.types, dtype=object)[flat],
                    "value": means.means[flat, units],
                    "n": means.counts[flat],
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["unit", "metric", "rank"], ascending=[True, False, True]).reset_index(
        drop=True
    )


def most_selective_units(means: TypeMeans, k: int) -> list[int]:
    """The ``k`` units whose type means vary most (variance over tokens), most first."""
    weights = means.counts / means.counts.sum()
    centred = means.means - weights @ means.means
    spread = weights @ (centred * centred)
    return [int(u) for u in np.argsort(-spread, kind="stable")[:k]]


def principal_components(vectors: np.ndarray, n: int = 3) -> np.ndarray:
    """Scores of ``vectors`` on their first ``n`` principal components (SVD of the centred
    matrix; each component's sign fixed so its largest loading is positive)."""
    centred = vectors - vectors.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    n = min(n, vt.shape[0])
    signs = np.sign(vt[np.arange(n), np.abs(vt[:n]).argmax(axis=1)])
    return np.asarray(u[:, :n] * s[:n] * signs)
