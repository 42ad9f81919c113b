"""What ``actstore wordsim`` and ``actstore retrieve`` do (declared in
:mod:`queries.meaning_verbs`): compute the tidy table, print it, save it with its
provenance (``--save``) and draw it (``--plot``), as the other analysis verbs do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from actstore.errors import ParameterError
from actstore.output import Keep, Output
from queries.commands import _finish, _open
from queries.meaning_verbs import RetrieveOptions, RetrieveParams, WordsimOptions, WordsimParams

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def wordsim(
    chosen: WordsimParams, options: WordsimOptions, out: Output, keep: Keep
) -> pd.DataFrame:
    """``actstore wordsim``: rho, coverage and interval per site and set."""
    from queries.wordsim import similarity_result

    with _open(chosen.store, keep, out) as (store, wrote):
        result = similarity_result(
            store, chosen.sites, options.sets, lowercase=not options.cased,
            bootstrap=options.bootstrap, seed=options.seed,
        )  # fmt: skip
        return _finish(store, wrote, result, out, keep, lambda: wordsim_figure(result.frame))


def retrieve(
    chosen: RetrieveParams, options: RetrieveOptions, out: Output, keep: Keep
) -> pd.DataFrame:
    """``actstore retrieve``: recall@k, median rank and MRR; with ``--scramble`` the
    scrambled-order control of the ``--queries`` sites instead."""
    from queries.retrieve import retrieval_result, scrambled_control

    if keep.plot is not None:
        raise ParameterError("plot", "retrieve draws nothing yet; use --save or --format")
    with _open(chosen.store, keep, out) as (store, wrote):
        if options.scramble is not None:
            if options.model is None:
                raise ParameterError("model", "is needed with --scramble: the model to extract")
            result = scrambled_control(
                store, options.scramble, chosen.queries, options.model,
                seed=options.seed, k=options.k, pool=options.pool,
            )  # fmt: skip
        else:
            result = retrieval_result(
                store, chosen.queries, chosen.items, query_where=options.query_where,
                item_where=options.item_where, key=options.key, k=options.k,
                pool=options.pool, exclude_self=options.exclude_self,
            )  # fmt: skip
        return _finish(store, wrote, result, out, keep, lambda: None)


def wordsim_figure(table: pd.DataFrame) -> Figure:
    """Rho per site (x) and set (one series each), with the bootstrap interval as bars."""
    import numpy as np
    from matplotlib.figure import Figure

    sites = list(dict.fromkeys(table["site"]))
    figure = Figure(figsize=(max(4.0, 1.2 * len(sites) + 2), 3.5), layout="constrained")
    ax = figure.add_subplot()
    sets = list(dict.fromkeys(table["set"]))
    width = 0.8 / len(sets)
    for j, name in enumerate(sets):
        part = table[table["set"] == name].set_index("site").reindex(sites)
        x = np.arange(len(sites)) + (j - (len(sets) - 1) / 2) * width
        error: Any = np.vstack([part.rho - part.ci_low, part.ci_high - part.rho])
        coverage = f"{part.coverage.min():.0%}"
        ax.errorbar(x, part.rho, yerr=None if np.isnan(error).all() else error, fmt="o",
                    capsize=3, label=f"{name} (coverage ≥ {coverage})")  # fmt: skip
    ax.set_xticks(range(len(sites)), sites, rotation=30, ha="right")
    ax.set_xlabel("site")
    ax.set_ylabel("Spearman rho with human ratings")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    n = int(table["n_bootstrap"].iloc[0])
    figure.suptitle("Word similarity: cosine vs human scores", fontsize=11)
    figure.supxlabel(f"bars: 95% bootstrap interval ({n} resamples of the covered pairs)",
                     fontsize=7, color="0.3")  # fmt: skip
    return figure
