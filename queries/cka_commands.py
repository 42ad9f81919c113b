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

import pandas as pd
from matplotlib.figure import Figure

from actstore.output import Keep, Output
from queries.cka_verbs import CKAOptions
from queries.commands import _finish, _open, _result, figure_context
from queries.options import SitesParam
from queries.plots import FigureContext
from queries.rsa_plots import site_heatmap


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
    kind = "Debiased linear CKA" if bool(table["debiased"].iloc[0]) else "Linear CKA"
    return site_heatmap(table, "cka", kind, kind, context.caption())
