"""Unit-level correlations with a token covariate, out of core (METHODS.md, "Correlations
with sequence and tree statistics", unit-level).

For every unit of a site, Pearson and Spearman correlation with a covariate such as
``depth``, ``position`` or ``sentence_length`` over the selected tokens, with two-sided
p-values and Benjamini-Hochberg adjusted q-values.

Pearson is one pass: each block, streamed in cached pieces, yields its count, means,
sums of squared deviations and co-deviation (summed in float32 runs around a shift
near the mean, see :func:`queries.moments.value_moments`), merged with Chan et al.'s
pairwise update in float64.

Spearman is Pearson on ranks, and a unit's ranks need all its values, so per-block
ranks would be wrong. Sites are stored in 16 bits (float16 or bfloat16), so a unit
takes at most 65,536 distinct values: one pass counts, per unit, how often each 16-bit
pattern occurs and sums the covariate's centred ranks over the rows where it occurs
(:mod:`queries.kernels`). The counts give every value's exact mid-rank (ties averaged,
-0 equal to +0), and the rank covariance is the sum over patterns of (mid-rank -
centre) times those summed ranks, so a unit needs no second pass over its values. The
work is split by units, not by rows: each task reads every selected row and tabulates
its own group of units, in tables of 65,536 entries per unit (12 bytes each) that do
not grow with the number of rows. The groups are as large as :data:`RANK_BUDGET_BYTES`
allows for the tasks running at once, and at most a worker's share of the units, so
the selection is read once per group: twice on two workers for up to 1,170
units, 8 times for 4,096 units. Counts and half-integer rank sums are exact (below 90
million rows), so the result does not depend on the split. float32 sites are ranked
by sorting groups of units that fit the same budget.

Both run on the query engine (``queries.engine``) with block kernels that do
not depend on the thread count, so the numbers are the same bit for bit on the
threaded or process scheduler or a ``dask.distributed`` client.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from dask.delayed import delayed
from scipy import stats

import actstore
from actstore import progress
from actstore.errors import SchemaError
from actstore.names import natural_key
from actstore.reader import SiteReader
from queries import kernels
from queries.engine import Selection, broadcast, compute, map_reduce, n_workers
from queries.moments import (
    PIECE_BYTES,
    block_moments,
    merge_moments,
    pearson_from_moments,
    value_moments,
)
from queries.results import Column, TableSchema
from queries.select import each_site, numeric
from queries.selection import with_values

RANK_BUDGET_BYTES = 1 << 30  # the rank tables of the tasks that run at once
SUPER_ROWS = 1 << 16  # rows of keys tabulated per visit of a unit's table
STREAM_BLOCK_BYTES = 64 << 20  # float32 values per task of the streamed Pearson pass

CORRELATIONS = TableSchema(
    "correlate",
    (
        Column("site", "string"),
        Column("target", "string"),
        Column("unit", "int64"),
        Column("metric", "string"),
        Column("value", "float64"),
        Column("p", "float64"),
        Column("q", "float64"),
        Column("n", "int64"),
    ),
)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN stays NaN.

    Examples
    --------
    >>> benjamini_hochberg(np.array([0.01, 0.04, np.nan, 0.03]))
    array([0.03, 0.04,  nan, 0.04])
    """
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    values = p[ok]
    order = np.argsort(values)
    ranked = values[order] * len(values) / np.arange(1, len(values) + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(values)
    out[order] = np.minimum(adjusted, 1.0)
    q[ok] = out
    return q


@each_site
def unit_correlations(
    store: actstore.Store,
    site: str,
    covariate: str,
    where: str | None = None,
    *,
    spearman: bool = True,
) -> pd.DataFrame:
    """Pearson and Spearman correlation of every unit of ``site`` (a glob: of every site
    it matches) with a token column.

    Parameters
    ----------
    store
        An open store.
    site
        Site name (aligned to ``tokens``).
    covariate
        A numeric column of ``tokens``: ``depth``, ``position``, ``sentence_length`` ...
    where
        Optional SQL condition selecting tokens (rows with a NULL covariate are left out).
    spearman
        Also compute the exact Spearman correlation (one more pass per unit group).

    Returns
    -------
    pandas.DataFrame
        One row per unit and metric (:data:`CORRELATIONS`):
        ``site, target, unit, metric, value, p, q, n``.

    Examples
    --------
    >>> table = unit_correlations(store, "toy/layer.0", "depth", "upos <> 'PUNCT'")
    >>> table.shape, table["metric"].unique().tolist()
    ((32, 8), ['pearson', 'spearman'])
    """
    blocks = STREAM_BLOCK_BYTES // (4 * store.site(site).n_units)  # streamed: no block in memory
    selection, values = with_values(store, (site,), [covariate], where, block_rows=blocks)
    y = numeric(values.column(covariate), covariate)
    if y.size < 3:
        raise SchemaError(f"only {y.size} tokens selected; correlations need at least 3")
    moments = map_reduce(
        value_moments,
        merge_moments,
        selection,
        per_row={"y": y},
        stream=PIECE_BYTES,
        label=f"pearson {site}",
    )
    r, p = pearson_from_moments(moments)
    results = [("pearson", r, p)]
    if spearman:
        rho, p_s = _spearman(selection, y)
        results.append(("spearman", rho, p_s))
    n_units = store.site(site).n_units
    return CORRELATIONS.check(
        pd.concat(
            [
                pd.DataFrame(
                    {
                        "site": site,
                        "target": covariate,
                        "unit": np.arange(n_units),
                        "metric": metric,
                        "value": value,
                        "p": pval,
                        "q": benjamini_hochberg(pval),
                        "n": y.size,
                    }
                )
                for metric, value, pval in results
            ],
            ignore_index=True,
        )
    )


def _spearman(selection: Selection, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact Spearman per unit: tables of 16-bit patterns, or sorting for float32 sites."""
    y_rank = stats.rankdata(y)
    info = selection.store.site(selection.sites[0])
    n, centre = float(len(y)), (len(y) + 1) / 2
    syy = float(((y_rank - centre) ** 2).sum())
    if info.dtype in ("float16", "bfloat16"):
        sxx, sxy = _rank_pass(selection, y_rank - centre, centre)
        means = np.full(info.n_units, centre)
        return pearson_from_moments((n, means, centre, sxx, syy, sxy))
    group = max(1, RANK_BUDGET_BYTES // (len(y) * 8))
    rho, p = np.empty(info.n_units), np.empty(info.n_units)
    label = f"spearman {info.name}"
    with progress.bar(info.n_units, unit="units", desc=label) as shown:
        for u in range(0, info.n_units, group):  # float32: sort the group's columns in memory
            units = slice(u, u + group)
            ranks = stats.rankdata(selection.acts().isel(unit=units).values, axis=0)
            rho[units], p[units] = pearson_from_moments(block_moments(ranks, y_rank))
            shown.update(units.indices(info.n_units)[1] - u)
    return rho, p


def _rank_pass(
    selection: Selection, weight: np.ndarray, centre: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the rank sums of squares and co-deviations, tabulated by unit groups
    sized so the tables of the tasks running at once fit :data:`RANK_BUDGET_BYTES`."""
    info = selection.store.site(selection.sites[0])
    per_unit = kernels.N_KEYS * 12 + SUPER_ROWS * 2
    workers = n_workers()
    size = max(1, min(-(-info.n_units // workers), RANK_BUDGET_BYTES // (workers * per_unit)))
    (reader,) = selection.readers("uint16" if info.dtype == "bfloat16" else info.dtype)
    rows, weights = broadcast(selection.rows), broadcast(weight)
    tasks = [
        delayed(_rank_group)(reader, rows, weights, centre, u, min(u + size, info.n_units))
        for u in range(0, info.n_units, size)
    ]
    parts = compute(*tasks, label=f"spearman {info.name}", unit="unit groups")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _rank_group(
    reader: SiteReader,
    rows: np.ndarray,
    weight: np.ndarray,
    centre: float,
    first: int,
    last: int,
) -> np.ndarray:
    """One task: read every selected row (in pieces that stay in cache), tabulate units
    ``first:last`` from runs of :data:`SUPER_ROWS` rows turned unit-major, rank them."""
    keys = np.empty((last - first, min(SUPER_ROWS, rows.size)), np.uint16)
    counts = np.zeros((last - first, kernels.N_KEYS), np.int32)
    sums = np.zeros((last - first, kernels.N_KEYS))
    filled = origin = 0
    for piece in reader.pieces(rows, min(1 << 20, keys.shape[1] * reader.row_bytes)):
        if filled + len(piece) > keys.shape[1]:
            kernels.count_keys(keys, filled, weight[origin : origin + filled], counts, sums)
            origin, filled = origin + filled, 0
        kernels.transpose_units(piece.view(np.uint16), first, keys, filled)
        filled += len(piece)
    kernels.count_keys(keys, filled, weight[origin : origin + filled], counts, sums)
    counts[:, 0] += counts[:, 0x8000]  # -0 is +0
    sums[:, 0] += sums[:, 0x8000]
    counts[:, 0x8000] = 0
    out = np.empty((2, last - first))
    kernels.rank_sums(counts, sums, _ORDER, centre, out)
    return out


_ORDER = kernels.value_order()


def top_units(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` units of largest |value| per site and metric, strongest first.

    Examples
    --------
    >>> table = unit_correlations(store, "toy/layer.0", "depth", spearman=False)
    >>> top_units(table, 2)[["site", "metric"]].value_counts().tolist()
    [2]
    """
    ranked = table.assign(size=table["value"].abs()).sort_values("size", ascending=False)
    top = ranked.groupby(["site", "metric"], sort=False).head(k).drop(columns="size")
    return top.sort_values(["site", "metric", "value"], key=_order).reset_index(drop=True)


def _order(column: pd.Series) -> pd.Series:
    if column.name == "site":
        return column.map(lambda s: str(natural_key(s)))
    if column.name == "value":
        return -column.abs()
    return column
