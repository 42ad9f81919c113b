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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import actstore
from actstore.core_verbs import StoreParam
from actstore.errors import ParameterError
from actstore.output import Keep, Output, render, show
from queries.options import (
    CorrelateOptions,
    DynamicsOptions,
    MeasuresOptions,
    ProbeOptions,
    SelectivityOptions,
    SitesParam,
)
from queries.results import TableSchema, TidyResult, provenance
from queries.select import resolve_sites

log = logging.getLogger("actstore")


@contextlib.contextmanager
def _open(path: Path, keep: Keep, *, write: bool = False) -> Iterator[actstore.Store]:
    """The store, opened for writing only if the verb saves something; everything a
    writing verb saves is one transaction, so a verb that fails commits nothing."""
    writing = write or bool(keep.save)
    store = actstore.open(path, mode="a" if writing else "r")
    with store, store.transaction() if writing else contextlib.nullcontext():
        yield store


def _finish(
    store: actstore.Store,
    result: TidyResult,
    out: Output,
    keep: Keep,
    figure: Callable[[], Any],
    shown: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Save the full table, draw the plot, print ``shown`` (default: the table)."""
    if keep.save:
        result.save(store, keep.save, replace=keep.replace)
    if keep.plot is not None:
        from queries.plots import save

        save(figure(), keep.plot)
    show(result.frame if shown is None else shown, out)
    return result.frame


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

    with _open(sites.store, keep) as store:
        names = resolve_sites(store, sites.sites)
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
            return _finish(store, labelled, out, keep, lambda: None)
        folds = prepare_folds(store, options)
        frames, confusions = [], []
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
        result = _result(store, PROBE, frames, names, options, options.where)
        for row in result.frame[result.frame["warning"] != ""].itertuples():
            log.warning("%s, %s at w%+d: %s", row.site, row.target, row.word_offset, row.warning)
        if keep.save and any(len(c) for c in confusions):  # classification probes
            counts = _result(store, CONFUSION, confusions, names, options, options.where)
            counts.save(store, f"{keep.save}_confusion", replace=keep.replace)
        return _finish(store, result, out, keep, lambda: probe_figure(result.frame))


def correlate(
    sites: SitesParam, options: CorrelateOptions, out: Output, keep: Keep
) -> pd.DataFrame:
    """``actstore correlate``: every unit against a numeric token column; prints the top."""
    from queries.correlate import CORRELATIONS, top_units, unit_correlations
    from queries.plots import correlation_figure

    with _open(sites.store, keep) as store:
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
        return _finish(store, result, out, keep, lambda: correlation_figure(table), shown)


def dynamics(sites: SitesParam, options: DynamicsOptions, out: Output, keep: Keep) -> pd.DataFrame:
    """``actstore dynamics``: sentence-level r(mean activation, covariate) per language."""
    from queries.dynamics import DYNAMICS, layout, sentence_dynamics
    from queries.plots import dynamics_figure

    with _open(sites.store, keep) as store:
        names = resolve_sites(store, sites.sites)
        frames = [
            sentence_dynamics(
                store, site, options.covariate, options.where, min_words=options.min_words
            )
            for site in names
        ]
        result = _result(store, DYNAMICS, frames, names, options, options.where)
        table = _finish(store, result, out, keep, lambda: dynamics_figure(result.frame))
    if out.format == "table" and out.output is None and not out.quiet:
        print(f"\nmean r per sentence, languages x sites:\n{render(layout(table), 'table')}")
    return table


def measures(where: StoreParam, options: MeasuresOptions, out: Output, keep: Keep) -> pd.DataFrame:
    """``actstore measures``: per-token dred (zmean, keep) saved, then means by category."""
    from queries.measures import BY_CATEGORY, by_category, save_measures, token_measures
    from queries.plots import measures_figure

    sites = [s for s in (options.site, options.gate_site) if s]
    with _open(where.store, keep, write=True) as store:
        values = token_measures(store, options.site, options.gate_site)
        save_measures(store, values, options.name, sites=sites)
        table = by_category(
            store,
            options.name,
            options.site,
            options.by,
            min_count=options.min_count,
            where=options.where,
        )
        result = _result(store, BY_CATEGORY, [table], sites, options, options.where)
        return _finish(store, result, out, keep, lambda: measures_figure(result.frame))


def selectivity(
    where: StoreParam, options: SelectivityOptions, out: Output, keep: Keep
) -> pd.DataFrame:
    """``actstore selectivity``: top and bottom word types per unit, and a lexical map."""
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

    site = options.site
    with _open(where.store, keep) as store:
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
            map_site = options.map_site or default_map_site(store, site)
            placed = (
                means
                if map_site == site
                else type_means(
                    store, map_site, options.by, options.where, min_count=options.min_count
                )
            )
            if placed.types != means.types:
                raise actstore.SchemaError(f"sites {site} and {map_site} cover different rows")
            return lexical_map_figure(
                means.types,
                principal_components(placed.means, 3),
                means.counts,
                means.means[:, units[0]],
                f"{site} unit {units[0]} on the lexical map of {map_site} ({options.by})",
            )

        return _finish(store, result, out, keep, lexical_map, shown)
