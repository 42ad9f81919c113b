"""Figures of analysis tables, as matplotlib ``Figure`` objects (no pyplot state).

Each names what it shows: a title, and a caption naming model, sites, corpus, words and
SQL filter (:class:`FigureContext`); axes are labelled, legends and colour bars sit
outside the data, the layout is constrained. :func:`save` writes 300 dpi PNG, or vector
PDF or SVG, by the file's extension.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from actstore.errors import ParameterError
from actstore.names import natural_key
from actstore.output import check_output_path
from queries.scores import CONTROL_MARGIN

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
DPI = 300
# Dark at both ends and in the middle, so every word of a lexical map stays legible.
ACTIVATION_COLOURS = LinearSegmentedColormap.from_list("dark", ["#1d4f9a", "#4d4d4d", "#b01c2e"])
LEGEND_ORDER = ("accuracy", "R²", "control task", "majority", "selectivity", "control", "")
WARNINGS = {  # text of the probe table's warning column -> how the plot marks it
    "majority": ("not above the majority baseline", "red", "o"),
    "control task": ("control within 2 points of the probe", "darkorange", "s"),
    "r2 not above": ("R² not above 0", "red", "o"),
}


@dataclass(frozen=True)
class FigureContext:
    """What a figure is of, for its caption: ``model``, ``corpus``, the ``n`` words that
    ``where`` selects, the ``sites`` drawn (``queries.commands.figure_context`` reads them).

    Examples
    --------
    >>> FigureContext("toy", "en_ewt dev (en)", 133, "upos = 'NOUN'", ("toy/layer.0",)).caption()
    "model toy · site toy/layer.0 · corpus en_ewt dev (en) · n = 133 words · where upos = 'NOUN'"
    """

    model: str
    corpus: str
    n: int
    where: str | None = None
    sites: tuple[str, ...] = ()

    def caption(self, detail: str = "") -> str:
        """One line (wrapped) naming model, sites, corpus, n and filter."""
        sites = sorted(self.sites, key=natural_key)
        named = ", ".join(sites) if len(sites) < 5 else f"{sites[0]} … {sites[-1]} ({len(sites)})"
        site = f"site{'s' * (len(sites) > 1)} {named} · " if sites else ""
        n = f"n = {self.n:,} words" + (f" ({detail})" if detail else "")
        where = f"where {' '.join(self.where.split())}" if self.where else "where: all words"
        return f"model {self.model} · {site}corpus {self.corpus} · {n} · {where}"


def plot_format(path: Path) -> str:
    """The format the extension of ``path`` asks for: ``png``, ``pdf`` or ``svg``.

    Examples
    --------
    >>> plot_format(Path("figure.PDF"))
    'pdf'
    >>> plot_format(Path("figure.jpg"))
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: plot figure.jpg: the extension chooses the format: .png ...
    """
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        accepted = ".png (300 dpi), .pdf or .svg (vector)"
        raise ParameterError("plot", f"{path}: the extension chooses the format: {accepted}")
    return fmt


def save(figure: Figure, path: Path) -> None:
    """Write ``figure`` as PNG (300 dpi), PDF or SVG by the extension, making the folder;
    text stays text in PDF (TrueType) and SVG, so a journal's tools can edit it.

    Examples
    --------
    >>> save(Figure(), tmp / "plots" / "empty.png")
    >>> (tmp / "plots" / "empty.png").read_bytes()[:4]
    b'\\x89PNG'
    """
    fmt = plot_format(check_output_path(path, "plot"))
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(fmt)
    with rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):
        figure.savefig(path, format=fmt, dpi=DPI, bbox_inches="tight", metadata=stamp)


def _sites(table: pd.DataFrame) -> list[str]:
    return sorted(table["site"].unique(), key=natural_key)


def _figure(width: float, height: float, title: str, caption: str) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    figure.suptitle(title, fontsize=11)
    _caption(figure, caption)
    return figure


def _caption(figure: Figure, caption: str) -> None:
    wrapped = textwrap.wrap(caption, int(figure.get_figwidth() * 15))
    figure.supxlabel("\n".join(wrapped), fontsize=7, color="0.3")


def _site_axis(ax: Axes, sites: list[str]) -> None:
    ax.set_xticks(range(len(sites)), [s.split("/", 1)[-1] for s in sites], rotation=30, ha="right")
    ax.set_xlabel("site")


def _counted(values: pd.Series, what: str) -> str:
    low, high = int(values.min()), int(values.max())
    return f"{low:,} {what}" if low == high else f"{low:,} to {high:,} {what}"


def _metric(group: pd.DataFrame, metric: str, sites: list[str], column: str = "value") -> Any:
    return group[group["metric"] == metric].set_index("site")[column].reindex(sites)


def probe_figure(table: pd.DataFrame, context: FigureContext) -> Figure:
    """Accuracy (R² for a regression) per site, one colour per word offset, with the
    majority class dashed and the control task dotted; below it, with a control task,
    selectivity (accuracy minus control accuracy). Cross-validated, the error bars are
    the 95% t-interval over the folds. Scores the table warns about are marked.

    Examples
    --------
    >>> from queries.probe import probe
    >>> context = FigureContext("toy", "en_ewt dev (en)", 698, None, ("toy/layer.0",))
    >>> from queries.options import ProbeOptions
    >>> options = ProbeOptions("upos", control=True, device="cpu")
    >>> table = probe(store, "toy/layer.0", options)
    >>> len(probe_figure(table, context).axes)
    2
    """
    table = table[table["label"].fillna("") == ""] if "label" in table else table
    score = "accuracy" if (table["metric"] == "accuracy").any() else "r2"  # r2: regression
    sites, target = _sites(table), table["target"].iloc[0]
    control = bool((table["metric"] == "selectivity").any())
    folds = bool(table["ci_low"].notna().any())
    per = "per site and offset" if table["word_offset"].nunique() > 1 else "per site"
    n_test = _counted(table.loc[table.metric == score, "n"], f"scored test words {per}")
    caption = context.caption(n_test + (", all folds" if folds else ""))
    name = "accuracy" if score == "accuracy" else "R²"
    title = f"Probe for {target}: {name} by site"
    figure = _figure(max(7.5, 0.8 * len(sites) + 3.5), 6.2 if control else 4.2, title, caption)
    ratios = [3, 2] if control else None
    axes = figure.subplots(len(ratios or [1]), 1, sharex=True, squeeze=False, height_ratios=ratios)
    top, x = axes[0, 0], np.arange(len(sites))
    offsets = sorted(int(k) for k in table["word_offset"].unique())
    for k, offset in enumerate(offsets):
        group = table[table["word_offset"] == offset]
        tag = (f" (w{offset:+d})" if offset else " (w)") if len(offsets) > 1 else ""
        style = {"color": f"C{k}"}
        _errorbar(top, group, score, sites, folds, label=f"{name}{tag}", **style)
        if control:
            top.plot(x, _metric(group, "control_accuracy", sites), ls=":", marker=".",
                     label=f"control task{tag}", **style)  # fmt: skip
            label = f"selectivity{tag}"
            _errorbar(axes[1, 0], group, "selectivity", sites, folds, label=label, **style)
        if score == "accuracy":
            top.plot(x, _metric(group, "majority", sites), ls="--", alpha=0.6,
                     label=f"majority class{tag}", **style)  # fmt: skip
    _mark_warnings(top, table[table.metric == score], sites)
    lowest = float(table.loc[table.metric.isin([score, "majority"]), "value"].min())
    top.set(ylim=(min(0.0, lowest - 0.05), 1.02), ylabel=f"{name} on test words")
    if control:
        axes[1, 0].axhspan(0, CONTROL_MARGIN, color="darkorange", alpha=0.15, lw=0,
                           label="control within 2 points (warned)")  # fmt: skip
        axes[1, 0].axhline(0, color="black", lw=0.5)
        axes[1, 0].set_ylabel("selectivity\n(accuracy - control)")
    if folds:
        top.plot([], [], " ", label="error bars: 95% t-interval over\nthe folds (a lower bound)")
    _site_axis(axes[-1, 0], sites)
    pairs = [p for ax in axes[:, 0] for p in zip(*ax.get_legend_handles_labels(), strict=True)]
    pairs.sort(key=lambda p: [p[1].startswith(w) for w in LEGEND_ORDER].index(True))
    figure.legend(*zip(*pairs, strict=True), loc="outside right center", fontsize=7.5)
    return figure


def _errorbar(
    ax: Axes, group: pd.DataFrame, metric: str, sites: list[str], folds: bool, **style: Any
) -> None:
    value = _metric(group, metric, sites)
    low, high = (_metric(group, metric, sites, c) for c in ("ci_low", "ci_high"))
    error = np.vstack([value - low, high - value]) if folds else None
    ax.errorbar(np.arange(len(sites)), value, yerr=error, marker="o", capsize=3, **style)


def _mark_warnings(ax: Axes, scores: pd.DataFrame, sites: list[str]) -> None:
    """Ring the scores whose ``warning`` names a known problem, one legend entry each."""
    for key, (text, edge, marker) in WARNINGS.items():
        hit = scores[scores["warning"].fillna("").str.contains(key, regex=False)]
        if len(hit):
            at = [sites.index(str(s)) for s in hit["site"]]
            ax.scatter(at, hit["value"], s=170, marker=marker, facecolors="none",
                       edgecolors=edge, linewidths=1.5, label=f"warning: {text}")  # fmt: skip


def correlation_figure(table: pd.DataFrame, context: FigureContext, alpha: float = 0.05) -> Figure:
    """Every unit's correlation per site as a strip, coloured by |r| (units with
    BH q >= ``alpha`` in grey); each site's unit of largest |r| is named.

    Examples
    --------
    >>> from queries.correlate import unit_correlations
    >>> context = FigureContext("toy", "en_ewt dev (en)", 698, None, ("toy/layer.0",))
    >>> table = unit_correlations(store, "toy/layer.0", "depth")
    >>> len(correlation_figure(table, context).axes)
    3
    """
    sites, target = _sites(table), table["target"].iloc[0]
    metrics = sorted(table["metric"].unique(), reverse=True)
    undefined = int(table["value"].isna().sum() // len(metrics))
    table = table[table["value"].notna()]
    details = [] if (table["n"] == context.n).all() else [_counted(table["n"], f"with {target}")]
    details += [f"{undefined} constant unit(s) left out"] if undefined else []
    caption = context.caption(", ".join(details))
    title = f"Correlation of each unit with {target}, by site"
    figure = _figure(max(6.5, 0.9 * len(sites) + 3), 2.8 * len(metrics) + 1.2, title, caption)
    axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    norm = Normalize(0.0, max(float(table["value"].abs().max()), 1e-12))
    jitter = np.random.default_rng(0)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, site in enumerate(sites):
            part = table[(table.site == site) & (table.metric == metric)]
            part = part.assign(size=part["value"].abs()).sort_values("size")  # strongest on top
            xs = i + jitter.uniform(-0.25, 0.25, len(part))
            weak = (part["q"] >= alpha).to_numpy()
            ax.scatter(xs[weak], part["value"][weak], s=5, color="0.78")
            ax.scatter(xs[~weak], part["value"][~weak], s=6, c=part["size"][~weak], norm=norm)
            if len(part):  # the strongest unit, ringed and named
                top = part.iloc[-1]
                ax.scatter(xs[-1], top["value"], s=30, facecolors="none", edgecolors="black")
                ax.annotate(f"unit {int(top['unit'])}", (xs[-1], top["value"]), xytext=(6, 0),
                            textcoords="offset points", fontsize=7, va="center")  # fmt: skip
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylabel(f"{metric} r")
        ax.set_title(f"{metric} (ringed and named: each site's unit of largest |r|)", fontsize=8)
    _site_axis(axes[-1], sites)
    figure.colorbar(ScalarMappable(norm, "viridis"), ax=list(axes), label="|r|", shrink=0.7)
    if (table["q"] >= alpha).any():
        grey = Line2D([], [], ls="", marker="o", markersize=3, color="0.78")
        figure.legend([grey], [f"BH q ≥ {alpha}"], loc="outside right upper", fontsize=7.5)
    return figure


def dynamics_figure(table: pd.DataFrame, context: FigureContext) -> Figure:
    """Mean over sentences of r(mean over units, covariate) per site, one bar per
    language; error bars ±1 standard error of that mean (SEM over sentences).

    Examples
    --------
    >>> from queries.dynamics import sentence_dynamics
    >>> context = FigureContext("toy", "en_ewt dev (en)", 698, None, ("toy/layer.0",))
    >>> table = sentence_dynamics(store, "toy/layer.0")
    >>> len(dynamics_figure(table, context).axes)
    1
    """
    sites, target = _sites(table), table["target"].iloc[0]
    langs = sorted(table["lang"].unique())
    caption = context.caption(_counted(table["n"], "sentences per site and language"))
    title = f"Sentence-level dynamics: activation (mean over units) against {target}"
    figure = _figure(max(6.0, 0.9 * len(sites) + 3), 4.2, title, caption)
    ax = figure.subplots()
    width = 0.8 / len(langs)
    for j, lang in enumerate(langs):
        part = table[table.lang == lang].set_index("site").reindex(sites)
        sem = part["sd"] / np.sqrt(part["n"].clip(lower=1))
        x = np.arange(len(sites)) + (j - (len(langs) - 1) / 2) * width
        ax.bar(x, part["value"], width, yerr=sem, label=lang, capsize=2)
    ax.axhline(0, color="black", lw=0.5)
    _site_axis(ax, sites)
    ax.set_ylabel(f"r(mean over units, {target}),\naveraged over sentences")
    title = "language\n(error bars: ±1 SEM\nover sentences)"
    figure.legend(loc="outside right upper", fontsize=8, title=title, title_fontsize=7.5)
    return figure


def measures_figure(table: pd.DataFrame, context: FigureContext) -> Figure:
    """Bar charts of the GRU analysis paper: one panel per measure and grouping column,
    categories sorted by value.

    Examples
    --------
    >>> from queries.measures import by_category, token_measures
    >>> context = FigureContext("toy", "en_ewt dev (en)", 698, None, ("toy/layer.0",))
    >>> values = token_measures(store, "toy/layer.0")
    >>> table = by_category(store, values, "toy/layer.0", min_count=20)
    >>> len([ax for ax in measures_figure(table, context).axes if ax.get_visible()])
    2
    """
    panels = list(table.groupby(["metric", "target"], sort=True))
    rows, columns = -(-len(panels) // 2), min(len(panels), 2)
    caption = context.caption(f"smallest category shown: {int(table['n'].min()):,} words")
    title = "Mean per category of " + ", ".join(table["metric"].unique())
    figure = _figure(6.5 * columns, 3.8 * rows + 0.8, title, caption)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, ((metric, column), part) in zip(axes, panels, strict=False):
        part = part.sort_values("value")
        ax.bar(part["category"].astype(str), part["value"], color="tab:blue")
        ax.tick_params(axis="x", rotation=90, labelsize=7)
        ax.set(xlabel=str(column), ylabel=f"mean {metric}")
        ax.set_title(f"{metric} by {column}", fontsize=9)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return figure


def lexical_map_figure(
    words: list[str],
    components: np.ndarray,
    counts: np.ndarray,
    activation: np.ndarray,
    title: str,
    context: FigureContext,
    *,
    hidden: np.ndarray | None = None,
    max_words: int = 200,
) -> Figure:
    """The lexical map of the LSTM probing paper for one unit.

    Position: the first two principal components; size: log(1 + frequency) x |mean
    activation|; colour: the unit's mean activation (a colour bar). The ``max_words``
    largest words are drawn, leaving out those where ``hidden`` is true (the verb hides
    function words and punctuation), unless that would leave none.

    Examples
    --------
    >>> from queries.selectivity import principal_components, type_means
    >>> context = FigureContext("toy", "en_ewt dev (en)", 698, None, ("toy/layer.0",))
    >>> means = type_means(store, "toy/layer.0", "form", min_count=2)
    >>> figure = lexical_map_figure(means.types, principal_components(means.means),
    ...     means.counts, means.means[:, 0], "unit 0", context)
    >>> figure.axes[0].get_title()
    'unit 0'
    """
    size = np.log1p(counts) * np.abs(activation)
    left_out = np.zeros(len(words), bool) if hidden is None else hidden
    pool = np.flatnonzero(~left_out) if (~left_out).any() else np.arange(len(words))
    shown = pool[np.argsort(-size[pool], kind="stable")[:max_words]]
    figure = _figure(9.5, 7.5, "Lexical map", "")
    ax = figure.subplots()
    low, high = float(activation.min()), float(activation.max())
    norm: Normalize = TwoSlopeNorm(0.0, low, high) if low < 0 < high else Normalize(low, high)
    points = 6 + 14 * size / max(float(size[shown].max()), 1e-12)  # font sizes
    texts = [
        ax.text(components[i, 0], components[i, 1], words[i], fontsize=float(points[i]),
                color=ACTIVATION_COLOURS(norm(activation[i])), ha="center", va="center")
        for i in shown
    ]  # fmt: skip
    pad = 0.06 * np.ptp(components[shown, :2], axis=0) + 1e-9
    ax.set_xlim(components[shown, 0].min() - pad[0], components[shown, 0].max() + pad[0])
    ax.set_ylim(components[shown, 1].min() - pad[1], components[shown, 1].max() + pad[1])
    ax.set(xlabel="PC 1 of the type means", ylabel="PC 2 of the type means")
    ax.set_title(title, fontsize=9)
    colours = ScalarMappable(norm, ACTIVATION_COLOURS)
    figure.colorbar(colours, ax=ax, label="colour: mean activation of the unit", shrink=0.6)
    picked = shown[np.argsort(size[shown], kind="stable")[[-1, len(shown) // 2, 0]]]
    aa: dict[str, Any] = {"ls": "", "marker": "$\\mathrm{Aa}$", "color": "0.3"}
    samples = [Line2D([], [], markersize=float(points[i]), **aa) for i in picked]
    figure.legend(samples, [f"{size[i]:.2g}" for i in picked], loc="outside right lower",
                  title="size: log(1 + frequency)\nx |mean activation|", fontsize=7,
                  title_fontsize=7, labelspacing=1.2, borderpad=1)  # fmt: skip
    drawn, out = _without_overlaps(figure, texts), int(left_out.sum())
    left = f" ({out} function words and punctuation left out)" if out else ""
    _caption(figure, context.caption(f"{len(words):,} types{left}; the {drawn} largest that "
                                     "overlap no larger one drawn"))  # fmt: skip
    return figure


def _without_overlaps(figure: Figure, texts: list[Any]) -> int:
    """Remove every text that overlaps one before it (largest first); how many are left."""
    renderer = FigureCanvasAgg(figure).get_renderer()  # type: ignore[no-untyped-call]
    figure.draw_without_rendering()  # the layout fixes where the words land
    kept: list[Any] = []
    for text in texts:
        box = text.get_window_extent(renderer)
        if any(box.overlaps(other) for other in kept):
            text.remove()
        else:
            kept.append(box)
    return len(kept)
