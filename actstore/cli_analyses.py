"""The analysis verbs of the command line: probe, correlate, dynamics, measures, selectivity.

Each prints a tidy table (``--format table|csv|json``, ``-o FILE``), can store it in
the store's results (``--save NAME``, then ``actstore sql STORE "SELECT ... FROM NAME"``)
and draw it (``--plot FILE.png``). ``queries`` is imported inside the commands only.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

import actstore
from actstore.errors import SchemaError
from actstore.output import FORMATS, emit, render

log = logging.getLogger("actstore")
VerbFactory = Callable[[str, str, str], argparse.ArgumentParser]


def output_options(p: argparse.ArgumentParser, *, save: bool = False, plot: bool = False) -> None:
    """``--format``, ``-o``, and where asked for ``--save NAME`` and ``--plot FILE.png``."""
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    if save:
        p.add_argument("--save", metavar="NAME", help="also store the full table as result NAME")
    if plot:
        p.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the result as a PNG")


def add_analysis_verbs(verb: VerbFactory) -> None:
    """Register the analysis verbs with the top-level parser's ``verb`` factory."""
    p = verb(
        "probe",
        "train softmax probes that decode a token column from sites (accuracy, macro-F1, "
        "majority baseline, control task)",
        'actstore probe ewt.actstore --sites "minilm/layer.*" --target upos --control',
    )
    _store_sites(p)
    p.add_argument("--target", required=True, help="token column: upos, deprel, Gender ...")
    p.add_argument("--offsets", default="0", help="decode word w+k from w, e.g. -2,-1,0,1,2")
    p.add_argument("--control", action="store_true", help="also run the control task")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, batches and control")
    p.add_argument("--epochs", type=float, default=5.0, help="passes over the training words")
    output_options(p, save=True, plot=True)

    p = verb(
        "correlate",
        "correlate every unit of some sites with a token column (Pearson, exact Spearman)",
        'actstore correlate ewt.actstore --sites "minilm/layer.*" --with depth --top 5',
    )
    _store_sites(p)
    p.add_argument("--with", dest="covariate", required=True, help="numeric tokens column")
    p.add_argument("--top", type=int, default=5, help="units per site and metric (0 = all)")
    p.add_argument("--no-spearman", action="store_true", help="Pearson only (one pass)")
    output_options(p, save=True, plot=True)

    p = verb(
        "dynamics",
        "per sentence, correlate the mean activation with word depth; average per site "
        "and language",
        'actstore dynamics ewt.actstore --sites "minilm/layer.*" --with depth',
    )
    _store_sites(p)
    p.add_argument("--with", dest="covariate", default="depth", help="numeric tokens column")
    p.add_argument("--min-words", type=int, default=3, help="skip shorter sentences")
    output_options(p, save=True, plot=True)

    p = verb(
        "measures",
        "distance reduction (dred) of a site, and zmean/keep of a GRU update-gate site, "
        "stored per token and reported by category",
        "actstore measures ewt.actstore --site gru/layer.0.h --gate-site gru/layer.0.gate_z",
    )
    p.add_argument("store", type=Path)
    p.add_argument("--site", required=True, help="site of the hidden states")
    p.add_argument("--gate-site", help="site of the update gates (declares gate_convention)")
    p.add_argument("--name", default="measures", help="results table for the per-token values")
    p.add_argument("--by", default="upos,deprel", help="token columns to report by")
    p.add_argument("--min-count", type=int, default=500, help="smallest category reported")
    p.add_argument("--where", help="SQL condition selecting the tokens reported")
    output_options(p, save=True, plot=True)

    p = verb(
        "selectivity",
        "mean activation of units per word type: top and bottom types, lexical map",
        "actstore selectivity ewt.actstore --site minilm/layer.1 --by lemma --plot map.png",
    )
    p.add_argument("store", type=Path)
    p.add_argument("--site", required=True)
    p.add_argument("--by", default="form", help="token column defining word types")
    p.add_argument("--where", help="SQL condition selecting tokens")
    p.add_argument("--min-count", type=int, default=5, help="leave out rarer types")
    p.add_argument("--top", type=int, default=10, help="types per unit and direction")
    p.add_argument(
        "--units", help="comma-separated units to report, or 'all' (default: 5 most selective)"
    )
    p.add_argument(
        "--map-site",
        help="site whose type means place words on the lexical map "
        "(default: <model>/layer.0 if present, else --site)",
    )
    output_options(p, save=True, plot=True)


def _store_sites(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", type=Path)
    p.add_argument("--sites", required=True, help="glob(s) over site names, comma-separated")
    p.add_argument("--where", help="SQL condition selecting tokens")


def _finish(
    args: argparse.Namespace,
    store: actstore.Store,
    table: pd.DataFrame,
    shown: pd.DataFrame | None = None,
    figure: Callable[[], Any] | None = None,
) -> None:
    """Save the full table, draw the plot, print ``shown`` (default: the table)."""
    if args.save:
        store.write_result(args.save, pa.Table.from_pandas(table, preserve_index=False))
    if args.plot and figure is not None:
        from queries.plots import save

        save(figure(), args.plot)
    emit(render(table if shown is None else shown, args.format), args.output)


def _open(args: argparse.Namespace, *, write: bool = False) -> actstore.Store:
    return actstore.open(args.store, mode="a" if write or args.save else "r")


def cmd_probe(args: argparse.Namespace) -> None:
    from queries.plots import probe_figure
    from queries.probe import ProbeOptions, parse_offsets, prepare_labels, probe
    from queries.select import resolve_sites

    options = ProbeOptions(
        target=args.target,
        where=args.where,
        offsets=parse_offsets(args.offsets),
        control=args.control,
        device=args.device,
        seed=args.seed,
        epochs=args.epochs,
    )
    with _open(args) as store:
        labels = prepare_labels(store, options)
        tables = []
        for site in resolve_sites(store, args.sites):
            log.info("probing %s for %s", site, args.target)
            tables.append(probe(store, site, options, labels))
        table = pd.concat(tables, ignore_index=True)
        _finish(args, store, table, figure=lambda: probe_figure(table))


def cmd_correlate(args: argparse.Namespace) -> None:
    from queries.correlate import top_units, unit_correlations
    from queries.plots import correlation_figure
    from queries.select import resolve_sites

    with _open(args) as store:
        table = pd.concat(
            [
                unit_correlations(
                    store, site, args.covariate, args.where, spearman=not args.no_spearman
                )
                for site in resolve_sites(store, args.sites)
            ],
            ignore_index=True,
        )
        shown = top_units(table, args.top) if args.top else table
        _finish(args, store, table, shown, lambda: correlation_figure(table))


def cmd_dynamics(args: argparse.Namespace) -> None:
    from queries.dynamics import layout, sentence_dynamics
    from queries.plots import dynamics_figure
    from queries.select import resolve_sites

    with _open(args) as store:
        table = pd.concat(
            [
                sentence_dynamics(store, site, args.covariate, args.where, min_words=args.min_words)
                for site in resolve_sites(store, args.sites)
            ],
            ignore_index=True,
        )
        _finish(args, store, table, figure=lambda: dynamics_figure(table))
    if args.format == "table" and args.output is None:
        print(f"\nmean r per sentence, languages x sites:\n{render(layout(table), 'table')}")


def cmd_measures(args: argparse.Namespace) -> None:
    from queries.measures import by_category, save_measures, token_measures
    from queries.plots import measures_figure

    by = tuple(c.strip() for c in args.by.split(",") if c.strip())
    with _open(args, write=True) as store:
        save_measures(store, token_measures(store, args.site, args.gate_site), args.name)
        table = by_category(
            store, args.name, args.site, by, min_count=args.min_count, where=args.where
        )
        _finish(args, store, table, figure=lambda: measures_figure(table))


def cmd_selectivity(args: argparse.Namespace) -> None:
    from queries.plots import lexical_map_figure
    from queries.selectivity import (
        most_selective_units,
        principal_components,
        top_types,
        type_means,
    )

    with _open(args) as store:
        means = type_means(store, args.site, args.by, args.where, min_count=args.min_count)
        table = top_types(means, args.top)
        units = _units(args.units, means.means.shape[1]) or most_selective_units(means, 5)
        shown = table[table["unit"].isin(units)].sort_values(
            "unit", key=lambda u: u.map({v: i for i, v in enumerate(units)}), kind="stable"
        )

        def lexical_map() -> Any:
            model = args.site.split("/", 1)[0]
            map_site = args.map_site or (
                f"{model}/layer.0" if f"{model}/layer.0" in store.sites else args.site
            )
            placed = (
                means
                if map_site == args.site
                else type_means(store, map_site, args.by, args.where, min_count=args.min_count)
            )
            if placed.types != means.types:
                raise SchemaError(f"sites {args.site} and {map_site} cover different rows")
            return lexical_map_figure(
                means.types,
                principal_components(placed.means, 3),
                means.counts,
                means.means[:, units[0]],
                f"{args.site} unit {units[0]} on the lexical map of {map_site} ({args.by})",
            )

        _finish(args, store, table, shown, lexical_map)


def _units(text: str | None, n_units: int) -> list[int]:
    if not text:
        return []
    if text == "all":
        return list(range(n_units))
    try:
        units = [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        raise SchemaError(
            f"--units takes comma-separated unit numbers or 'all'; got {text!r}"
        ) from None
    bad = [u for u in units if not 0 <= u < n_units]
    if bad:
        raise SchemaError(f"units {bad} are outside 0..{n_units - 1}")
    return units


ANALYSIS_COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "probe": cmd_probe,
    "correlate": cmd_correlate,
    "dynamics": cmd_dynamics,
    "measures": cmd_measures,
    "selectivity": cmd_selectivity,
}


def demo_analyses(store: actstore.Store, plots: Path) -> None:
    """The main job's analyses: a UPOS probe with control task on every site, unit
    correlations with depth, sentence dynamics; printed, saved as results, plotted."""
    from queries.correlate import top_units, unit_correlations
    from queries.dynamics import layout, sentence_dynamics
    from queries.plots import correlation_figure, dynamics_figure, probe_figure, save
    from queries.probe import ProbeOptions, prepare_labels, probe
    from queries.select import resolve_sites

    sites = resolve_sites(store, "*")
    started = time.perf_counter()
    options = ProbeOptions("upos", control=True)
    labels = prepare_labels(store, options)
    probes = pd.concat([probe(store, site, options, labels) for site in sites])
    wide = probes.pivot_table(index="site", columns="metric", values="value", sort=False)
    wide = wide[["accuracy", "macro_f1", "majority", "control_accuracy", "selectivity"]]
    counts = probes.groupby("site", sort=False)[["n", "n_train"]].first()
    print(
        f"== UPOS probe (softmax, 90/10 split by sentence, control task on word forms) "
        f"in {time.perf_counter() - started:.1f} s\n"
        f"{render(wide.round(3).join(counts).reset_index(), 'table')}"
    )
    started = time.perf_counter()
    correlations = pd.concat([unit_correlations(store, site, "depth") for site in sites])
    print(
        f"== units most correlated with tree depth (Pearson, exact Spearman, BH q) "
        f"in {time.perf_counter() - started:.1f} s\n"
        f"{render(top_units(correlations[correlations.metric == 'pearson'], 2), 'table')}"
    )
    dynamics = pd.concat([sentence_dynamics(store, site, "depth") for site in sites])
    print(
        "== sentence dynamics: mean over sentences of r(mean activation, depth)\n"
        f"{render(layout(dynamics), 'table')}"
    )
    for name, table, figure in (
        ("probe_upos", probes, probe_figure),
        ("correlate_depth", correlations, correlation_figure),
        ("dynamics_depth", dynamics, dynamics_figure),
    ):
        store.write_result(f"demo_{name}", pa.Table.from_pandas(table, preserve_index=False))
        save(figure(table), plots / f"{name}.png")
    print(
        f"== saved results demo_probe_upos, demo_correlate_depth, demo_dynamics_depth "
        f"(query them with actstore sql) and plots in {plots}/"
    )
