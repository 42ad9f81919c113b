"""Unit-level correlations with a token covariate, out of core (METHODS.md, "Correlations
with sequence and tree statistics", unit-level).

For every unit of a site, Pearson and Spearman correlation with a covariate such as
``depth``, ``position`` or ``sentence_length`` over the selected tokens, with two-sided
p-values and Benjamini-Hochberg adjusted q-values.

Pearson is one pass: each block yields its count, means, sums of squared deviations
and co-deviation (computed in float32 on centred sub-blocks, see
:func:`queries.moments.value_moments`),
merged with Chan et al.'s pairwise update in float64.

Spearman is Pearson on ranks, and a unit's ranks need all its values, so per-chunk
ranks would be wrong. Sites are stored in 16 bits (float16 or bfloat16), so a unit
takes at most 65,536 distinct values: a first pass counts, per unit, how often each
16-bit pattern occurs; the counts give every value's exact mid-rank (ties averaged,
-0 equal to +0); a second pass replaces values by those ranks and runs the Pearson
pass. Memory is units x 65,536 counts, independent of the number of rows. float32
sites are ranked by sorting groups of units that fit a memory budget.

Every pass runs on the query engine (``queries.engine``): per-block partial results
merged by a fixed tree, with block kernels that do not depend on the thread count
(``queries.moments``), so the numbers are the same bit for bit on the threaded or
process scheduler or a ``dask.distributed`` client.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

import actstore
from actstore.errors import SchemaError
from actstore.names import natural_key
from queries.engine import Selection, map_reduce
from queries.moments import (
    Moments,
    block_moments,
    merge_moments,
    pearson_from_moments,
    value_moments,
)
from queries.results import Column, TableSchema
from queries.select import not_null, numeric, token_column

RANK_BUDGET_BYTES = 256 << 20
_BINS = 1 << 16

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


def _order_keys(bits: np.ndarray) -> np.ndarray:
    """16-bit float patterns -> integers in the order of their values (-0 equals +0)."""
    bits = np.where(bits == 0x8000, 0, bits).astype(np.int64)
    return np.where(bits & 0x8000, 0xFFFF - bits, bits | 0x8000)


def _bits16(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.float16:
        return block.view(np.uint16)
    return (np.ascontiguousarray(block, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _histogram(block: np.ndarray) -> np.ndarray:
    """Per unit, how often each 16-bit key occurs in the block (int32: < 2**31 rows)."""
    keys = np.ascontiguousarray(_order_keys(_bits16(block)).T)
    out = np.empty((keys.shape[0], _BINS), np.int32)
    for u, column in enumerate(keys):
        out[u] = np.bincount(column, minlength=_BINS)
    return out


def _rank_table(counts: np.ndarray) -> np.ndarray:
    """Mid-rank (1-based, ties averaged) of every 16-bit key, per unit."""
    before = np.cumsum(counts, axis=1) - counts
    return np.asarray(before + (counts + 1) / 2.0)


def _ranked_moments(block: np.ndarray, y_rank: np.ndarray, table: np.ndarray) -> Moments:
    """Moments of (rank of x, rank of y); one unit at a time so its table stays in cache."""
    keys = np.ascontiguousarray(_order_keys(_bits16(block)).T)
    ranks = np.empty(keys.shape[::-1], np.float64)
    for u, column in enumerate(keys):
        ranks[:, u] = table[u, column]
    return block_moments(ranks, y_rank)


def unit_correlations(
    store: actstore.Store,
    site: str,
    covariate: str,
    where: str | None = None,
    *,
    spearman: bool = True,
) -> pd.DataFrame:
    """Pearson and Spearman correlation of every unit of ``site`` with a token column.

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
        Also compute the exact Spearman correlation (a second and third pass).

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
    selection = Selection(store, (site,), not_null(where, token_column(store, covariate)))
    y = numeric(selection.values([covariate]).column(covariate), covariate)
    if y.size < 3:
        raise SchemaError(f"only {y.size} tokens selected; correlations need at least 3")
    moments = map_reduce(value_moments, merge_moments, selection, per_row={"y": y}, dtype=None)
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
    """Exact Spearman per unit, by groups of units whose rank tables fit the budget."""
    y_rank = stats.rankdata(y)
    info = selection.store.site(selection.sites[0])
    sixteen_bit = info.dtype in ("float16", "bfloat16")
    per_unit = _BINS * 8 if sixteen_bit else len(y) * 8
    group = max(1, RANK_BUDGET_BYTES // per_unit)
    rho, p = np.empty(info.n_units), np.empty(info.n_units)
    for u in range(0, info.n_units, group):
        units = slice(u, u + group)
        if sixteen_bit:
            moments = _ranked_pass(selection, y_rank, units)
        else:  # float32: sort the group's columns in memory
            ranks = stats.rankdata(selection.acts().isel(unit=units).values, axis=0)
            moments = block_moments(ranks, y_rank)
        rho[units], p[units] = pearson_from_moments(moments)
    return rho, p


def _ranked_pass(selection: Selection, y_rank: np.ndarray, units: slice) -> Moments:
    """Pass 1: value counts per unit; pass 2: Pearson moments of (rank x, rank y)."""
    counts = map_reduce(_histogram, np.add, selection, dtype=None, units=units)
    table = _rank_table(counts)  # units x 65,536: shared, never hashed or copied per block
    moments: Moments = map_reduce(
        _ranked_moments,
        merge_moments,
        selection,
        per_row={"y_rank": y_rank},
        shared={"table": table},
        dtype=None,
        units=units,
    )
    return moments


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
