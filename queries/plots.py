"""Plots of analysis tables, as matplotlib ``Figure`` objects (no pyplot state).

Each function takes the tidy table its analysis returns; :func:`save` writes a PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from actstore.names import natural_key


def save(figure: Figure, path: Path) -> None:
    """Write ``figure`` as a PNG, making the folder if needed.

    Examples
    --------
    >>> save(Figure(), tmp / "plots" / "empty.png")
    >>> (tmp / "plots" / "empty.png").read_bytes()[:4]
    b'\\x89PNG'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def _sites(table: pd.DataFrame) -> list[str]:
    return sorted(table["site"].unique(), key=natural_key)


def _short(site: str) -> str:
    return site.split("/", 1)[-1]


def probe_figure(table: pd.DataFrame) -> Figure:
    """Accuracy per site (one line per word offset), with majority and control dashed;
    accuracies the table warns about (not above majority, control within 2 points) are
    ringed in red.

    Examples
    --------
    >>> from queries.probe import probe
    >>> from queries.options import ProbeOptions
    >>> options = ProbeOptions("upos", control=True, device="cpu")
    >>> len(probe_figure(probe(store, "toy/layer.0", options)).axes)
    1
    """
    if "label" in table:
        table = table[table["label"].fillna("") == ""]
    score = "accuracy" if (table["metric"] == "accuracy").any() else "r2"  # r2: regression
    sites = _sites(table)
    figure = Figure(figsize=(max(5.0, 0.9 * len(sites) + 2), 3.8))
    ax = figure.subplots()
    x = np.arange(len(sites))
    warned = False
    for offset, group in table.groupby("word_offset"):
        value = group.pivot_table(index="site", columns="metric", values="value")
        value = value.reindex(sites)
        label = "w" if offset == 0 else f"w{offset:+d}"
        (line,) = ax.plot(x, value[score], marker="o", label=f"{score} ({label})")
        if "control_accuracy" in value:
            ax.plot(
                x,
                value["control_accuracy"],
                ls=":",
                color=line.get_color(),
                label=f"control ({label})",
            )
        if "warning" in group:
            flagged = group[(group.metric == score) & (group.warning.fillna("") != "")]
            if len(flagged):
                at = [sites.index(site) for site in flagged["site"]]
                ax.scatter(at, flagged["value"], s=140, facecolors="none", edgecolors="red",
                           label=None if warned else "warning (see table)")  # fmt: skip
                warned = True
    if score == "accuracy":
        majority = table[table.metric == "majority"].groupby("site")["value"].mean()
        ax.plot(x, majority.reindex(sites), ls="--", color="grey", label="majority class")
    ax.set_xticks(x, [_short(s) for s in sites], rotation=30, ha="right")
    lowest = float(table.loc[table.metric == score, "value"].min())
    ax.set_ylim(min(0.0, lowest - 0.05), 1)
    ax.set_ylabel(score if score == "accuracy" else "R² on the test words")
    ax.set_title(f"probe: {table['target'].iloc[0]}")
    ax.legend(fontsize=7, loc="lower right")
    return figure


def correlation_figure(table: pd.DataFrame, alpha: float = 0.05) -> Figure:
    """Every unit's correlation per site as a strip; units with q < ``alpha`` in colour.

    Examples
    --------
    >>> from queries.correlate import unit_correlations
    >>> len(correlation_figure(unit_correlations(store, "toy/layer.0", "depth")).axes)
    2
    """
    sites = _sites(table)
    metrics = sorted(table["metric"].unique(), reverse=True)
    figure = Figure(figsize=(max(5.0, 0.9 * len(sites) + 2), 3.2 * len(metrics)))
    axes = np.atleast_1d(figure.subplots(len(metrics), 1, squeeze=False)[:, 0])
    jitter = np.random.default_rng(0)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, site in enumerate(sites):
            part = table[(table.site == site) & (table.metric == metric)]
            xs = i + jitter.uniform(-0.3, 0.3, len(part))
            strong = (part["q"] < alpha).to_numpy()
            ax.scatter(xs[~strong], part["value"][~strong], s=4, color="lightgrey")
            ax.scatter(xs[strong], part["value"][strong], s=4, color="tab:red")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xticks(range(len(sites)), [_short(s) for s in sites], rotation=30, ha="right")
        ax.set_ylabel(f"{metric} r")
        ax.set_title(f"units vs {table['target'].iloc[0]} (red: q < {alpha})", fontsize=9)
    return figure


def dynamics_figure(table: pd.DataFrame) -> Figure:
    """Mean sentence-level r per site, one bar per language, error bars one SEM.

    Examples
    --------
    >>> from queries.dynamics import sentence_dynamics
    >>> len(dynamics_figure(sentence_dynamics(store, "toy/layer.0")).axes)
    1
    """
    sites = _sites(table)
    langs = sorted(table["lang"].unique())
    figure = Figure(figsize=(max(5.0, 0.9 * len(sites) + 2), 3.6))
    ax = figure.subplots()
    width = 0.8 / len(langs)
    for j, lang in enumerate(langs):
        part = table[table.lang == lang].set_index("site").reindex(sites)
        sem = part["sd"] / np.sqrt(part["n"].clip(lower=1))
        x = np.arange(len(sites)) + (j - (len(langs) - 1) / 2) * width
        ax.bar(x, part["value"], width, yerr=sem, label=lang, capsize=2)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(range(len(sites)), [_short(s) for s in sites], rotation=30, ha="right")
    ax.set_ylabel(f"mean r(activation, {table['target'].iloc[0]})")
    ax.set_title("sentence-level dynamics")
    ax.legend(fontsize=8)
    return figure


def measures_figure(table: pd.DataFrame) -> Figure:
    """Bar charts of the GRU analysis paper: one panel per measure and grouping column,
    categories sorted by value.

    Examples
    --------
    >>> from queries.measures import by_category, save_measures, token_measures
    >>> save_measures(store, token_measures(store, "toy/layer.0"))
    >>> table = by_category(store, "measures", "toy/layer.0", min_count=20)
    >>> len([ax for ax in measures_figure(table).axes if ax.get_visible()])
    2
    """
    panels = list(table.groupby(["metric", "target"], sort=True))
    figure = Figure(figsize=(6.5 * min(len(panels), 2), 3.6 * -(-len(panels) // 2)))
    axes = figure.subplots(-(-len(panels) // 2), min(len(panels), 2), squeeze=False).ravel()
    for ax, ((metric, column), part) in zip(axes, panels, strict=False):
        part = part.sort_values("value")
        ax.bar(part["category"].astype(str), part["value"], color="tab:blue")
        ax.tick_params(axis="x", rotation=90, labelsize=7)
        ax.set_title(f"{metric} by {column} (n >= {int(part['n'].min())})", fontsize=9)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return figure


def lexical_map_figure(
    words: list[str],
    components: np.ndarray,
    counts: np.ndarray,
    activation: np.ndarray,
    title: str,
    max_words: int = 300,
) -> Figure:
    """The lexical map of the LSTM probing paper for one unit.

    Position: first two principal components; colour: first three as RGB; size:
    log(1 + frequency) x |mean activation|; opacity: the activation's place between
    the unit's lowest and highest type mean. The ``max_words`` largest words are drawn.

    Examples
    --------
    >>> from queries.selectivity import principal_components, type_means
    >>> means = type_means(store, "toy/layer.0", "form", min_count=2)
    >>> figure = lexical_map_figure(means.types, principal_components(means.means),
    ...                             means.counts, means.means[:, 0], "unit 0")
    >>> figure.axes[0].get_title()
    'unit 0'
    """
    size = np.log1p(counts) * np.abs(activation)
    shown = np.argsort(-size)[:max_words]
    rgb = components[:, :3] if components.shape[1] >= 3 else np.pad(components, ((0, 0), (0, 1)))
    lo, hi = rgb.min(axis=0), rgb.max(axis=0)
    rgb = 0.15 + 0.7 * (rgb - lo) / np.where(hi > lo, hi - lo, 1.0)
    span = activation.max() - activation.min()
    opacity = 0.25 + 0.75 * (activation - activation.min()) / (span if span > 0 else 1.0)
    figure = Figure(figsize=(9, 7))
    ax = figure.subplots()
    points = 4 + 18 * size / max(float(size.max()), 1e-12)
    for i in shown:
        ax.text(
            components[i, 0],
            components[i, 1],
            words[i],
            fontsize=float(points[i]),
            color=tuple(rgb[i]),
            alpha=float(opacity[i]),
            ha="center",
            va="center",
        )
    pad = 0.05 * np.ptp(components[shown, :2], axis=0)
    ax.set_xlim(components[shown, 0].min() - pad[0], components[shown, 0].max() + pad[0])
    ax.set_ylim(components[shown, 1].min() - pad[1], components[shown, 1].max() + pad[1])
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    return figure
