"""What the analysis verbs do (declared in :mod:`queries.verbs`).

Each function takes one object per parameter class of its verb, in order; prints the
table as :class:`~actstore.output.Output` asks; saves it as a typed result and draws
it as :class:`~actstore.output.Keep` asks; and returns the full table.

Examples
--------
>>> store.close()  # the verb opens the store itself
>>> table = correlate(SitesParam(store_path, "toy/*"), CorrelateOptions("depth", top=1),
...                   Output(quiet=True), Keep(save="depth_corr"))
>>> len(table)
64
>>> with actstore.open(store_path) as saved:
...     saved.results["depth_corr"].provenance["analysis"]
'correlate'
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import actstore
from actstore.errors import ParameterError
from actstore.output import Keep, Output, check_output_path, render, show
from queries.options import (
    CorrelateOptions,
    DynamicsOptions,
    MeasuresOptions,
    ProbeOptions,
    SelectivityOptions,
    SitesParam,
)
from queries.results import TableSchema, TidyResult, provenance
from queries.select import one_site, require_tokens, resolve_sites

if TYPE_CHECKING:
    from queries.plots import FigureContext

log = logging.getLogger("actstore")


@contextlib.contextmanager
def _open(
    path: str | Path, keep: Keep, out: Output, *, write: bool = False
) -> Iterator[tuple[actstore.Store, list[str]]]:
    """The store, opened for writing only if the verb saves something, and a list of
    what the verb wrote, said on stderr (unless quiet) once it is committed; everything
    a writing verb saves is one transaction, so a verb that fails commits nothing."""
    if keep.plot is not None:
        from queries.plots import plot_format

        plot_format(check_output_path(keep.plot, "plot"))  # fail before the work, not after
    writing = write or bool(keep.save)
    store = actstore.open(path, mode="a" if writing else "r")
    wrote: list[str] = []
    with store, store.transaction() if writing else contextlib.nullcontext():
        yield store, wrote
    if not out.quiet:
        sys.stderr.writelines(f"{line}\n" for line in wrote)


def _saved(wrote: list[str], result: TidyResult, name: str, store: actstore.Store) -> None:
    wrote.append(f"saved result {name} ({len(result.frame):,} rows) in {store.location}")


def _finish(
    store: actstore.Store,
    wrote: list[str],
    result: TidyResult,
    out: Output,
    keep: Keep,
    figure: Callable[[], Any],
    shown: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Save the full table, draw the plot, print ``shown`` (default: the table)."""
    if keep.save:
        result.save(store, keep.save, replace=keep.replace)
        _saved(wrote, result, keep.save, store)
    if keep.plot is not None:
        from queries.plots import save

        save(figure(), keep.plot)
        wrote.append(f"wrote plot {keep.plot}")
    show(result.frame if shown is None else shown, out)
    return result.frame


def figure_context(store: actstore.Store, sites: Sequence[str], where: str | None) -> FigureContext:
    """The :class:`~queries.plots.FigureContext` of ``sites``: their models (from
    provenance), the corpora and the number of words of their table that ``where``
    selects.

    Examples
    --------
    >>> store.close()
    >>> with actstore.open(store_path) as reader:
    ...     context = figure_context(reader, ["toy/layer.0"], "upos = 'NOUN'")
    >>> context.model, context.corpus, context.n
    ('toy', 'en_ewt dev (en)', 127)
    """
    from actstore.names import quote_ident
    from queries.plots import FigureContext
    from queries.select import where_clause

    models = [str(store.site(s).provenance.get("model") or s.split("/")[0]) for s in sites]
    table = store.site(sites[0]).table
    named = [c for c in ("corpus", "split", "lang") if c in store.schema(table).names]
    keys = "".join(f"{c}::VARCHAR AS {c}, " for c in named)
    query = f"SELECT {keys}count(*) AS n FROM {quote_ident(table)}{where_clause(where)}"
    found = store.sql(query + (" GROUP BY ALL ORDER BY ALL" if named else ""))
    records = found.to_dict("records")
    corpora = [" ".join(str(r[c]) for c in named if c != "lang") for r in records]
    if "lang" in named:
        corpora = [f"{c} ({r['lang']})" for c, r in zip(corpora, records, strict=True)]
    corpus = ", ".join(corpora) if named else f"table {table}"
    model = ", ".join(dict.fromkeys(models))
    return FigureContext(model, corpus, int(found["n"].sum()), where, tuple(sites))


def _result(
    store: actstore.Store,
    schema: TableSchema,
    frames: Sequence[pd.DataFrame],
    sites: Sequence[str],
    options: Any,
    where: str | None,
) -> TidyResult:
    table = schema.check(pd.concat(frames, ignore_index=True))
    return TidyResult(schema, table, provenance(store, schema.analysis, sites, options, where))


def probe(sites: SitesParam, options: ProbeOptions, out: Output, keep: Keep) -> pd.DataFrame:
    """``actstore probe``: softmax probes of ``options.target`` on every matching site
    (cross-validated with ``--folds``); with ``--save NAME`` the confusion counts are
    saved too, as ``NAME_confusion``, and, for one split, the probe's weights as
    ``NAME_weights`` (which ``--apply`` reuses) and its units ranked by weight mass as
    ``NAME_units`` (per site: ``NAME_weights_<site>`` ... when there are several)."""
    from queries.keep import PREDICTIONS, apply_probe, load_probe, save_probe
    from queries.plots import probe_figure
    from queries.probe import prepare_folds, run_probe, unit_ranking
    from queries.scores import CONFUSION, PROBE, RANKING

    with _open(sites.store, keep, out) as (store, wrote):
        names = resolve_sites(store, sites.sites)
        require_tokens(store, names)
        if options.apply is not None:
            if keep.plot is not None:
                raise ParameterError("plot", "draws a probe's scores; --apply labels words")
            if options.apply_store is None:
                saved = load_probe(store, options.apply)
            else:
                with actstore.open(options.apply_store) as other:
                    saved = load_probe(other, options.apply)
            frames = [apply_probe(store, site, saved, options.where) for site in names]
            labelled = _result(store, PREDICTIONS, frames, names, options, options.where)
            return _finish(store, wrote, labelled, out, keep, lambda: None)
        folds = prepare_folds(store, options)
        frames, confusions, kept = [], [], []
        for site in names:
            log.info("probing %s for %s", site, options.target)
            table, confusion, fitted = run_probe(store, site, options, folds)
            frames.append(table)
            confusions.append(confusion)
            if keep.save and len(fitted) == 1:
                suffix = "" if len(names) == 1 else "_" + re.sub(r"[^A-Za-z0-9_]", "_", site)
                save_probe(store, fitted[0], f"{keep.save}_weights{suffix}", replace=keep.replace)
                made = provenance(store, "probe_units", [site], options, options.where)
                ranked = TidyResult(RANKING, unit_ranking(fitted[0]), made)
                ranked.save(store, f"{keep.save}_units{suffix}", replace=keep.replace)
                kept.append(site)
        result = _result(store, PROBE, frames, names, options, options.where)
        for row in result.frame[result.frame["warning"] != ""].itertuples():
            log.warning("%s, %s at w%+d: %s", row.site, row.target, row.word_offset, row.warning)

        def figure() -> Any:
            return probe_figure(result.frame, figure_context(store, names, options.where))

        table = _finish(store, wrote, result, out, keep, figure)
        if keep.save and any(len(c) for c in confusions):  # classification probes
            counts = _result(store, CONFUSION, confusions, names, options, options.where)
            counts.save(store, f"{keep.save}_confusion", replace=keep.replace)
            _saved(wrote, counts, f"{keep.save}_confusion", store)
        if kept:
            wrote.append(
                f"saved the probe weights and unit ranking of {len(kept)} site(s) as "
                f"{keep.save}_weights*, {keep.save}_units* in {store.location}"
            )
        return table


def correlate(
    sites: SitesParam, options: CorrelateOptions, out: Output, keep: Keep
) -> pd.DataFrame:
    """``actstore correlate``: every unit against a numeric token column; prints the top."""
    from queries.correlate import CORRELATIONS, top_units, unit_correlations
    from queries.plots import correlation_figure

    with _open(sites.store, keep, out) as (store, wrote):
        names = resolve_sites(store, sites.sites)
        frames = [
            unit_correlations(
                store, site, options.covariate, options.where, spearman=options.spearman
            )
            for site in names
        ]
        result = _result(store, CORRELATIONS, frames, names, options, options.where)
        table = result.frame
        shown = top_units(table, options.top) if options.top else table

        def figure() -> Any:
            return correlation_figure(table, figure_context(store, names, options.where))

        return _finish(store, wrote, result, out, keep, figure, shown)


def dynamics(sites: SitesParam, options: DynamicsOptions, out: Output, keep: Keep) -> pd.DataFrame:
    """``actstore dynamics``: sentence-level r(mean activation, covariate) per language."""
    from queries.dynamics import DYNAMICS, layout, sentence_dynamics
    from queries.plots import dynamics_figure

    with _open(sites.store, keep, out) as (store, wrote):
        names = resolve_sites(store, sites.sites)
        frames = [
            sentence_dynamics(
                store, site, options.covariate, options.where, min_words=options.min_words
            )
            for site in names
        ]
        result = _result(store, DYNAMICS, frames, names, options, options.where)

        def figure() -> Any:
            return dynamics_figure(result.frame, figure_context(store, names, options.where))

        table = _finish(store, wrote, result, out, keep, figure)
    if out.format == "table" and out.output is None and not out.quiet:
        print(f"\nmean r per sentence, languages x sites:\n{render(layout(table), 'table')}")
    return table


def measures(chosen: SitesParam, options: MeasuresOptions, out: Output, keep: Keep) -> pd.DataFrame:
    """``actstore measures``: per-token dred (zmean, keep), then means by category. Only
    with ``--save NAME`` is anything written to the store: the per-token values as
    ``options.name`` and the means by category as ``NAME``."""
    from queries.measures import (
        BY_CATEGORY,
        TOKEN_MEASURES,
        by_category,
        save_measures,
        token_measures,
    )
    from queries.plots import measures_figure

    with _open(chosen.store, keep, out) as (store, wrote):
        site = one_site(store, chosen.sites, "sites")
        # a GRU's hidden-state site names its update gate (extractors.recurrent)
        gate_glob = options.gate_site or store.site(site).provenance.get("update_gate_site")
        gate = one_site(store, gate_glob, "gate_site") if gate_glob else None
        sites = [s for s in (site, gate) if s]
        values = token_measures(store, site, gate)
        if keep.save:
            save_measures(store, values, options.name, sites=sites)
            made = provenance(store, "measures", sites, {"name": options.name})
            _saved(wrote, TidyResult(TOKEN_MEASURES, values, made), options.name, store)
        table = by_category(
            store, values, site, options.by, min_count=options.min_count, where=options.where
        )
        result = _result(store, BY_CATEGORY, [table], sites, options, options.where)

        def figure() -> Any:
            return measures_figure(result.frame, figure_context(store, [site], options.where))

        return _finish(store, wrote, result, out, keep, figure)


def selectivity(
    chosen: SitesParam, options: SelectivityOptions, out: Output, keep: Keep
) -> pd.DataFrame:
    """``actstore selectivity``: top and bottom word types per unit, and a lexical map
    (function words and punctuation left out of it unless ``function_words``)."""
    from queries.plots import lexical_map_figure
    from queries.selectivity import (
        TOP_TYPES,
        default_map_site,
        most_selective_units,
        parse_units,
        principal_components,
        top_types,
        type_means,
    )

    with _open(chosen.store, keep, out) as (store, wrote):
        site = one_site(store, chosen.sites, "sites")
        means = type_means(store, site, options.by, options.where, min_count=options.min_count)
        n_units = means.means.shape[1]
        units = parse_units(options.units, n_units) or most_selective_units(means, 5)
        result = _result(store, TOP_TYPES, [top_types(means, options.top)], [site], options,
                         options.where)  # fmt: skip
        table = result.frame
        place = {u: i for i, u in enumerate(units)}
        shown = table[table["unit"].isin(units)].sort_values(
            "unit", key=lambda u: u.map(place), kind="stable"
        )

        def lexical_map() -> Any:
            map_site = (
                one_site(store, options.map_site, "map_site")
                if options.map_site
                else default_map_site(store, site)
            )
            placed = (
                means
                if map_site == site
                else type_means(
                    store, map_site, options.by, options.where, min_count=options.min_count
                )
            )
            if placed.types != means.types:
                raise actstore.SchemaError(f"sites {site} and {map_site} cover different rows")
            keep_all = options.function_words
            return lexical_map_figure(
                means.types,
                principal_components(placed.means, 3),
                means.counts,
                means.means[:, units[0]],
                f"{site} unit {units[0]}, placed by the type means of {map_site} "
                f"(types: {options.by})",
                figure_context(store, [site], options.where),
                hidden=None if keep_all else _function_words(store, options, means.types),
            )

        return _finish(store, wrote, result, out, keep, lexical_map, shown)


FUNCTION_UPOS = ("ADP", "AUX", "CCONJ", "DET", "PART", "PRON", "SCONJ", "PUNCT", "SYM")


def _function_words(
    store: actstore.Store, options: SelectivityOptions, types: list[str]
) -> np.ndarray:
    """Which types are punctuation (made of punctuation and symbol characters only) or,
    for word types (``form``, ``lemma``), function words: those whose most frequent UPOS
    among the selected tokens is closed-class (:data:`FUNCTION_UPOS`)."""
    from queries.select import token_column, where_clause

    hidden = np.array([all(unicodedata.category(c)[0] in "PS" for c in t) for t in types])
    if options.by not in ("form", "lemma"):
        return hidden
    counts = store.sql(
        f"SELECT {token_column(store, options.by)}::VARCHAR AS type, upos, count(*) AS n "
        f"FROM tokens{where_clause(options.where)} GROUP BY ALL"
    )
    top = counts.sort_values(["n", "upos"], ascending=[False, True]).drop_duplicates("type")
    closed = set(top.loc[top["upos"].isin(FUNCTION_UPOS), "type"])
    return np.asarray(hidden | np.array([t in closed for t in types], dtype=bool))
