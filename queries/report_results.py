"""What ``actstore report`` says of a store's saved results: grouped by analysis, each
with its parameters, filter and sites, its top rows, the whole table as a CSV inside the
page (gzip, within a budget), and its figure drawn by :mod:`queries.figures` (the code
of the verbs' ``--plot``); and the warnings the results carry.

Examples
--------
>>> from queries.correlate import CORRELATIONS, unit_correlations
>>> from queries.results import TidyResult, provenance
>>> made = provenance(store, "correlate", ["toy/layer.0"], {"covariate": "depth"})
>>> table = unit_correlations(store, "toy/layer.0", "depth")
>>> TidyResult(CORRELATIONS, table, made).save(store, "depth_r")
>>> section = results_section(store, Budget())
>>> group = section["groups"][0]
>>> group["title"], group["results"][0]["name"], group["results"][0]["figure"] is not None
('Unit correlations', 'depth_r', True)
"""

from __future__ import annotations

import base64
import gzip
import io
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import actstore
from actstore.errors import ActStoreError
from actstore.names import natural_key, quote_ident
from queries.figures import read_table, saved_figure

log = logging.getLogger("actstore")

# analysis (from provenance) -> heading, in the order the page shows them
GROUPS = {
    "probe": "Probes",
    "correlate": "Unit correlations",
    "dynamics": "Sentence dynamics",
    "measures": "Distance reduction and gate means",
    "selectivity": "Unit selectivity",
    "rsa": "Representational similarity (RSA)",
    "2v2": "2 vs 2 test",
    "1v2": "1 vs 2 test",
    "cka": "CKA",
    "wordsim": "Word similarity",
    "retrieve": "Retrieval",
    "retrieve_scrambled": "Retrieval, scrambled-order control",
    "probe_apply": "Probes applied",
    # what the analyses above keep beside their tables, shown folded
    "probe_confusion": "Probe confusion counts",
    "probe_units": "Units ranked by probe weight",
    "probe_weights": "Probe weights",
    "rdm": "Representational dissimilarity matrices",
    "alignment": "Extractor alignment",
}
FOLDED = ("probe_confusion", "probe_units", "probe_weights", "rdm", "alignment")
# which rows are "top", and how the page says it
ORDER_BY = {"correlate": ("value", "the largest |value|")}  # by |column|, largest first
MAX_READ_ROWS = 1_000_000  # larger tables: only their top rows are read (no figure, no CSV)
MIN_CSV_BYTES = 1 << 10
MIN_FIGURE_BYTES = 8 << 10  # the smallest figure these plots make, as a data URI
MAX_MATRIX_CSV = 10_000  # cells of a matrix kept as CSV in the page (an RDM of k > 100: no)


@dataclass
class Budget:
    """How much of the page the results may take: rows shown per table, and bytes of
    gzip-compressed CSV (per table and in all) and of figures. Beyond them, the page
    gives the command that exports the table, or says the figure was left out; figures
    of the analyses come before those of what they keep (RDMs, weights)."""

    top_rows: int = 20
    csv_bytes: int = 512 << 10
    total_csv_bytes: int = 3 << 19  # 1.5 MiB
    total_figure_bytes: int = 5 << 19  # 2.5 MiB
    figures: bool = True
    spent: dict[str, int] = field(default_factory=dict, init=False)

    def room(self, what: str) -> int:
        """Bytes of ``what`` that still fit in the page."""
        limit = self.total_csv_bytes if what == "csv" else self.total_figure_bytes
        return limit - self.spent.get(what, 0)

    def take(self, what: str, n: int) -> bool:
        """Whether ``n`` more bytes of ``what`` ("csv" or "figure") fit; if so, count them.

        Examples
        --------
        >>> budget = Budget(total_figure_bytes=100)
        >>> budget.take("figure", 60), budget.take("figure", 60), budget.take("figure", 10)
        (True, False, False)
        """
        if what == "csv" and n > self.csv_bytes:
            return False
        if n > self.room(what):
            if what == "figure":  # full: draw no more (each costs a second)
                self.spent[what] = self.total_figure_bytes
            return False
        self.spent[what] = self.spent.get(what, 0) + n
        return True


def results_section(store: actstore.Store, budget: Budget) -> dict[str, Any]:
    """Every saved result, grouped by analysis; with the warnings they carry."""
    from queries.results import site_digest

    grouped: dict[str, list[dict[str, Any]]] = {}
    warnings: list[str] = []
    saved = store.results
    digests: dict[tuple[str, ...], str] = {}
    for name in sorted(saved, key=natural_key):
        info = saved[name]
        made = info.provenance
        analysis = made.get("analysis") or ("alignment" if made.get("extractor") else "other")
        sites = list(made.get("sites") or [])
        gone = [s for s in sites if s not in store.sites]
        if gone:
            warnings.append(f"result {name} was made from site {gone[0]}, which is gone")
        elif made.get("site_digest"):
            now = digests.setdefault(tuple(sites), site_digest(store, sites))
            if made["site_digest"] != now:
                warnings.append(f"result {name} was made before one of its sites changed; rerun it")
        grouped.setdefault(analysis, []).append(_describe(store, name, info, budget, warnings))
    order = {a: i for i, a in enumerate(GROUPS)}
    groups: list[dict[str, Any]] = [
        {"analysis": a, "title": GROUPS.get(a, a.replace("_", " ").capitalize()),
         "id": f"results-{a}", "results": grouped[a], "folded": a in FOLDED}
        for a in sorted(grouped, key=lambda a: (order.get(a, len(order)), a))
    ]  # fmt: skip
    contexts: dict[tuple[Any, ...], Any] = {}
    for group in groups:  # figures in page order: the analyses' before what they keep
        for entry in group["results"]:
            whole = entry.pop("whole")
            if entry.pop("drawn"):
                entry["figure"] = _figure(store, entry["name"], whole, contexts, budget, warnings)
    return {"groups": groups, "warnings": warnings, "n_results": len(saved)}


def _describe(
    store: actstore.Store, name: str, info: Any, budget: Budget, warnings: list[str]
) -> dict[str, Any]:
    made = info.provenance
    entry: dict[str, Any] = {
        "name": name,
        "id": "result-" + "".join(c if c.isalnum() else "-" for c in name),
        "kind": info.kind,
        "shape": " \N{MULTIPLICATION SIGN} ".join(f"{n:,}" for n in info.shape),
        "created": info.created,
        "sites": made.get("sites") or [],
        "where": made.get("where"),
        "parameters": _parameters(made.get("parameters")),
        "figure": None,
        "csv": None,
        "export": f'actstore sql STORE "SELECT * FROM {quote_ident(name)}" --format csv',
        "drawn": budget.figures and (info.kind == "matrix" or int(info.shape[0]) <= MAX_READ_ROWS),
        "whole": None,
    }
    if info.kind == "matrix":
        entry.update(_matrix(store, name, budget))
    else:
        entry.update(_table(store, name, made, int(info.shape[0]), budget, warnings))
    return entry


def _parameters(parameters: Any) -> list[tuple[str, str]]:
    """The parameters that were given a value, as (name, text)."""
    if not isinstance(parameters, Mapping):
        return []
    return [(k, _text(v)) for k, v in parameters.items() if v not in (None, [], {}, "")]


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _table(
    store: actstore.Store,
    name: str,
    made: Mapping[str, Any],
    n_rows: int,
    budget: Budget,
    warnings: list[str],
) -> dict[str, Any]:
    by, ordered = ORDER_BY.get(str(made.get("analysis")), ("", ""))
    whole = None
    if n_rows <= MAX_READ_ROWS:  # straight from Parquet: SQL opens a connection per call
        whole = read_table(store, name)
    probe = made.get("analysis") == "probe" and whole is not None and "metric" in whole
    if whole is not None and probe:
        frame = probe_layout(whole)
    elif whole is None:
        frame = store.sql(f"SELECT * FROM {quote_ident(name)} LIMIT {budget.top_rows}")
        by = ordered = ""
    elif by:
        frame = whole.iloc[whole[by].abs().sort_values(ascending=False, kind="stable").index]
    else:
        frame = whole
    layout = f"one row per site, target and word offset, its metrics across ({len(frame):,} rows)"
    found: dict[str, Any] = {"columns": list(frame.columns), "n_rows": n_rows,
                             "rows": cells(frame.head(budget.top_rows)), "ordered": ordered,
                             "layout": layout if probe else "", "whole": whole}  # fmt: skip
    if probe:
        flagged = frame
        warnings += [
            f"{name}: {r.site}, {r.target} at w{r.word_offset:+d}: {r.warning}"
            for r in flagged[flagged["warning"].fillna("") != ""].itertuples()
        ]
    if whole is not None:
        found["csv"] = _csv(whole, budget)
    return found


def probe_layout(table: pd.DataFrame) -> pd.DataFrame:
    """A probe table with one row per site, target and word offset and its metrics as
    columns (accuracy, majority, control task ...; per-class rows left out), then the
    words scored and the warning.

    Examples
    --------
    >>> table = pd.DataFrame({"site": "m/a", "target": "upos", "word_offset": 0,
    ...     "metric": ["accuracy", "majority"], "label": "", "value": [0.9, 0.2],
    ...     "n": 50, "warning": ""})
    >>> probe_layout(table).columns.tolist()
    ['site', 'target', 'word_offset', 'accuracy', 'majority', 'n', 'warning']
    """
    keys = ["site", "target", "word_offset"]
    overall = table[table["label"].fillna("") == ""]
    wide = overall.pivot_table(index=keys, columns="metric", values="value", sort=False)
    wide = wide[list(dict.fromkeys(overall["metric"]))]
    first = overall.groupby(keys, sort=False).agg(
        n=("n", "first"), warning=("warning", lambda w: "; ".join(x for x in w.fillna("") if x))
    )
    return wide.join(first).reset_index().rename_axis(columns=None)


def _matrix(store: actstore.Store, name: str, budget: Budget) -> dict[str, Any]:
    matrix = store.matrix(name)
    rows = [str(v) for v in matrix.values["row"].to_numpy()]
    columns = [str(v) for v in matrix.values["column"].to_numpy()]
    shown = min(budget.top_rows, len(rows))
    head = pd.DataFrame(
        matrix.values[:shown, : min(12, len(columns))].to_numpy(),
        columns=columns[:12],
    ).assign(label=rows[:shown])
    shown_columns = ["label", *columns[:12]]
    found: dict[str, Any] = {"columns": shown_columns, "n_rows": len(rows),
                             "rows": cells(head[shown_columns]), "ordered": ""}  # fmt: skip
    if len(rows) * len(columns) <= MAX_MATRIX_CSV:
        whole = pd.DataFrame(matrix.values.to_numpy(), columns=columns).assign(label=rows)
        found["csv"] = _csv(whole[["label", *columns]], budget)
    return found


def cells(frame: pd.DataFrame) -> list[list[str]]:
    """Each row's cells as text: floats with four significant digits, missing values
    empty (the page sorts a column by these numbers).

    Examples
    --------
    >>> cells(pd.DataFrame({"a": [0.123456, None], "b": ["x", "y"], "n": [12345, 2]}))
    [['0.1235', 'x', '12345'], ['', 'y', '2']]
    """
    return [[_cell(v) for v in row] for row in frame.itertuples(index=False)]


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


def _csv(frame: pd.DataFrame, budget: Budget) -> str | None:
    """The table as gzip-compressed CSV in base64 (None: over the budget, which counts
    these base64 bytes, as the page holds them)."""
    if budget.room("csv") < MIN_CSV_BYTES:  # spent: do not compress what cannot fit
        return None
    text = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    packed = base64.b64encode(gzip.compress(text, compresslevel=9, mtime=0)).decode("ascii")
    return packed if budget.take("csv", len(packed)) else None


def _figure(
    store: actstore.Store,
    name: str,
    whole: pd.DataFrame | None,
    contexts: dict[tuple[Any, ...], Any],
    budget: Budget,
    warnings: list[str],
) -> dict[str, Any] | None:

    if budget.room("figure") < MIN_FIGURE_BYTES:  # spent: do not draw what cannot fit
        return {"left_out": f"{budget.total_figure_bytes / 2**20:.0f} MiB"}
    try:
        figure = saved_figure(store, name, whole, contexts)
    except (ActStoreError, ValueError, KeyError) as exc:
        warnings.append(f"result {name}: its figure could not be drawn ({exc})")
        log.warning("report: the figure of %s could not be drawn: %s", name, exc)
        return None
    if figure is None:
        return None
    embedded = embed_png(figure)
    if not budget.take("figure", len(embedded["uri"])):
        return {"left_out": f"{budget.total_figure_bytes / 2**20:.0f} MiB"}
    return embedded


def embed_png(figure: Any, dpi: int = 100, max_width: int = 1000) -> dict[str, Any]:
    """A figure as a data URI of a palette PNG (256 colours: a third of the bytes of
    full colour, no visible loss on these plots), at ``dpi`` or less, to keep it at most
    ``max_width`` pixels wide; with its size in pixels.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> embedded = embed_png(Figure(figsize=(2, 1)), dpi=50)
    >>> embedded["uri"][:22], embedded["width"], embedded["height"]
    ('data:image/png;base64,', 100, 50)
    """
    from PIL import Image

    raw = io.BytesIO()
    with warnings.catch_warnings():  # a page-sized figure of many ticks: drawn all the same
        warnings.filterwarnings("ignore", "constrained_layout not applied", UserWarning)
        figure.savefig(raw, format="png", dpi=min(dpi, max_width / figure.get_figwidth()))
    image = Image.open(raw).convert("RGB")
    packed = io.BytesIO()
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        packed, format="png", optimize=True
    )
    uri = "data:image/png;base64," + base64.b64encode(packed.getvalue()).decode("ascii")
    return {"uri": uri, "width": image.width, "height": image.height}
