"""Figures of representational similarity: an RDM as a labelled heatmap, the layer
profile of the CNN paper (RSA of every site against one), and a site x site matrix.

As in :mod:`queries.plots`: matplotlib ``Figure`` objects without pyplot state, a title
and a caption line, labelled axes, colour bars outside the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from actstore.errors import ParameterError
from actstore.names import natural_key
from queries.plots import FigureContext, _figure  # the house figure: title and caption

ORDERS = ("label", "cluster")
MAX_TICKS = 60  # labels drawn on an RDM's axes; beyond, every n-th


def rdm_order(matrix: np.ndarray, labels: Sequence[str], order: str = "label") -> np.ndarray:
    """Positions of the conditions in drawing order: by label, or the leaves of an
    average-linkage clustering of the RDM (similar conditions side by side).

    Examples
    --------
    >>> m = np.array([[0, 2, 0.1], [2, 0, 2], [0.1, 2, 0]])
    >>> rdm_order(m, ["b", "a", "c"]).tolist(), rdm_order(m, ["b", "a", "c"], "cluster").tolist()
    ([1, 0, 2], [1, 0, 2])
    """
    if order not in ORDERS:
        raise ParameterError("order", f"{order!r} is not known; orders: {', '.join(ORDERS)}")
    if order == "label":
        return np.argsort(np.array(list(labels), dtype=object), kind="stable")
    values = np.nan_to_num(np.asarray(matrix, np.float64), nan=np.nanmax(matrix))
    # 1 - r of two identical profiles can round to -1e-15, which linkage refuses
    condensed = np.clip(squareform((values + values.T) / 2, checks=False), 0.0, None)
    return np.asarray(leaves_list(linkage(condensed, "average")), np.int64)


def rdm_figure(
    labels: Sequence[str],
    matrix: np.ndarray,
    order: str = "label",
    *,
    title: str = "representational dissimilarity matrix",
    caption: str = "",
    metric: str = "1 - Pearson r",
) -> Figure:
    """An RDM as a heatmap with its condition labels, ordered by label or by clustering.

    Examples
    --------
    >>> from queries.rdm import rdm
    >>> x = np.random.default_rng(0).normal(size=(6, 4))
    >>> figure = rdm_figure(list("fedcba"), rdm(x), order="cluster")
    >>> figure.axes[0].get_xlabel()
    'condition'
    """
    values = np.asarray(matrix, np.float64)
    if values.shape != (len(labels), len(labels)):
        raise ParameterError("labels", f"{len(labels)} labels for an RDM of shape {values.shape}")
    place = rdm_order(values, labels, order)
    side = min(12.0, 4.0 + 0.12 * len(labels))
    figure = _figure(side + 1.5, side + 0.5, title, caption)
    ax = figure.add_subplot()
    image = ax.imshow(values[np.ix_(place, place)], cmap="viridis", interpolation="nearest")
    step = max(1, -(-len(labels) // MAX_TICKS))
    ticks = np.arange(0, len(labels), step)
    names = [str(labels[i]) for i in place[ticks]]
    size = 7 if len(ticks) < 30 else 5
    ax.set_xticks(ticks, names, rotation=90, fontsize=size)
    ax.set_yticks(ticks, names, fontsize=size)
    ax.set_xlabel("condition")
    ax.set_ylabel("condition")
    ordered = "by label" if order == "label" else "by average-linkage clustering"
    ax.set_title(f"{len(labels):,} conditions, ordered {ordered}", fontsize=9)
    figure.colorbar(image, ax=ax, label=f"dissimilarity ({metric})", shrink=0.8)
    return figure


def _method(table: pd.DataFrame) -> str:
    method = str(table["method"].iloc[0])
    return {"kendall": "Kendall τ-a", "spearman": "Spearman rho", "pearson": "Pearson r"}[method]


def _about(table: pd.DataFrame) -> str:
    first = table.iloc[0]
    tested = f", {int(first['permutations']):,} permutations" if first["permutations"] else ""
    return f"{int(first['n_conditions']):,} conditions, RDM {first['metric']}{tested}"


def profile_figure(table: pd.DataFrame, context: FigureContext) -> Figure:
    """The layer profile: RSA of every site against one (``site_b``), with bootstrap
    intervals where the table has them; filled markers where p < 0.05.

    Examples
    --------
    >>> table = pd.DataFrame({"site_a": ["m/layer.0", "m/layer.1"], "site_b": "glove/vectors",
    ...     "metric": "correlation", "method": "spearman", "value": [0.2, 0.4],
    ...     "p": [0.2, 0.01], "ci_low": [0.1, 0.3], "ci_high": [0.3, 0.5],
    ...     "n_conditions": 50, "permutations": 99, "seed": 0})
    >>> profile_figure(table, FigureContext("m", "c", 10)).axes[0].get_ylabel()
    'RSA (Spearman rho)'
    """
    sites = sorted(table["site_a"].unique(), key=natural_key)
    rows = table.set_index("site_a").loc[sites]
    target = ", ".join(table["site_b"].unique())
    figure = _figure(max(5.0, 0.6 * len(sites) + 2), 4.2, f"RSA against {target}",
                     context.caption(_about(table)))  # fmt: skip
    ax = figure.add_subplot()
    x = np.arange(len(sites))
    values = rows["value"].to_numpy()
    if rows["ci_low"].notna().any():
        low, high = rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy()
        ax.errorbar(x, values, yerr=[values - low, high - values], color="0.4", capsize=3,
                    linestyle="none", label="95% bootstrap interval")  # fmt: skip
    ax.plot(x, values, color="#1d4f9a", zorder=2)
    significant = (rows["p"] < 0.05).to_numpy()
    ax.scatter(x[significant], values[significant], color="#1d4f9a", zorder=3, label="p < 0.05")
    ax.scatter(x[~significant], values[~significant], facecolor="white", edgecolor="#1d4f9a",
               zorder=3, label="p ≥ 0.05 (or not tested)")  # fmt: skip
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_xticks(x, [s.split("/", 1)[-1] for s in sites], rotation=30, ha="right")
    ax.set_xlabel("site")
    ax.set_ylabel(f"RSA ({_method(table)})")
    figure.legend(loc="outside right upper", fontsize=7)
    return figure


def rsa_figure(table: pd.DataFrame, context: FigureContext, against: str | None) -> Figure:
    """The figure of an RSA table: the layer profile when it was made ``--against`` one
    site, a site x site heatmap otherwise.

    Examples
    --------
    >>> table = pd.DataFrame({"site_a": ["a", "a", "b", "b"], "site_b": ["a", "b", "a", "b"],
    ...     "metric": "correlation", "method": "pearson", "value": [1, 0.5, 0.5, 1.0],
    ...     "p": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_conditions": 9,
    ...     "permutations": 0, "seed": 0})
    >>> rsa_figure(table, FigureContext("m", "c", 10), None).get_suptitle()
    'RSA between sites'
    """
    if against is not None and table["site_b"].nunique() == 1:
        return profile_figure(table, context)
    return site_matrix_figure(table, context)


def site_matrix_figure(table: pd.DataFrame, context: FigureContext) -> Figure:
    """Every site against every site as a heatmap, the values written in the cells.

    Examples
    --------
    >>> table = pd.DataFrame({"site_a": ["a", "a", "b", "b"], "site_b": ["a", "b", "a", "b"],
    ...     "metric": "correlation", "method": "pearson", "value": [1, 0.5, 0.5, 1.0],
    ...     "p": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_conditions": 9,
    ...     "permutations": 0, "seed": 0})
    >>> site_matrix_figure(table, FigureContext("m", "c", 10)).axes[0].get_xlabel()
    'site'
    """
    vmin = min(0.0, float(np.nanmin(table["value"])))
    return site_heatmap(
        table, "value", "RSA between sites", f"RSA ({_method(table)})",
        context.caption(_about(table)), vmin=vmin, cmap="magma",
    )  # fmt: skip


def site_heatmap(
    table: pd.DataFrame,
    value: str,
    title: str,
    label: str,
    caption: str,
    *,
    vmin: float = 0.0,
    cmap: str = "viridis",
) -> Figure:
    """A site x site heatmap of column ``value`` of a tidy table (``site_a`` down,
    ``site_b`` across, naturally sorted; the model left out of the tick labels when
    every site is of one model), on ``vmin``..1, the values written in the cells when
    there are at most 400: RSA's matrix and CKA's.
    """
    rows = sorted(table["site_a"].unique(), key=natural_key)
    columns = sorted(table["site_b"].unique(), key=natural_key)
    grid = table.pivot_table(index="site_a", columns="site_b", values=value).loc[rows, columns]
    width, height = 2.5 + 0.55 * len(columns), 2.0 + 0.45 * len(rows)
    figure = _figure(max(width, 5.0), max(height, 4.0), title, caption)
    ax = figure.add_subplot()
    image = ax.imshow(grid.to_numpy(float), cmap=cmap, vmin=vmin, vmax=1, aspect="auto")
    one_model = len({s.split("/", 1)[0] for s in [*rows, *columns]}) == 1
    ticks = [[s.split("/", 1)[-1] if one_model else s for s in sites] for sites in (rows, columns)]
    ax.set_xticks(range(len(columns)), ticks[1], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), ticks[0], fontsize=7)
    ax.set_xlabel("site")
    ax.set_ylabel("site")
    if grid.size <= 400:
        for (i, j), cell in np.ndenumerate(grid.to_numpy(float)):
            shade = "black" if cell > 0.6 else "white"
            ax.text(j, i, f"{cell:.2f}", ha="center", va="center", fontsize=6, color=shade)
    figure.colorbar(image, ax=ax, label=label, shrink=0.8)
    return figure
