"""``actstore report``: one self-contained HTML page of a store (corpus, sites, every
saved result with its table and figure, neuron views, warnings), rendered by Jinja2
from ``queries/templates/report.html.j2``.

The page loads nothing: figures are PNG data URIs, CSV downloads are gzip inside the
page (a few lines of JavaScript unpack them; so are the sortable tables), so it opens
from a ``file://`` URL, offline, and can be mailed as one file.

Examples
--------
>>> page = report_html(store, verify=False)
>>> page.startswith("<!DOCTYPE html>"), "toy/layer.0" in page
(True, True)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import actstore
from actstore.errors import ActStoreError, ParameterError
from actstore.manifest import atomic_write
from actstore.names import natural_key, quote_ident
from actstore.output import check_output_path
from actstore.verify import check_store
from queries.report_results import Budget, results_section
from queries.report_store import corpus_section, site_warnings, sites_section

log = logging.getLogger("actstore")

DEFAULT_SENTENCES = "n_words BETWEEN 8 AND 25"  # sentences a neuron view shows by default
N_SENTENCES = 4
N_NEURONS = 3  # units picked from saved results when none are named


def report_html(
    store: actstore.Store,
    *,
    verify: bool = True,
    neurons: Sequence[tuple[str, int]] | None = None,
    sentences: str | None = None,
    budget: Budget | None = None,
) -> str:
    """The report page of ``store`` as HTML text.

    Parameters
    ----------
    verify
        Check every chunk and part against its checksum (``actstore verify``) and list
        what fails among the warnings; off, the page says it was not checked.
    neurons
        (site, unit) pairs drawn as neuron views; None: the unit most correlated with
        its covariate in each saved correlation result (up to three).
    sentences
        SQL over ``sentences`` choosing the sentences of the neuron views.
    budget
        Rows shown per table and bytes of CSV kept in the page.
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    started = time.perf_counter()
    budget = budget or Budget()
    view_warnings: list[str] = []  # first: what the user named fails before the long work
    views = _neuron_views(store, neurons, sentences, view_warnings)
    corpus = corpus_section(store)
    sites = sites_section(store)
    results = results_section(store, budget)
    warnings = site_warnings(sites["sites"]) + results["warnings"] + view_warnings
    problems = check_store(store) if verify else None
    if problems:
        warnings += [f"verify: {p.kind} {p.name}, {p.where}: {p.problem}" for p in problems]
    environment = Environment(
        loader=FileSystemLoader(str(files("queries") / "templates")),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["bytes"] = human_bytes
    environment.filters["number"] = lambda n: f"{n:,}" if isinstance(n, int) else f"{n:.4g}"
    page = environment.get_template("report.html.j2").render(
        store=store.info() | {"path": store.location},
        title=f"actstore report: {store.location.rstrip('/').rsplit('/', 1)[-1]}",
        corpus=corpus,
        sites=sites,
        results=results,
        views=views,
        warnings=warnings,
        verified=problems is not None,
        version=actstore.__version__,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    log.info("report of %s rendered in %.1f s", store.location, time.perf_counter() - started)
    return page


Neuron = tuple[str, int, "str | None"]  # site, unit, the filter over tokens it was found under


def _neuron_views(
    store: actstore.Store,
    neurons: Sequence[tuple[str, int]] | None,
    sentences: str | None,
    warnings: list[str],
) -> list[dict[str, Any]]:
    """The neuron views of the page; in a store with word-shuffled sentences (``ingest
    --shuffle-words``), each beside the same sentences in their other word order, on one
    colour scale. Units and sentences the user named must work; of those picked here, a
    view that cannot be drawn becomes a warning."""
    given = neurons is not None or sentences is not None
    chosen: list[Neuron] = (
        [(s, u, None) for s, u in neurons] if neurons is not None else picked_neurons(store)
    )
    if sentences is not None and not chosen:
        raise ParameterError(
            "sentences", "chooses the sentences of the neuron views, and there are none: give "
            "--neurons SITE:UNIT (the store has no saved correlation to pick a unit from)"
        )  # fmt: skip
    if not chosen or "sentences" not in store.tables:
        return []
    from queries.neuron import neuron_view
    from queries.neuron_render import view_html

    shuffled = "shuffle_seed" in store.schema("sentences").names and bool(
        store.sql("SELECT count(*) AS n FROM sentences WHERE shuffle_seed IS NOT NULL")["n"][0]
    )
    views = []
    for site, unit, where in chosen:
        query = sentences or DEFAULT_SENTENCES
        if sentences is None and where:  # sentences the unit was correlated over
            query += f" AND sentence_id IN (SELECT sentence_id FROM tokens WHERE ({where}))"
        elif sentences is None and shuffled:
            query += " AND shuffle_seed IS NULL"
        try:
            view = neuron_view(store, site, unit, query, limit=N_SENTENCES)
            twin = _other_order(store, view) if shuffled else None
        except ActStoreError as exc:
            if given:
                raise
            warnings.append(f"neuron view of {site} unit {unit}: {exc}")
            continue
        if twin is not None:
            scale = max(view.scale, twin.scale)
            view, twin = replace(view, scale=scale), replace(twin, scale=scale)
        views.append({"html": view_html(view), "note": ""})
        if twin is not None:
            note = "The same sentences (same sent_id) in their other word order (--shuffle-words):"
            views.append({"html": view_html(twin), "note": note})
    return views


def _other_order(store: actstore.Store, view: Any) -> Any:
    """The view's sentences in their other word orders (the same ``sent_id`` from the
    same file: shuffled copies of originals, or originals of shuffled copies), or None
    when there are none."""
    from queries.neuron import neuron_view

    shown = ", ".join(str(s.sentence_id) for s in view.sentences)
    others = store.sql(
        "SELECT o.sentence_id FROM sentences AS s JOIN sentences AS o "
        "ON o.sent_id = s.sent_id AND o.source = s.source "
        f"WHERE s.sentence_id IN ({shown}) AND o.sentence_id NOT IN ({shown}) "
        f"ORDER BY o.sentence_id LIMIT {2 * N_SENTENCES}"
    )["sentence_id"]
    if not len(others):
        return None
    ids = [int(i) for i in others]
    return neuron_view(store, view.site, view.unit, ids, limit=2 * N_SENTENCES, top=0)


def picked_neurons(store: actstore.Store) -> list[Neuron]:
    """The unit with the largest |Pearson r| of each saved correlation result whose site
    is still there (at most :data:`N_NEURONS`), with the filter it was correlated under,
    for the page's neuron views.

    Examples
    --------
    >>> picked_neurons(store)
    []
    """
    picked: list[Neuron] = []
    for name in sorted(store.results, key=natural_key):
        info = store.result(name)
        if info.provenance.get("analysis") != "correlate" or info.kind != "table":
            continue
        top = store.sql(
            f"SELECT site, unit FROM {quote_ident(name)} WHERE metric = 'pearson' "
            "ORDER BY abs(value) DESC NULLS LAST, site, unit LIMIT 1"
        )
        if len(top) and top["site"][0] in store.sites:
            found = (str(top["site"][0]), int(top["unit"][0]), info.provenance.get("where"))
            if found[:2] not in [p[:2] for p in picked]:
                picked.append(found)
    return picked[:N_NEURONS]


def human_bytes(n: int) -> str:
    """Bytes in the largest binary unit under 1024.

    Examples
    --------
    >>> human_bytes(512), human_bytes(3 * 2**20 + 2**19)
    ('512 B', '3.5 MiB')
    """
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def check_report_path(output: Path) -> Path:
    """``output`` if a report may be written there (an .html file outside any store);
    checked before the work, not after."""
    if output.suffix.lower() not in (".html", ".htm"):
        raise ParameterError("output", f"{output}: a report is HTML; name it .html")
    return check_output_path(output, "output")


def write_report(page: str, output: Path) -> None:
    """Write the page to ``output`` atomically (a reader never sees half a page)."""
    check_report_path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(output, page.encode("utf-8"))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(output)) from None
