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
from functools import partial

import numpy as np
import pandas as pd
from scipy import sparse

import actstore
from actstore.errors import ParameterError
from actstore.names import natural_key
from queries.engine import Selection, map_reduce
from queries.options import SelectivityOptions
from queries.results import Column, TableSchema
from queries.select import categorical_codes, check_columns, one_site, require_tokens

TOP_TYPES = TableSchema(
    "selectivity",
    (
        Column("site", "string"),
        Column("target", "string"),
        Column("unit", "int64"),
        Column("metric", "string"),
        Column("rank", "int64"),
        Column("type", "string"),
        Column("value", "float64"),
        Column("n", "int64"),
    ),
)


@dataclass(frozen=True)
class TypeMeans:
    """Per word type: its name, count, and mean activation of every unit."""

    site: str
    by: str
    types: list[str]
    counts: np.ndarray
    means: np.ndarray  # types x units


def _type_sums(x: np.ndarray, *, codes: np.ndarray, n_types: int) -> np.ndarray:
    keep = codes >= 0
    indicator = sparse.csr_matrix(
        (np.ones(int(keep.sum())), (codes[keep], np.flatnonzero(keep))),
        shape=(n_types, len(codes)),
    )
    return np.asarray(indicator @ np.asarray(x, np.float64))


def type_means(
    store: actstore.Store,
    site: str,
    by: str = SelectivityOptions.by,
    where: str | None = None,
    *,
    min_count: int = SelectivityOptions.min_count,
) -> TypeMeans:
    """Mean activation per word type of every unit of ``site``.

    Examples
    --------
    >>> means = type_means(store, "toy/layer.0", "upos", min_count=30)
    >>> means.types[:3], means.means.shape[1]
    (['ADJ', 'ADP', 'AUX'], 16)
    """
    site = one_site(store, site, "site")
    require_tokens(store, [site])
    check_columns(store, store.site(site).table, [by])
    selection = Selection(store, (site,), where)
    codes, names = categorical_codes(selection.values([by]).column(by))
    codes, frequent, counts = frequent_codes(codes, len(names), min_count, by, " in the selection")
    block_fn = partial(_type_sums, n_types=int(frequent.size))
    sums = map_reduce(
        block_fn, np.add, selection, per_row={"codes": codes}, label=f"type means {site}"
    )
    kept = counts[frequent]
    return TypeMeans(site, by, [names[i] for i in frequent], kept, sums / kept[:, None])


def frequent_codes(
    codes: np.ndarray, n_types: int, min_count: int, by: str, scope: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Type codes renumbered over the types seen at least ``min_count`` times (the rest,
    and NULL's -1, become -1); with those types' old codes and every type's count.

    Examples
    --------
    >>> codes, kept, counts = frequent_codes(np.array([0, 1, 1, -1, 2, 2]), 3, 2, "form")
    >>> codes.tolist(), kept.tolist(), counts.tolist()
    ([-1, 0, 0, -1, 1, 1], [1, 2], [1, 2, 2])
    """
    counts = np.bincount(codes[codes >= 0], minlength=n_types)
    frequent = np.flatnonzero(counts >= min_count)
    if frequent.size == 0:
        most = int(counts.max()) if counts.size else 0
        raise ParameterError(
            "min_count",
            f"{min_count} is too high: no {by} type occurs that often{scope} "
            f"(the most frequent occurs {most} times)",
        )
    remap = np.full(n_types + 1, -1, np.int64)
    remap[frequent] = np.arange(frequent.size)
    return remap[codes], frequent, counts  # -1 (NULL or rare) maps to the extra slot: -1


def top_types(means: TypeMeans, k: int = 10) -> pd.DataFrame:
    """Per unit, the ``k`` types of highest and of lowest mean activation.

    Returns :data:`TOP_TYPES`: ``site, target, unit, metric ("top" | "bottom"), rank,
    type, value, n``.

    Examples
    --------
    >>> table = top_types(type_means(store, "toy/layer.0", "upos", min_count=20), 2)
    >>> table.shape, table["metric"].unique().tolist()
    ((64, 8), ['top', 'bottom'])
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
    ordered = out.sort_values(["unit", "metric", "rank"], ascending=[True, False, True])
    return TOP_TYPES.check(ordered.reset_index(drop=True))


def most_selective_units(means: TypeMeans, k: int) -> list[int]:
    """The ``k`` units whose type means vary most (variance over tokens), most first.

    Examples
    --------
    >>> len(most_selective_units(type_means(store, "toy/layer.0", "upos"), 3))
    3
    """
    weights = means.counts / means.counts.sum()
    centred = means.means - weights @ means.means
    spread = weights @ (centred * centred)
    return [int(u) for u in np.argsort(-spread, kind="stable")[:k]]


def principal_components(vectors: np.ndarray, n: int = 3) -> np.ndarray:
    """Scores of ``vectors`` on their first ``n`` principal components (SVD of the centred
    matrix; each component's sign fixed so its largest loading is positive).

    Examples
    --------
    >>> principal_components(np.random.default_rng(0).normal(size=(10, 4)), 2).shape
    (10, 2)
    """
    centred = vectors - vectors.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    n = min(n, vt.shape[0])
    signs = np.sign(vt[np.arange(n), np.abs(vt[:n]).argmax(axis=1)])
    return np.asarray(u[:, :n] * s[:n] * signs)


def parse_units(units: str | None, n_units: int) -> list[int]:
    """Units named by text: comma-separated numbers, ``all``, or none (an empty list).

    Examples
    --------
    >>> parse_units("3,1", 16), parse_units("all", 3), parse_units(None, 3)
    ([3, 1], [0, 1, 2], [])
    >>> parse_units("16", 16)
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: units [16] are outside 0..15
    """
    if not units:
        return []
    if units == "all":
        return list(range(n_units))
    try:
        chosen = [int(u) for u in units.split(",") if u.strip()]
    except ValueError:
        raise ParameterError(
            "units", f"takes comma-separated unit numbers or 'all'; got {units!r}"
        ) from None
    bad = [u for u in chosen if not 0 <= u < n_units]
    if bad:
        raise ParameterError("units", f"{bad} are outside 0..{n_units - 1}")
    return chosen


def default_map_site(store: actstore.Store, site: str) -> str:
    """The site whose type means place words on a lexical map of ``site``: the first
    complete site of the same model (``provenance["model"]``) at ``hidden_state`` 0,
    else ``site`` itself. Read from provenance, never from names.

    Examples
    --------
    >>> default_map_site(store, "toy/layer.1")  # the toy sites declare no hidden_state
    'toy/layer.1'
    """
    info = store.site(site)
    model = info.provenance.get("model")
    if model is None:
        return site
    sites = store.sites
    for name in sorted(sites, key=natural_key):
        other = sites[name]
        if (
            other.status == "complete"
            and other.table == info.table
            and other.provenance.get("model") == model
            and other.provenance.get("hidden_state") == 0
        ):
            return name
    return site
