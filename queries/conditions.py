"""Conditions for representational similarity (METHODS.md, "Representational similarity").

A condition is a group of rows of a row table (a lemma, a lower-cased form, an image
label): ``by`` is a column or one SQL expression over the table the sites are aligned
to, ``where`` an SQL filter, and groups with fewer than ``min_count`` rows (and rows
whose ``by`` is NULL) are left out. A condition's vector at a site is the mean of its
rows there.

The means of many sites come from one pass over their rows (:func:`condition_means`):
the query engine (:mod:`queries.engine`) reads each block of every site once, and a
block's per-condition sums are a sparse condition-by-row indicator times the block in
float64 (a fixed-order, single-threaded product), merged by the engine's fixed tree,
so the means are the same bit for bit whatever the scheduler or thread count. Only
rows of kept conditions are read, and no site is ever in memory whole: a block is
about 16 MiB, the sums are conditions x units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
from scipy import sparse

import actstore
from actstore.errors import ParameterError, SchemaError
from actstore.sql import condition, quote_ident
from queries.engine import Selection, map_reduce
from queries.select import categorical_codes, resolve_sites, where_clause


@dataclass(frozen=True)
class Conditions:
    """Conditions (sorted labels), their row counts and every site's mean vectors.

    ``means[site]`` is conditions x units (float64), row ``i`` the mean of the rows of
    ``labels[i]``; ``table`` is the row table the sites are aligned to, and ``by``,
    ``where`` and ``min_count`` say how the conditions were made.
    """

    labels: list[str]
    counts: np.ndarray
    means: dict[str, np.ndarray]
    table: str
    by: str
    where: str | None
    min_count: int

    @property
    def sites(self) -> list[str]:
        """The sites, in the order they were asked for."""
        return list(self.means)

    def subset(self, labels: Sequence[str]) -> Conditions:
        """These conditions restricted to ``labels`` (each present), in that order.

        Examples
        --------
        >>> c = Conditions(["a", "b"], np.array([2, 3]), {"s": np.eye(2)}, "tokens", "x", None, 1)
        >>> c.subset(["b"]).means["s"].tolist(), c.subset(["b"]).counts.tolist()
        ([[0.0, 1.0]], [3])
        """
        place = {label: i for i, label in enumerate(self.labels)}
        missing = [label for label in labels if label not in place]
        if missing:
            raise SchemaError(f"conditions {missing[:5]} are not among the {len(place)} labels")
        index = np.array([place[label] for label in labels], np.int64)
        return Conditions(
            list(labels),
            self.counts[index],
            {site: m[index] for site, m in self.means.items()},
            self.table,
            self.by,
            self.where,
            self.min_count,
        )


def _group_sums(*blocks: np.ndarray, codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Per condition, the float64 sums of one block's rows of every site (rows with code
    -1 belong to no kept condition)."""
    keep = codes >= 0
    indicator = sparse.csr_matrix(
        (np.ones(int(keep.sum())), (codes[keep], np.flatnonzero(keep))),
        shape=(n_groups, len(codes)),
    )
    return [np.asarray(indicator @ np.asarray(x, np.float64)) for x in blocks]


def group_sums(
    store: actstore.Store, sites: Sequence[str], rows: np.ndarray, codes: np.ndarray, n_groups: int
) -> list[np.ndarray]:
    """Per site, the ``n_groups`` x units float64 sums of ``rows`` (sorted row ids) by
    group ``codes`` (-1: in no group), in one engine pass over every site at once, merged
    in a fixed order (bit-identical on any scheduler).

    Examples
    --------
    >>> (sums,) = group_sums(store, ["toy/layer.0"], np.arange(4), np.array([0, 1, 0, -1]), 2)
    >>> values = store.acts("toy/layer.0", np.arange(4), dtype="float64").values
    >>> bool(np.allclose(sums, [values[0] + values[2], values[1]]))
    True
    """
    selection = Selection(store, tuple(sites), row_ids=rows)
    block_fn = partial(_group_sums, n_groups=n_groups)
    sums: list[np.ndarray] = map_reduce(
        block_fn, _add, selection, per_row={"codes": codes}, label="condition means"
    )
    return sums


def _add(a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    return [x + y for x, y in zip(a, b, strict=True)]


def condition_labels(
    store: actstore.Store, table: str, by: str, where: str | None = None
) -> tuple[np.ndarray, pa.ChunkedArray]:
    """The selected rows of ``table`` and the text of ``by`` (one SQL expression) at each.

    Examples
    --------
    >>> rows, labels = condition_labels(store, "tokens", "lower(form)", "upos = 'DET'")
    >>> rows[:2].tolist(), labels.to_pylist()[:2]
    ([1, 4], ['the', 'this'])
    """
    expression = condition(by, "by")
    query = (
        f"SELECT row, CAST(({expression}) AS VARCHAR) AS label "
        f"FROM {quote_ident(table)}{where_clause(where)} ORDER BY row"
    )
    found: pa.Table = store.sql(query, arrow=True)
    return np.asarray(found.column("row").to_numpy(), np.int64), found.column("label")


def _grouped(
    store: actstore.Store,
    table: str,
    by: str,
    where: str | None,
    min_count: int,
    labels: Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """The selected rows, their condition codes (-1: left out), the kept labels and
    their counts."""
    if min_count < 1:
        raise ParameterError("min_count", f"must be at least 1, got {min_count}")
    rows, text = condition_labels(store, table, by, where)
    codes, names = categorical_codes(text)
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    keep = counts >= min_count
    if labels is not None:
        keep &= np.isin(np.array(names, dtype=object), np.array(list(labels), dtype=object))
    frequent = np.flatnonzero(keep)
    if frequent.size == 0:
        most = int(counts.max()) if counts.size else 0
        raise ParameterError(
            "min_count",
            f"{min_count} is too high: no condition of {by!r} over {table} has that many rows "
            f"in the selection (the largest has {most})"
            + ("" if labels is None else f", among the {len(labels)} labels asked for"),
        )
    remap = np.full(len(names) + 1, -1, np.int64)
    remap[frequent] = np.arange(frequent.size)
    return rows, remap[codes], [names[i] for i in frequent], counts[frequent]


def condition_counts(
    store: actstore.Store, table: str, by: str, *, where: str | None = None, min_count: int = 1
) -> tuple[list[str], np.ndarray]:
    """The conditions (sorted labels) of ``table`` and their row counts, from SQL alone
    (no site is read).

    Examples
    --------
    >>> labels, counts = condition_counts(store, "tokens", "upos", min_count=80)
    >>> labels, counts.tolist()
    (['NOUN', 'PUNCT'], [127, 84])
    """
    _, _, labels, counts = _grouped(store, table, by, where, min_count, None)
    return labels, counts


def condition_means(
    store: actstore.Store,
    sites: str | Sequence[str],
    by: str,
    *,
    where: str | None = None,
    min_count: int = 1,
    labels: Sequence[str] | None = None,
) -> Conditions:
    """The mean vector of every condition at every site, in one pass over the rows.

    Parameters
    ----------
    store
        An open store.
    sites
        Site names or globs (a string: comma-separated globs), all complete and aligned
        to the same row table.
    by
        A column or one SQL expression over that table defining the conditions:
        ``lemma``, ``lower(form)``, an image ``label``, a ``words`` table's ``word``.
    where
        SQL condition selecting rows (None: every row).
    min_count
        Leave out conditions with fewer rows.
    labels
        Keep only these conditions (those of them that occur ``min_count`` times).

    Returns
    -------
    Conditions
        Sorted labels, counts, and per site the conditions x units means (float64).

    Examples
    --------
    >>> c = condition_means(store, "toy/*", "upos", where="depth > 1", min_count=20)
    >>> c.labels[:3], c.means["toy/layer.0"].shape[1], int(c.counts.min()) >= 20
    (['ADJ', 'ADP', 'ADV'], 16, True)
    """
    if isinstance(sites, str):
        names = resolve_sites(store, sites)
    else:
        names = [n for s in sites for n in ([s] if s in store.sites else resolve_sites(store, s))]
    if not names:
        raise ParameterError("sites", "names no site")
    names = list(dict.fromkeys(names))
    table = store.site(names[0]).table
    for name in names[1:]:
        if store.site(name).table != table:
            raise SchemaError(
                f"sites {names[0]} and {name} are over different tables ({table}, "
                f"{store.site(name).table}); conditions are computed per table"
            )
    rows, codes, kept_labels, n = _grouped(store, table, by, where, min_count, labels)
    kept = codes >= 0
    sums = group_sums(store, names, rows[kept], codes[kept], len(kept_labels))
    means = {name: s / n[:, None] for name, s in zip(names, sums, strict=True)}
    return Conditions(kept_labels, n, means, table, by, where, min_count)
