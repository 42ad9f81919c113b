"""What ``actstore rsa`` does (declared in :mod:`queries.rsa_verbs`).

Examples
--------
>>> store.close()  # the verb opens the store itself
>>> table = rsa(SitesParam(store_path, "toy/*"), RSAOptions(by="upos", min_count=20,
...             permutations=19), Output(quiet=True), Keep(save="rsa_upos"))
>>> len(table), table["permutations"].unique().tolist()
(4, [19])
>>> with actstore.open(store_path) as saved:
...     saved.results["rsa_upos"].provenance["analysis"], len(saved.results)
('rsa', 3)
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from actstore.output import Keep, Output
from queries.options import SitesParam
from queries.rsa_verbs import RSAOptions


def rsa(chosen: SitesParam, options: RSAOptions, out: Output, keep: Keep) -> pd.DataFrame:
    """``actstore rsa``: RSA of every site against every ``--against`` site (or every
    site against every other). With ``--save NAME`` the table is saved as ``NAME`` and
    every RDM as a matrix result ``rdm_<site>_<digest>``, reused by later runs with the
    same settings. The plot is the layer profile when ``--against`` is one site, a site
    x site heatmap otherwise."""
    from queries.commands import _finish, _open, figure_context
    from queries.results import TidyResult, provenance
    from queries.rsa import RSA_TABLE, rsa_matrix
    from queries.rsa_plots import rsa_figure

    if options.test != "rsa":
        return _tests(chosen, options, out, keep)
    with _open(chosen.store, keep, out) as (store, wrote):
        table = rsa_matrix(
            store, chosen.sites, options.against, by=options.by, by_b=options.against_by,
            where=options.where, where_b=options.against_where, min_count=options.min_count,
            min_count_b=options.against_min_count, metric=options.metric,
            method=options.method, permutations=options.permutations,
            bootstrap=options.bootstrap, seed=options.seed, keep_rdms=bool(keep.save),
        )  # fmt: skip
        names = list(dict.fromkeys([*table["site_a"], *table["site_b"]]))
        made = provenance(store, "rsa", names, options, options.where)
        result = TidyResult(RSA_TABLE, table, made)
        if keep.save:
            wrote.append(f"saved the RDMs of {len(names)} site(s) as rdm_* in {store.location}")

        def figure() -> Any:
            context = figure_context(store, sorted(set(table["site_a"])), options.where)
            return rsa_figure(table, context, options.against)

        return _finish(store, wrote, result, out, keep, figure)


def _tests(chosen: SitesParam, options: RSAOptions, out: Output, keep: Keep) -> pd.DataFrame:
    """``--test 2v2`` (every site against every ``--against`` site) or ``--test 1v2``."""
    from actstore.errors import ParameterError
    from queries.commands import _finish, _open
    from queries.results import TidyResult, provenance
    from queries.select import resolve_sites
    from queries.twovtwo_store import ONE_VS_TWO, TWO_VS_TWO, one_vs_two_store, two_vs_two_sites

    if options.against is None:
        raise ParameterError("against", f"is needed with --test {options.test}: the other space")
    if keep.plot is not None:
        raise ParameterError("plot", f"draws RSA tables; --test {options.test} has no plot")
    with _open(chosen.store, keep, out) as (store, wrote):
        sites, others = resolve_sites(store, chosen.sites), resolve_sites(store, options.against)
        common: dict[str, Any] = {"permutations": options.permutations, "seed": options.seed}
        if options.test == "2v2":
            frames = [
                two_vs_two_sites(
                    store,
                    a,
                    b,
                    by_a=options.by,
                    by_b=options.against_by or options.by,
                    where_a=options.where,
                    where_b=options.against_where,
                    min_count=options.min_count,
                    min_count_b=options.against_min_count,
                    **common,
                )
                for a in sites
                for b in others
            ]
            schema = TWO_VS_TWO
        else:
            frames = [
                one_vs_two_store(
                    store,
                    a,
                    b,
                    label=options.by,
                    word_by=options.against_by or "word",
                    where=options.where,
                    **common,
                ).summary
                for a in sites
                for b in others
            ]
            schema = ONE_VS_TWO
        table = pd.concat(frames, ignore_index=True)
        made = provenance(store, options.test, [*sites, *others], options, options.where)
        return _finish(store, wrote, TidyResult(schema, table, made), out, keep, lambda: None)
