"""Which figure draws which saved result: one place, used by the verbs' ``--plot`` and by
``actstore report``, so a result looks the same in both.

A table result is known by its columns (the :class:`~queries.results.TableSchema` it
was checked against when it was made); a matrix result named by ``rdm`` provenance is
drawn as an RDM heatmap.

Examples
--------
>>> from queries.scores import PROBE
>>> schema_of(PROBE.names).analysis, schema_of(["a", "b"])
('probe', None)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from functools import cache
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

import actstore
from queries.plots import FigureContext
from queries.results import TableSchema

Draw = Callable[[pd.DataFrame, FigureContext, Mapping[str, Any]], Figure]


@cache
def _registry() -> tuple[tuple[TableSchema, Draw | None], ...]:
    """Every result schema of the analyses, with the figure its verb's ``--plot`` draws
    (None: the verb draws none)."""
    from queries.cka import CKA
    from queries.cka_commands import cka_figure
    from queries.correlate import CORRELATIONS
    from queries.dynamics import DYNAMICS
    from queries.keep import PREDICTIONS
    from queries.meaning_commands import wordsim_figure
    from queries.measures import BY_CATEGORY, TOKEN_MEASURES
    from queries.plots import correlation_figure, dynamics_figure, measures_figure, probe_figure
    from queries.retrieve import RETRIEVAL
    from queries.rsa import RSA_TABLE
    from queries.rsa_plots import rsa_figure
    from queries.scores import CONFUSION, PROBE, RANKING
    from queries.selectivity import TOP_TYPES
    from queries.twovtwo_store import ONE_VS_TWO, TWO_VS_TWO
    from queries.wordsim import WORDSIM

    return (
        (PROBE, lambda t, c, p: probe_figure(t, c)),
        (CORRELATIONS, lambda t, c, p: correlation_figure(t, c)),
        (DYNAMICS, lambda t, c, p: dynamics_figure(t, c)),
        (BY_CATEGORY, lambda t, c, p: measures_figure(t, c)),
        (RSA_TABLE, lambda t, c, p: rsa_figure(t, c, p.get("against"))),
        (CKA, lambda t, c, p: cka_figure(t, c)),
        (WORDSIM, lambda t, c, p: wordsim_figure(t)),
        *((schema, None) for schema in (CONFUSION, RANKING, PREDICTIONS, TOKEN_MEASURES)),
        *((schema, None) for schema in (TOP_TYPES, TWO_VS_TWO, ONE_VS_TWO, RETRIEVAL)),
    )


def schema_of(columns: Sequence[str]) -> TableSchema | None:
    """The analysis schema whose columns a table result has (its required columns and
    no others; None: not one of the analyses', such as a table saved from Python or an
    extractor's alignment)."""
    have = set(columns)
    for schema, _ in _registry():
        required = {c.name for c in schema.columns if c.required}
        if required <= have <= set(schema.names):
            return schema
    return None


def figure_sites(schema: TableSchema, table: pd.DataFrame, sites: Sequence[str]) -> list[str]:
    """The sites a figure's caption names: RSA's rows (``site_a``), the first site of
    measures (not its gate), else every site the result was made from."""
    if schema.analysis == "rsa":
        return sorted(set(table["site_a"]))
    return list(sites[:1]) if schema.analysis == "measures" else list(sites)


def draw(
    schema: TableSchema,
    table: pd.DataFrame,
    context: FigureContext,
    parameters: Mapping[str, Any],
) -> Figure | None:
    """The figure of a result table of ``schema`` (None: that analysis draws none), as
    its verb's ``--plot`` draws it; ``parameters`` are the verb's (from provenance).

    Examples
    --------
    >>> from queries.correlate import CORRELATIONS, unit_correlations
    >>> table = unit_correlations(store, "toy/layer.0", "depth")
    >>> context = FigureContext("toy", "en_ewt dev (en)", 698, None, ("toy/layer.0",))
    >>> draw(CORRELATIONS, table, context, {}).get_suptitle()
    'Correlation of each unit with depth, by site'
    """
    maker = dict(_registry()).get(schema)
    return None if maker is None else maker(table, context, parameters)


def saved_figure(
    store: actstore.Store,
    name: str,
    table: pd.DataFrame | None = None,
    contexts: MutableMapping[tuple[Any, ...], FigureContext] | None = None,
) -> Figure | None:
    """The figure of the store's saved result ``name``, drawn from the saved table (or,
    for an RDM, the saved matrix) and its provenance; None when its kind draws none.
    ``table``: the result's table when the caller has read it already; ``contexts``:
    captions already counted, by sites and filter (a report reuses them).

    Examples
    --------
    >>> from queries.correlate import CORRELATIONS, unit_correlations
    >>> from queries.results import TidyResult, provenance
    >>> table = unit_correlations(store, "toy/layer.0", "depth")
    >>> made = provenance(store, "correlate", ["toy/layer.0"], {"covariate": "depth"})
    >>> TidyResult(CORRELATIONS, table, made).save(store, "depth_r")
    >>> saved_figure(store, "depth_r").get_suptitle()
    'Correlation of each unit with depth, by site'
    """
    from queries.commands import figure_context

    info = store.result(name)
    made = info.provenance
    where, sites = made.get("where"), list(made.get("sites") or [])
    if info.kind == "matrix":
        return _rdm(store, name, made) if made.get("analysis") == "rdm" else None
    schema = schema_of(store.schema(name).names if table is None else list(table.columns))
    if schema is None or dict(_registry()).get(schema) is None or not sites:
        return None
    if any(site not in store.sites for site in sites):
        return None  # a site it was made from is gone: no caption to write
    if table is None:
        table = read_table(store, name)
    table = schema.check(table)
    shown = figure_sites(schema, table, sites)
    key = (tuple(shown), where)
    context = None if contexts is None else contexts.get(key)
    if context is None:
        context = figure_context(store, shown, where)
        if contexts is not None:
            contexts[key] = context
    return draw(schema, table, context, made.get("parameters") or {})


def read_table(store: actstore.Store, name: str) -> pd.DataFrame:
    """A table result whole, straight from its Parquet parts (SQL would open a DuckDB
    connection for it), strings as strings.

    Examples
    --------
    >>> read_table(store, "tokens")[["form", "depth"]].head(2).to_dict("records")
    [{'form': 'From', 'depth': 3}, {'form': 'the', 'depth': 3}]
    """
    table: pd.DataFrame = store.columns(store.schema(name).names, table=name).to_pandas()
    for column in table.select_dtypes("category"):
        table[column] = table[column].astype(object)
    return table


def _rdm(store: actstore.Store, name: str, made: Mapping[str, Any]) -> Figure:
    from queries.rsa_plots import rdm_figure

    matrix = store.matrix(name)
    settings = made.get("parameters") or {}
    site = ", ".join(made.get("sites") or [])
    labels = [str(label) for label in matrix.values["row"].to_numpy()]
    metric = str(settings.get("metric"))
    metric = {"correlation": "1 - Pearson r"}.get(metric, metric)
    return rdm_figure(
        labels, matrix.values.to_numpy(), "cluster", title=f"RDM of {site}",
        caption=f"conditions: {settings.get('by')}, seen {settings.get('min_count')}+ times"
        + (f" · where {made['where']}" if made.get("where") else ""), metric=metric,
    )  # fmt: skip
