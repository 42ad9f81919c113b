"""What ``actstore report`` says of a store's corpus and sites: plain dicts and lists for
the page's template (:mod:`queries.report`), every number read from the store.

Examples
--------
>>> corpus = corpus_section(store)
>>> corpus["tables"][0]["name"], corpus["tables"][0]["n_rows"]
('tokens', 698)
>>> [s["name"] for s in sites_section(store)["sites"]][:2]
['toy/layer.0', 'toy/layer.1']
"""

from __future__ import annotations

import json
from typing import Any

import actstore
from actstore.ingest import BASE_COLUMNS
from actstore.names import natural_key, quote_ident
from actstore.summary import stored_bytes

EXTRA_COLUMNS = ("original_position", "shuffle_seed")  # not features (the shuffled control)
TOP_VALUES = 6  # values of a feature named with their share; the rest are counted


def corpus_section(store: actstore.Store) -> dict[str, Any]:
    """The row tables (name, rows, parts, sources), the corpora by language and split,
    and, for a ``tokens`` table, its UPOS and feature distributions."""
    tables = [
        {"name": name, "n_rows": info.n_rows, "n_parts": info.n_parts}
        for name, info in store.tables.items()
        if name not in store.results
    ]
    section: dict[str, Any] = {"tables": tables, "sources": [vars(s) for s in store.sources]}
    # word-shuffled copies (ingest --shuffle-words) repeat their originals' annotations:
    # listed apart, and left out of the distributions
    originals = "TRUE"  # the condition picking the rows the distributions count
    if "sentences" in store.tables:
        shuffled = "shuffle_seed" in store.schema("sentences").names
        seed = "shuffle_seed, " if shuffled else "NULL AS shuffle_seed, "
        section["corpora"] = _records(
            store.sql(
                f"SELECT corpus, lang, split, {seed}count(*) AS sentences, "
                "sum(n_words)::BIGINT AS words FROM sentences GROUP BY ALL ORDER BY ALL"
            )
        )
    if "tokens" in store.tables and store.n_rows("tokens"):
        if "shuffle_seed" in store.schema("tokens").names:
            originals = "shuffle_seed IS NULL"
            section["shuffled_left_out"] = int(
                store.sql("SELECT count(*) AS n FROM tokens WHERE shuffle_seed IS NOT NULL")["n"][0]
            )
        section["upos"] = _records(
            store.sql(
                "SELECT coalesce(upos, '_') AS upos, count(*) AS n, "
                f"100.0 * count(*) / sum(count(*)) OVER () AS pct FROM tokens WHERE {originals} "
                "GROUP BY ALL ORDER BY n DESC, upos"
            )
        )
        section["features"] = _features(store, originals)
    if "images" in store.tables and store.n_rows("images"):
        section["labels"] = _records(
            store.sql("SELECT label, count(*) AS n FROM images GROUP BY ALL ORDER BY n DESC, label")
        )
    return section


def _records(frame: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in frame.to_dict("records")]


def _features(store: actstore.Store, originals: str) -> list[dict[str, Any]]:
    """Each UD feature column: the words that have it, and its most frequent values
    (``originals``: the SQL condition leaving out word-shuffled copies, or TRUE)."""
    known = {*BASE_COLUMNS, *EXTRA_COLUMNS}
    names = [n for n in store.schema("tokens").names if n not in known]
    if not names:
        return []
    counts = store.sql(
        " UNION ALL ".join(
            f"SELECT {i} AS i, {quote_ident(n)}::VARCHAR AS value, count(*) AS n FROM tokens "
            f"WHERE {quote_ident(n)} IS NOT NULL AND {originals} GROUP BY ALL"
            for i, n in enumerate(names)
        )
    )
    total = int(store.sql(f"SELECT count(*) AS n FROM tokens WHERE {originals}")["n"][0])
    features = []
    for i, name in enumerate(names):
        mine = counts[counts["i"] == i].sort_values(["n", "value"], ascending=[False, True])
        n = int(mine["n"].sum())
        values = [
            {"value": v, "n": int(c), "pct": 100.0 * c / n}
            for v, c in zip(mine["value"][:TOP_VALUES], mine["n"][:TOP_VALUES], strict=True)
        ]
        features.append(
            {"name": name, "n": n, "pct": 100.0 * n / total, "n_values": len(mine),
             "values": values, "more": max(len(mine) - TOP_VALUES, 0)}
        )  # fmt: skip
    return sorted(features, key=lambda f: (-f["n"], f["name"]))


def sites_section(store: actstore.Store) -> dict[str, Any]:
    """Every site: model, table, shape, dtype, chunks done, bytes, coverage of its table,
    the provenance a reader checks first (weights hash, alignment, windowed sentences,
    flagged words, pooling), and its whole provenance as JSON."""
    sites = []
    for name in sorted(store.sites, key=natural_key):
        info = store.site(name)
        made = info.provenance
        table_rows = store.n_rows(info.table)
        weights = made.get("weights_sha256")
        if isinstance(weights, dict):
            weights = ", ".join(f"{k} {str(v)[:12]}…" for k, v in sorted(weights.items()))
        elif weights:
            weights = f"{str(weights)[:12]}…"
        sites.append(
            {
                "name": name,
                "model": made.get("model") or name.split("/", 1)[0],
                "extractor": made.get("extractor"),
                "table": info.table,
                "shape": " \N{MULTIPLICATION SIGN} ".join(f"{n:,}" for n in info.shape),
                "dtype": info.dtype,
                "codec": info.codec,
                "status": info.status,
                "chunks": f"{info.done_chunks:,}/{info.n_chunks:,}",
                "bytes": stored_bytes(store.storage, info.path),
                "covered": info.n_covered,
                "table_rows": table_rows,
                "covers_table": info.n_covered == table_rows,
                "weights": weights,
                "align": made.get("align"),
                "windowed": made.get("n_windowed_sentences"),
                "flagged": _flagged(made.get("flagged_words")),
                "pooling": made.get("pooling"),
                "compute": made.get("compute"),
                "provenance": json.dumps(made, indent=1, sort_keys=True, default=str),
            }
        )
    return {"sites": sites, "bytes": sum(s["bytes"] for s in sites)}


def _flagged(flagged: Any) -> str | None:
    if not isinstance(flagged, dict):
        return None
    named = [f"{n:,} {kind.replace('_', ' ')}" for kind, n in flagged.items() if n]
    return ", ".join(named) or "none"


def site_warnings(sites: list[dict[str, Any]]) -> list[str]:
    """Sites that are not complete, or that do not cover their table.

    Examples
    --------
    >>> site_warnings([{"name": "m/a", "status": "complete", "covers_table": False,
    ...                 "covered": 10, "table_rows": 12, "table": "tokens"}])
    ['site m/a covers 10 of the 12 rows of tokens (extract again to grow it)']
    """
    warnings = []
    for site in sites:
        if site["status"] != "complete":
            warnings.append(f"site {site['name']} is {site['status']}: resume its extraction")
        elif not site["covers_table"]:
            warnings.append(
                f"site {site['name']} covers {site['covered']:,} of the {site['table_rows']:,} "
                f"rows of {site['table']} (extract again to grow it)"
            )
    return warnings
