"""What ``actstore cka`` does (declared in :mod:`queries.cka_verbs`): the CKA table,
printed, saved with provenance and drawn as a site x site heatmap.

Examples
--------
>>> from actstore.output import Keep, Output
>>> from queries.cka_verbs import CKAOptions
>>> from queries.options import SitesParam
>>> store.close()  # the verb opens the store itself
>>> table = cka(SitesParam(store_path, "toy/*"), CKAOptions(), Output(quiet=True),
...             Keep(save="similarity"))
>>> len(table)
4
>>> with actstore.open(store_path) as saved:
...     saved.results["similarity"].provenance["analysis"]
'cka'
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from actstore.names import natural_key
from actstore.output import Keep, Output
from queries.cka_verbs import CKAOptions
from queries.commands import _finish, _open, _result, figure_context
from queries.options import SitesParam
from queries.plots import FigureContext, _figure  # the house figure: title and caption


def cka(sites: SitesParam, options: CKAOptions, out: Output, keep: Keep) -> pd.DataFrame:
    """``actstore cka``: CKA of every site of ``--sites`` with every site of
    ``--against`` (default: with each other)."""
    from queries.cka import CKA, cka_matrix, site_names

    with _open(sites.store, keep, out) as (store, wrote):
        first = site_names(store, sites.sites, "sites")
        second = first if options.against is None else site_names(store, options.against, "against")
        table = cka_matrix(store, first, second, where=options.where, debiased=options.debiased)
        names = list(dict.fromkeys([*first, *second]))
        result = _result(store, CKA, [table], names, options, options.where)

        def figure() -> Any:
            return cka_figure(result.frame, figure_context(store, names, options.where))

        return _finish(store, wrote, result, out, keep, figure)


def _labels(sites: list[str], every: set[str]) -> list[str]:
    """Site names without their model when every site drawn is of the same model."""
    one_model = len({s.split("/", 1)[0] for s in every}) == 1
    return [s.split("/", 1)[-1] if one_model else s for s in sites]


def cka_figure(table: pd.DataFrame, context: FigureContext) -> Figure:
    """A heatmap of CKA, ``site_a`` down, ``site_b`` across (values written in the cells
    when there are few), on a fixed 0-1 scale.

    Examples
    --------
    >>> from queries.cka import cka_matrix
    >>> table = cka_matrix(store, "toy/*")
    >>> context = FigureContext("toy", "en_ewt dev (en)", 698, None, ("toy/layer.0",))
    >>> len(cka_figure(table, context).axes)  # the map and its colour bar
    2
    """
    rows = sorted(table["site_a"].unique(), key=natural_key)
    columns = sorted(table["site_b"].unique(), key=natural_key)
    grid = table.pivot(index="site_a", columns="site_b", values="cka").reindex(rows)[columns]
    kind = "Debiased linear CKA" if bool(table["debiased"].iloc[0]) else "Linear CKA"
    width, height = 2.5 + 0.45 * len(columns), 2.0 + 0.4 * len(rows)
    figure = _figure(max(5.0, width), max(3.8, height), kind, context.caption())
    ax = figure.subplots()
    image = ax.imshow(grid.to_numpy(float), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    every = {*rows, *columns}
    ax.set_xticks(range(len(columns)), _labels(columns, every), rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), _labels(rows, every))
    ax.set_xlabel("site")
    ax.set_ylabel("site")
    if grid.size <= 144:
        for (r, c), value in np.ndenumerate(grid.to_numpy(float)):
            shade = "black" if value > 0.6 else "white"
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color=shade)
    figure.colorbar(image, ax=ax, label=kind, shrink=0.8)
    return figure
