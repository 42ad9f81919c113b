"""Representational similarity analysis between sites (METHODS.md, "Representational
similarity").

:func:`rsa_matrix` compares every site of one group with every site of another (or
every site with every other): the conditions of each side come from SQL over its row
table (:mod:`queries.conditions`), a side of MiniLM token sites grouped by ``lemma``
and a side of ``glove/vectors`` over the ``words`` table grouped by ``word`` meet on
the labels both have (the intersection, sorted); each site's RDM over those
conditions (:mod:`queries.rdm`) is compared with every other (:mod:`queries.rsa_stats`),
with a permutation p-value and a bootstrap interval if asked.

The condition labels are found by SQL first (no site is read), so an RDM saved before
(matrix result ``rdm_<site>_<digest>``, the digest of its settings) is reused when
asked again with the same settings: the same site (by its provenance digest), ``by``,
``where``, ``min_count``, metric and labels. Only sites without a saved RDM are read,
all sites of a side in one pass.

:func:`compare_stored` compares two stored RDMs too large for memory (k = 50,000 is
10 GB as float32; :func:`queries.rdm.rdm_to_store` writes them): Pearson is exact, one
streaming pass over the chunks on and above the diagonal, merging each chunk's moments
(Chan et al.) in float64. Spearman and Kendall need the ranks of all k(k-1)/2 pairs at
once: below :data:`RANK_BUDGET_BYTES` the triangles are read and compared exactly;
above, they are refused (no approximation is offered).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import actstore
from actstore.errors import ParameterError, SchemaError
from queries.conditions import condition_counts, condition_means
from queries.moments import Moments, block_moments, merge_moments
from queries.rdm import check_metric, rdm, upper
from queries.results import Column, TableSchema, jsonable, provenance, site_digest
from queries.rsa_stats import bootstrap_ci, check_method, compare, permutation_test
from queries.rsa_verbs import RSAOptions
from queries.select import resolve_sites

RANK_BUDGET_BYTES = 1 << 30  # stored triangles read whole for Spearman or Kendall
RSA_TABLE = TableSchema(
    "rsa",
    (
        Column("site_a", "string"),
        Column("site_b", "string"),
        Column("metric", "string"),
        Column("method", "string"),
        Column("value", "float64"),
        Column("p", "float64"),
        Column("ci_low", "float64"),
        Column("ci_high", "float64"),
        Column("n_conditions", "int64"),
        Column("permutations", "int64"),
        Column("seed", "int64"),
    ),
)


@dataclass(frozen=True)
class Side:
    """How the conditions of some sites are made: ``by`` over their table, ``where``,
    ``min_count``."""

    sites: tuple[str, ...]
    table: str
    by: str
    where: str | None
    min_count: int


def _names(store: actstore.Store, sites: str | Sequence[str]) -> list[str]:
    if isinstance(sites, str):
        return resolve_sites(store, sites)
    found = [n for s in sites for n in ([s] if s in store.sites else resolve_sites(store, s))]
    return list(dict.fromkeys(found))


def _sides(
    store: actstore.Store, names: Sequence[str], by: str, where: str | None, min_count: int
) -> list[Side]:
    """One side per table the sites are over (each table's conditions are its own)."""
    tables: dict[str, list[str]] = {}
    for name in names:
        tables.setdefault(store.site(name).table, []).append(name)
    return [Side(tuple(s), t, by, where, min_count) for t, s in tables.items()]


def rdm_name(site: str, settings: dict[str, Any]) -> str:
    """The matrix result an RDM of ``site`` is saved as: ``rdm_<site>_<digest>``.

    Examples
    --------
    >>> rdm_name("minilm/layer.3", {"metric": "correlation"})
    'rdm_minilm_layer_3_6fbed801a3'
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return f"rdm_{re.sub(r'[^A-Za-z0-9]+', '_', site).strip('_')}_{digest}"


def _settings(side: Side, metric: str, labels: Sequence[str]) -> dict[str, Any]:
    described = "\n".join(labels).encode("utf-8")
    return {
        "by": side.by,
        "where": side.where,
        "min_count": side.min_count,
        "metric": metric,
        "n_conditions": len(labels),
        "labels_sha256": hashlib.sha256(described).hexdigest(),
    }


def _saved_rdm(store: actstore.Store, site: str, name: str, settings: dict[str, Any]) -> Any:
    """The RDM saved as ``name`` if it was made with these settings from this site."""
    info = store.results.get(name)
    if info is None or info.kind != "matrix":
        return None
    made = info.provenance
    if made.get("parameters") != jsonable(settings):
        return None
    if made.get("site_digest") != site_digest(store, [site]):
        return None
    return np.asarray(store.matrix(name).values.values, np.float64)


def side_rdms(
    store: actstore.Store,
    side: Side,
    labels: Sequence[str],
    metric: str = "correlation",
    *,
    keep: bool | None = None,
) -> dict[str, np.ndarray]:
    """Every site's RDM over ``labels`` (conditions of ``side``): saved ones reused, the
    others from one pass over their rows, saved when ``keep`` (None: if the store is
    open for writing).

    Examples
    --------
    >>> side = Side(("toy/layer.0",), "tokens", "upos", None, 20)
    >>> rdms = side_rdms(store, side, ["ADJ", "NOUN", "VERB"])
    >>> rdms["toy/layer.0"].shape, sorted(store.results)
    ((3, 3), ['rdm_toy_layer_0_...'])
    """
    settings = _settings(side, check_metric(metric), labels)
    keep = store.mode == "a" if keep is None else keep
    found: dict[str, np.ndarray] = {}
    for site in side.sites:
        saved = _saved_rdm(store, site, rdm_name(site, settings), settings)
        if saved is not None:
            found[site] = saved
    pending = [s for s in side.sites if s not in found]
    if pending:
        means = condition_means(store, pending, side.by, where=side.where,
                                min_count=side.min_count, labels=labels)  # fmt: skip
        if means.labels != list(labels):
            raise SchemaError(f"conditions {sorted(set(labels) - set(means.labels))[:5]} are "
                              f"missing from {side.table}")  # fmt: skip
        for site in pending:
            found[site] = rdm(means.means[site], metric)
            if keep:
                made = provenance(store, "rdm", [site], settings, side.where)
                store.write_matrix(rdm_name(site, settings), found[site], rows=list(labels),
                                   columns=list(labels), provenance=made, replace=True)  # fmt: skip
    return {site: found[site] for site in side.sites}


def rsa_matrix(
    store: actstore.Store,
    sites_a: str | Sequence[str],
    sites_b: str | Sequence[str] | None = None,
    *,
    by: str = RSAOptions.by,
    by_b: str | None = None,
    where: str | None = None,
    where_b: str | None = None,
    min_count: int = RSAOptions.min_count,
    min_count_b: int | None = None,
    metric: str = RSAOptions.metric,
    method: str = RSAOptions.method,
    permutations: int = RSAOptions.permutations,
    bootstrap: int = RSAOptions.bootstrap,
    seed: int = RSAOptions.seed,
    keep_rdms: bool | None = None,
) -> pd.DataFrame:
    """RSA of every site of ``sites_a`` against every site of ``sites_b`` (None: of
    ``sites_a``, a symmetric site x site table with 1 on the diagonal).

    Parameters
    ----------
    store
        An open store.
    sites_a, sites_b
        Site names or globs; sites over different tables are allowed (each table's
        conditions are its own; all meet on the labels they share).
    by, where, min_count
        Conditions of the ``sites_a`` side: a column or SQL expression of their table,
        a filter, the fewest rows a condition needs.
    by_b, where_b, min_count_b
        The same for ``sites_b`` (default: ``by``; ``where`` and ``min_count`` where
        the tables are the same, else none and 1).
    metric
        RDM dissimilarity: ``correlation`` (1 - Pearson), ``cosine``, ``euclidean``,
        ``sqeuclidean``.
    method
        RDM comparison: ``spearman``, ``pearson``, ``kendall`` (τ-a).
    permutations, bootstrap, seed
        Permutations of the conditions for p (0: none, p is NaN), bootstrap samples of
        the conditions for a 95% interval (0: none), and their seed.
    keep_rdms
        Save the RDMs as matrix results (None: if the store is open for writing).

    Returns
    -------
    pandas.DataFrame
        :data:`RSA_TABLE`: ``site_a, site_b, metric, method, value, p, ci_low,
        ci_high, n_conditions, permutations, seed``.

    Examples
    --------
    >>> table = rsa_matrix(store, "toy/*", by="upos", min_count=20, permutations=99)
    >>> table[["site_a", "site_b", "n_conditions"]].values.tolist()[:2]
    [['toy/layer.0', 'toy/layer.0', 11], ['toy/layer.0', 'toy/layer.1', 11]]
    >>> float(table["value"].iloc[0]), len(table)
    (1.0, 4)
    """
    check_metric(metric)
    check_method(method)
    names_a = _names(store, sites_a)
    names_b = None if sites_b is None else _names(store, sites_b)
    sides_a = _sides(store, names_a, by, where, min_count)
    sides_b = []
    first = store.site(names_a[0]).table
    for other in _sides(store, names_b or [], by_b or by, None, 1):
        same = other.table == first
        chosen = where_b if where_b is not None else (where if same else None)
        count = min_count_b if min_count_b is not None else (min_count if same else 1)
        sides_b.append(Side(other.sites, other.table, other.by, chosen, count))
    common: set[str] | None = None
    for side in sides_a + sides_b:
        found = set(condition_counts(store, side.table, side.by, where=side.where,
                                     min_count=side.min_count)[0])  # fmt: skip
        common = found if common is None else common & found
    labels = sorted(common or ())
    if len(labels) < 3:
        raise SchemaError(
            f"{len(labels)} conditions are common to every side "
            f"({', '.join(labels[:5]) or 'none'}); an RSA needs at least 3: "
            "lower min_count, or check by and against_by"
        )
    rdms_a: dict[str, np.ndarray] = {}
    rdms_b: dict[str, np.ndarray] = {}
    for made, group in ((rdms_a, sides_a), (rdms_b, sides_b)):
        for side in group:
            made.update(side_rdms(store, side, labels, metric, keep=keep_rdms))
    pairs = _pairs(names_a, names_b)
    rows = []
    done: dict[tuple[str, str], dict[str, Any]] = {}
    for a, b in pairs:
        if names_b is None and (b, a) in done:
            rows.append({**done[(b, a)], "site_a": a, "site_b": b})
            continue
        matrix_b = rdms_a[b] if names_b is None else rdms_b[b]
        row = _one(rdms_a[a], matrix_b, method, permutations, bootstrap, seed)
        row.update(site_a=a, site_b=b, metric=metric, method=method, n_conditions=len(labels))
        done[(a, b)] = row
        rows.append(row)
    return RSA_TABLE.frame(rows)


def _pairs(names_a: list[str], names_b: list[str] | None) -> list[tuple[str, str]]:
    return [(a, b) for a in names_a for b in (names_a if names_b is None else names_b)]


def _one(
    a: np.ndarray, b: np.ndarray, method: str, permutations: int, bootstrap: int, seed: int
) -> dict[str, Any]:
    """One comparison: value, p (NaN without permutations), interval (NaN without
    bootstrap)."""
    if permutations:
        value, p, _ = permutation_test(a, b, method, permutations, seed)
    else:
        value, p = compare(upper(a), upper(b), method), float("nan")
    low = high = float("nan")
    if bootstrap:
        low, high, _ = bootstrap_ci(a, b, method, bootstrap, seed)
    return {"value": value, "p": p, "ci_low": low, "ci_high": high,
            "permutations": permutations, "seed": seed}  # fmt: skip


def compare_stored(
    store: actstore.Store, name_a: str, name_b: str, method: str = "pearson"
) -> float:
    """Compare two RDMs saved as matrix results (with the same labels) without holding
    them in memory: Pearson in one streaming pass over the chunks on and above the
    diagonal; Spearman and Kendall exactly when both triangles fit
    :data:`RANK_BUDGET_BYTES`, refused otherwise.

    Examples
    --------
    >>> from queries.rdm import rdm_to_store
    >>> x = np.random.default_rng(0).normal(size=(30, 4))
    >>> rdm_to_store(store, "rdm_x", x, block_rows=8)
    >>> rdm_to_store(store, "rdm_y", x + 0.5 * np.sin(x), block_rows=8)
    >>> streamed = compare_stored(store, "rdm_x", "rdm_y")
    >>> from queries.rdm import rdm
    >>> bool(abs(streamed - compare(upper(rdm(x)), upper(rdm(x + 0.5 * np.sin(x))),
    ...                             "pearson")) < 1e-6)
    True
    """
    check_method(method)
    a, b = store.matrix(name_a), store.matrix(name_b)
    k = a.values.shape[0]
    if a.values.shape != (k, k) or b.values.shape != (k, k):
        raise SchemaError(f"RDMs {name_a} {a.values.shape} and {name_b} {b.values.shape} "
                          "must be square and of the same size")  # fmt: skip
    if not a.rows.column("label").equals(b.rows.column("label")):
        raise SchemaError(f"RDMs {name_a} and {name_b} have different condition labels")
    data_a, data_b = a.values.data, b.values.data
    if method != "pearson":
        n_pairs = k * (k - 1) // 2
        if 4 * 8 * n_pairs > RANK_BUDGET_BYTES:
            raise ParameterError(
                "method",
                f"{method} of stored RDMs needs the ranks of all {n_pairs:,} pairs at once, "
                f"more than {RANK_BUDGET_BYTES >> 20} MiB; compare them with pearson "
                "(exact, streamed), or compare RDMs of fewer conditions",
            )
        return compare(upper(data_a.compute()), upper(data_b.compute()), method)
    moments: Moments | None = None
    edges = np.cumsum((0, *data_a.chunks[0]))
    for top, bottom in itertools.pairwise(edges):
        for left, right in itertools.pairwise(edges):
            if right <= top:
                continue
            tile_a = np.asarray(data_a[top:bottom, left:right].compute(scheduler="sync"))
            tile_b = np.asarray(data_b[top:bottom, left:right].compute(scheduler="sync"))
            if left == top:
                inside = np.triu_indices(bottom - top, 1)
                values_a, values_b = tile_a[inside], tile_b[inside]
            else:
                values_a, values_b = tile_a.ravel(), tile_b.ravel()
            present = ~(np.isnan(values_a) | np.isnan(values_b))
            part = block_moments(values_a[present][:, None], values_b[present])
            moments = part if moments is None else merge_moments(moments, part)
    if moments is None:
        raise SchemaError(f"RDMs {name_a} and {name_b} have no pairs to compare")
    _, _, _, saa, sbb, sab = moments
    return float(sab[0] / np.sqrt(saa[0] * sbb))
