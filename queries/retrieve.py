"""Retrieval by cosine: rank items for each query, score where the correct items are known.

Queries and items are rows of vectors (:class:`Vectors`): a site's rows (over
``sentences``, ``images`` or any table), or sentence vectors built from a token site
as the mean or the last of each sentence's word vectors (:func:`sentence_vectors`).
A ``key`` (a column or SQL expression of both tables: ``sentence_id``, ``label``) says
which items are correct. A query's rank is 1 + the number of items scoring strictly
above its best correct item (ties favour the query); recall@k is the share ranked k or
better. Cosines are computed in blocks of queries x items (:data:`BLOCK`), never all at
once. :func:`scrambled_control` is the scrambled-order control.

Examples
--------
>>> q = Vectors("sentences", np.arange(3), np.eye(3, dtype=np.float32))
>>> items = Vectors("sentences", np.arange(3), np.array([[0.2, 1, 0], [0, 1, 1], [0, 0, 1.0]]))
>>> query_ranks(q, items, np.arange(3), np.arange(3)).tolist()  # query 1: item 0 first
[1, 2, 1]
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

import actstore
from actstore import coverage
from actstore.errors import ParameterError, SchemaError
from actstore.sql import condition, quote_ident
from queries.results import Column, TableSchema, TidyResult, provenance
from queries.select import one_site, resolve_sites
from queries.sentences import sentence_bounds

How = Literal["mean", "last"]
HOWS: tuple[How, ...] = ("mean", "last")
BLOCK = 2048  # rows per side of one block of cosines: 2048 x 2048 float32 = 16 MiB

RETRIEVAL = TableSchema(
    "retrieve",
    (
        Column("query_site", "string"),
        Column("item_site", "string"),
        Column("condition", "string"),
        Column("metric", "string"),
        Column("k", "int64"),
        Column("value", "float64"),
        Column("n_queries", "int64"),
        Column("n_items", "int64"),
        Column("n_no_match", "int64"),
    ),
)


@dataclass(frozen=True)
class Vectors:
    """Rows of vectors: ``rows`` are row ids of ``table``, ``values`` one row each."""

    table: str
    rows: np.ndarray
    values: np.ndarray


def site_vectors(
    store: actstore.Store, site: str, *, where: str | None = None, pool: How = "mean"
) -> Vectors:
    """A site's vectors for retrieval: the rows of its table that ``where`` chooses; a
    site over ``tokens`` becomes sentence vectors (``pool`` of each sentence's words,
    ``where`` then chooses sentences).

    Examples
    --------
    >>> site_vectors(store, "toy/layer.0", where="row < 4").values.shape
    (4, 16)
    """
    info = store.site(site)
    if info.table == "tokens":
        chosen = None if where is None else store.rows(where, table="sentences")
        return sentence_vectors(store, site, pool, sentences=chosen)
    rows = store.rows(where, table=info.table)
    rows = rows[~coverage.outside(rows, list(info.covers))]
    if not len(rows):
        raise SchemaError(f"site {site}: no row of {info.table} chosen by where={where!r}")
    return Vectors(info.table, rows, store.site_reader(site).take(rows))


def sentence_vectors(
    store: actstore.Store,
    token_site: str,
    how: How = "mean",
    where: str | None = None,
    *,
    sentences: np.ndarray | None = None,
) -> Vectors:
    """One vector per sentence from a site over ``tokens``: the mean (float64 sums in one
    engine pass, :func:`queries.conditions.group_sums`) or the last of its words'
    vectors. ``where`` (SQL over
    ``tokens``) chooses the words, ``sentences`` the sentences (ids); a sentence left
    with no word is left out.

    Examples
    --------
    >>> view = sentence_vectors(store, "toy/layer.0", "last")
    >>> last = store.sql("SELECT max(row) AS r FROM tokens GROUP BY sentence_id ORDER BY 1").r
    >>> bool(np.array_equal(view.values, store.site_reader("toy/layer.0").take(last.values)))
    True
    """
    if how not in HOWS:
        raise ParameterError("how", f"must be one of {list(HOWS)}, got {how!r}")
    info = store.site(token_site)
    if info.table != "tokens":
        raise SchemaError(f"site {token_site} is over table {info.table}, not tokens")
    rows = store.rows(where)
    ids = store.columns(["sentence_id"]).column("sentence_id").to_numpy()[rows]
    if sentences is not None:
        keep = np.isin(ids, sentences)
        rows, ids = rows[keep], ids[keep]
    if not len(rows):
        raise SchemaError(f"site {token_site}: no word chosen (where={where!r})")
    bounds = sentence_bounds(ids)
    if how == "mean":  # one engine pass: float64 sums per sentence
        from queries.conditions import group_sums

        sizes = np.diff(bounds)
        codes = np.repeat(np.arange(len(sizes)), sizes)
        (sums,) = group_sums(store, [token_site], rows, codes, len(sizes))
        out = (sums / sizes[:, None]).astype(np.float32)
    else:
        out = store.site_reader(token_site).take(rows[bounds[1:] - 1])
    return Vectors("sentences", ids[bounds[:-1]], out)


def key_values(store: actstore.Store, table: str, rows: np.ndarray, key: str) -> pd.Series:
    """The value of ``key`` (a column or one SQL expression over ``table``) per row."""
    expression = condition(key, "key")
    query = f"SELECT row, ({expression}) AS key FROM {quote_ident(table)}"
    try:
        found = store.sql(query)
    except actstore.ActStoreError as exc:
        first = str(exc).splitlines()[0]
        detail = f"{key!r} is not a column or expression of {table}: {first}"
        raise ParameterError("key", detail) from None
    keys: pd.Series = found.set_index("row")["key"].reindex(rows).reset_index(drop=True)
    return keys


def shared_codes(query_keys: pd.Series, item_keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes for both key columns, equal where the values are (NULL: -1, -2).

    Examples
    --------
    >>> shared_codes(pd.Series(["a", None]), pd.Series(["b", "a", None]))
    (array([ 0, -1]), array([ 1,  0, -2]))
    """
    codes, _ = pd.factorize(pd.concat([query_keys, item_keys], ignore_index=True))
    q, i = codes[: len(query_keys)], codes[len(query_keys) :].copy()
    i[i < 0] = -2  # a NULL key matches nothing, not even a NULL
    return np.asarray(q), np.asarray(i)


def unit_rows(values: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32; a zero row stays zero, scoring 0 with all)."""
    norms = np.linalg.norm(values.astype(np.float64), axis=1, keepdims=True)
    unit = np.divide(values, norms, out=np.zeros(values.shape), where=norms > 0)
    return np.asarray(unit, np.float32)


def query_ranks(
    queries: Vectors,
    items: Vectors,
    query_codes: np.ndarray,
    item_codes: np.ndarray,
    *,
    exclude_self: bool = False,
    block: int = BLOCK,
) -> np.ndarray:
    """Per query, the rank of its best correct item by cosine (0: no correct item).

    Two passes over blocks of items: the best correct score, then the number of items
    scoring strictly above it. ``exclude_self`` leaves out the item with the query's own
    row (retrieving paraphrases from one table).
    """
    if queries.values.shape[1] != items.values.shape[1]:
        raise SchemaError(
            f"queries have {queries.values.shape[1]} units, items {items.values.shape[1]}"
        )
    q_unit, i_unit = unit_rows(queries.values), unit_rows(items.values)
    ranks = np.zeros(len(q_unit), np.int64)
    for q0 in range(0, len(q_unit), block):
        q = slice(q0, q0 + block)
        best = np.full(len(q_unit[q]), -np.inf, np.float32)
        for pass_ in ("best", "count"):
            above = np.zeros(len(best), np.int64)
            for i0 in range(0, len(i_unit), block):
                i = slice(i0, i0 + block)
                scores = q_unit[q] @ i_unit[i].T
                if exclude_self and queries.table == items.table:
                    scores[queries.rows[q][:, None] == items.rows[i][None, :]] = -np.inf
                if pass_ == "best":
                    correct = query_codes[q][:, None] == item_codes[i][None, :]
                    best = np.maximum(best, np.where(correct, scores, -np.inf).max(axis=1))
                else:
                    above += (scores > best[:, None]).sum(axis=1)
        ranks[q] = np.where(np.isfinite(best), above + 1, 0)
    return ranks


def summarise(ranks: np.ndarray, k: Sequence[int], n_items: int) -> list[dict[str, Any]]:
    """recall@k for each k, the median rank and the mean reciprocal rank, over the
    queries that have a correct item (rank > 0).

    Examples
    --------
    >>> [(r["metric"], r["k"], r["value"]) for r in summarise(np.array([1, 3, 0]), (1,), 5)]
    [('recall', 1, 0.5), ('median_rank', 0, 2.0), ('mrr', 0, 0.6666666666666666)]
    """
    found = ranks[ranks > 0]
    n = len(found)
    shared = {"n_queries": n, "n_items": n_items, "n_no_match": int((ranks == 0).sum())}
    nan = float("nan")
    out: list[dict[str, Any]] = [
        {"metric": "recall", "k": kk, "value": float((found <= kk).mean()) if n else nan}
        for kk in k
    ]
    out.append({"metric": "median_rank", "k": 0, "value": float(np.median(found)) if n else nan})
    out.append({"metric": "mrr", "k": 0, "value": float((1 / found).mean()) if n else nan})
    return [{**row, **shared} for row in out]


def check_k(k: Sequence[int]) -> tuple[int, ...]:
    """The cut-offs, each a positive integer, without repeats."""
    values = tuple(dict.fromkeys(int(v) for v in k))
    if not values or min(values) < 1:
        raise ParameterError("k", f"takes positive integers such as 1,5,10; got {list(k)}")
    return values


def retrieve(
    store: actstore.Store,
    queries_site: str,
    items_site: str,
    *,
    query_where: str | None = None,
    item_where: str | None = None,
    key: str | None = None,
    k: Sequence[int] = (1, 5, 10),
    pool: How = "mean",
    exclude_self: bool = False,
) -> pd.DataFrame:
    """recall@k, median rank and MRR of retrieving items by cosine to queries.

    ``queries_site`` and ``items_site`` are sites (or globs matching one) of ``store``;
    a token site is pooled into sentence vectors by ``pool``. ``key`` says which items
    are correct for a query (equal values); without it, the item of the query's own
    row (both sites over one table).

    Examples
    --------
    >>> table = retrieve(store, "toy/layer.0", "toy/layer.0", k=(1,))
    >>> table[["metric", "value", "n_queries"]].values.tolist()[0]
    ['recall', 1.0, 30]
    """
    cuts = check_k(k)
    q_site, i_site = one_site(store, queries_site, "queries"), one_site(store, items_site, "items")
    queries = site_vectors(store, q_site, where=query_where, pool=pool)
    items = site_vectors(store, i_site, where=item_where, pool=pool)
    if key is None:
        if queries.table != items.table:
            raise ParameterError(
                "key", f"is needed: queries are rows of {queries.table}, items of {items.table}"
            )
        q_codes, i_codes = shared_codes(pd.Series(queries.rows), pd.Series(items.rows))
    else:
        q_codes, i_codes = shared_codes(
            key_values(store, queries.table, queries.rows, key),
            key_values(store, items.table, items.rows, key),
        )
    ranks = query_ranks(queries, items, q_codes, i_codes, exclude_self=exclude_self)
    sites = {"query_site": q_site, "item_site": i_site, "condition": "as stored"}
    records = [{**sites, **row} for row in summarise(ranks, cuts, len(items.rows))]
    return RETRIEVAL.frame(records)


def retrieval_result(
    store: actstore.Store, queries_site: str, items_site: str, **options: Any
) -> TidyResult:
    """:func:`retrieve` as a typed result with its provenance (every option, defaults too)."""
    bound = inspect.signature(retrieve).bind(store, queries_site, items_site, **options)
    bound.apply_defaults()
    frame = retrieve(*bound.args, **bound.kwargs)
    parameters = {name: bound.arguments[name] for name in list(bound.arguments)[3:]}
    sites = list(dict.fromkeys([frame["query_site"][0], frame["item_site"][0]]))
    return TidyResult(RETRIEVAL, frame, provenance(store, "retrieve", sites, parameters))


CELLS = ("form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


def write_conllu(store: actstore.Store, path: Path) -> int:
    """Write the store's sentences as CoNLL-U, in ``sentence_id`` order (sentence ``i``
    of the file is sentence ``i`` of the store), each word with its columns as stored
    (multiword tokens become their words); returns the number of sentences. A sentence
    without a ``sent_id`` gets its ``sentence_id``.

    Examples
    --------
    >>> write_conllu(store, tmp / "s.conllu")
    30
    """
    words = store.columns(["sentence_id", "position", *CELLS]).to_pydict()
    sentences = store.sql("SELECT sentence_id, sent_id, text FROM sentences ORDER BY row")
    if not np.array_equal(sentences["sentence_id"], np.arange(len(sentences))):
        raise SchemaError("the sentences table's sentence_id must run 0, 1, 2, ... in row order")
    cells = [["_" if v is None else str(v) for v in words[c]] for c in ("position", *CELLS)]
    lines: list[str] = []
    word = 0
    for sid, sent_id, text in sentences.itertuples(index=False):
        lines.append(f"# sent_id = {sent_id or sid}")
        lines += [] if text is None or pd.isna(text) else [f"# text = {text}"]
        while word < len(words["sentence_id"]) and words["sentence_id"][word] == sid:
            lines.append("\t".join(column[word] for column in cells))
            word += 1
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(sentences)


def scrambled_control(
    store: actstore.Store,
    out: Path,
    sites: str,
    model: str,
    *,
    seed: int = 0,
    k: Sequence[int] = (1, 5, 10),
    pool: How = "mean",
) -> TidyResult:
    """The scrambled-order control of sentence vectors.

    Writes the store's sentences with :func:`write_conllu` (the CoNLL-U kept beside
    ``out``), ingests them in a new store ``out`` with each sentence's words shuffled
    (``ingest_conllu(..., shuffle_words=seed)``: sentence ``i`` by
    ``default_rng([seed, i])``, ``i`` being its ``sentence_id`` here), extracts ``sites``
    of ``model`` there (the registered ``extract`` verb), and per site retrieves each
    original sentence among all originals from its scrambled version: recall@k, median
    rank, MRR, and the mean cosine of a sentence with its scrambled version
    (``paired_cosine``) beside that of two different original sentences
    (``other_cosine``). Token sites are pooled into sentences by ``pool``.
    """
    from actstore.verbs import verb  # extraction only through the registered verb

    names = resolve_sites(store, sites)
    cuts = check_k(k)
    conllu = out.with_name(out.name + ".conllu")
    write_conllu(store, conllu)
    lang = store.sql("SELECT any_value(lang) AS lang FROM sentences")["lang"][0]
    with actstore.create(out) as scrambled:
        actstore.ingest_conllu(
            scrambled, [conllu], corpus="scrambled", lang=lang, split="all", shuffle_words=seed
        )
    short = ",".join(name.split("/", 1)[1] for name in names)
    verb("extract")(store=out, model=model, sites=short, quiet=True)
    records: list[dict[str, Any]] = []
    with actstore.open(out) as scrambled:
        for name in names:
            items = site_vectors(store, name, pool=pool)
            queries = site_vectors(scrambled, name, pool=pool)
            codes = shared_codes(pd.Series(queries.rows), pd.Series(items.rows))
            ranks = query_ranks(queries, items, *codes)
            rows = summarise(ranks, cuts, len(items.rows))
            rows += [{**rows[-1], "metric": m, "value": v}
                     for m, v in _cosines(queries, items).items()]  # fmt: skip
            records += [{"query_site": name, "item_site": name,
                         "condition": f"scrambled (seed {seed})", **r} for r in rows]  # fmt: skip
    parameters = {"scrambled_store": str(out), "model": model, "seed": seed, "k": list(cuts),
                  "pool": pool}  # fmt: skip
    return TidyResult(RETRIEVAL, RETRIEVAL.frame(records),
                      provenance(store, "retrieve_scrambled", names, parameters))  # fmt: skip


def _cosines(queries: Vectors, items: Vectors) -> dict[str, float]:
    """Mean cosine of each sentence with its scrambled self, and of distinct originals
    (from the sum of unit vectors: sum over i != j of u_i.u_j = |sum u|^2 - n)."""
    position = {int(r): i for i, r in enumerate(items.rows)}
    mine = np.array([position[int(r)] for r in queries.rows])
    q, i = unit_rows(queries.values).astype(np.float64), unit_rows(items.values).astype(np.float64)
    paired = float(np.einsum("ij,ij->i", q, i[mine]).mean())
    n, total = len(i), i.sum(axis=0)
    other = float((total @ total - (i * i).sum()) / (n * (n - 1))) if n > 1 else float("nan")
    return {"paired_cosine": paired, "other_cosine": other}
