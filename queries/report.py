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
from actstore.names import natural_key
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
    corpus = corpus_section(store)
    sites = sites_section(store)
    results = results_section(store, budget)
    warnings = site_warnings(sites["sites"]) + results["warnings"]
    problems = _verify(store) if verify else None
    if problems:
        warnings += [f"verify: {p.kind} {p.name}, {p.where}: {p.problem}" for p in problems]
    views = _neuron_views(store, neurons, sentences, warnings)
    environment = Environment(
        loader=FileSystemLoader(str(files("queries") / "templates")),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["bytes"] = human_bytes
    environment.filters["number"] = lambda n: f"{n:,}" if isinstance(n, int) else f"{n:.4g}"
    page = environment.get_template("report.html.j2").render(
        store=store.info() | {"path": str(store.path)},
        title=f"actstore report: {store.path.name}",
        corpus=corpus,
        sites=sites,
        results=results,
        views=views,
        warnings=warnings,
        verified=problems is not None,
        version=actstore.__version__,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    log.info("report of %s rendered in %.1f s", store.path, time.perf_counter() - started)
    return page


def _verify(store: actstore.Store) -> list[Any]:
    from actstore.verify import check_store

    return check_store(store)


def _neuron_views(
    store: actstore.Store,
    neurons: Sequence[tuple[str, int]] | None,
    sentences: str | None,
    warnings: list[str],
) -> list[dict[str, Any]]:
    """The neuron views of the page; in a store with word-shuffled sentences (``ingest
    --shuffle-words``), each beside the same sentences shuffled, on one colour scale."""
    chosen = list(neurons) if neurons is not None else picked_neurons(store)
    if not chosen or "sentences" not in store.tables:
        return []
    from queries.neuron import neuron_view
    from queries.neuron_render import view_html

    shuffled = "shuffle_seed" in store.schema("sentences").names
    query = sentences or DEFAULT_SENTENCES
    if shuffled and sentences is None:
        query = f"({query}) AND shuffle_seed IS NULL"
    views = []
    for site, unit in chosen:
        try:
            view = neuron_view(store, site, unit, query, limit=N_SENTENCES)
            twin = _shuffled_twin(store, view) if shuffled else None
        except ActStoreError as exc:
            if neurons is not None:
                raise
            warnings.append(f"neuron view of {site} unit {unit}: {exc}")
            continue
        if twin is not None:
            scale = max(view.scale, twin.scale)
            view, twin = replace(view, scale=scale), replace(twin, scale=scale)
        views.append({"html": view_html(view), "note": ""})
        if twin is not None:
            note = "The same sentences with their words shuffled (ingest --shuffle-words):"
            views.append({"html": view_html(twin), "note": note})
    return views


def _shuffled_twin(store: actstore.Store, view: Any) -> Any:
    """The view's sentences in their word-shuffled versions (same ``sent_id``), or None."""
    from queries.neuron import neuron_view

    ids = [s.sent_id for s in view.sentences if s.sent_id is not None]
    if not ids:
        return None
    listed = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
    where = f"shuffle_seed IS NOT NULL AND sent_id IN ({listed})"
    if not int(store.sql(f"SELECT count(*) AS n FROM sentences WHERE {where}")["n"][0]):
        return None
    return neuron_view(store, view.site, view.unit, where, limit=2 * N_SENTENCES, top=0)


def picked_neurons(store: actstore.Store) -> list[tuple[str, int]]:
    """The unit with the largest |Pearson r| of each saved correlation result whose site
    is still there (at most :data:`N_NEURONS`), for the page's neuron views.

    Examples
    --------
    >>> picked_neurons(store)
    []
    """
    picked: list[tuple[str, int]] = []
    for name in sorted(store.results, key=natural_key):
        info = store.results[name]
        if info.provenance.get("analysis") != "correlate" or info.kind != "table":
            continue
        top = store.sql(
            f"SELECT site, unit FROM \"{name}\" WHERE metric = 'pearson' "
            "ORDER BY abs(value) DESC NULLS LAST, site, unit LIMIT 1"
        )
        if len(top) and top["site"][0] in store.sites:
            pair = (str(top["site"][0]), int(top["unit"][0]))
            if pair not in picked:
                picked.append(pair)
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


def write_report(page: str, output: Path) -> None:
    """Write the page to ``output`` atomically (a reader never sees half a page)."""
    if output.suffix.lower() not in (".html", ".htm"):
        raise ParameterError("output", f"{output}: a report is HTML; name it .html")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(output, page.encode("utf-8"))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(output)) from None
