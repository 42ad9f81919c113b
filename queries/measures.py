"""Distance reduction ``dred``, mean update gate ``zmean`` and ``keep`` (METHODS.md,
"Distance reduction dred and mean update gate zmean (GRU analysis)").

For a sentence of n words with states h_1..h_n at a site and h_full = h_n:
d_t = cosine distance(h_t, h_full), d_0 = 1 (the zero initial state), and
dred_t = d_{t-1} - d_t. A state of norm zero is treated like h_0 (d = 1).

``zmean_t`` is the mean over units of a GRU update-gate site as the model computes
it. The convention is read from the gate site's ``provenance["gate_convention"]``:
``torch`` (h_t = (1 - z)·n_t + z·h_{t-1}: z weighs the past) or ``cho``
(h_t = (1 - z)·h_{t-1} + z·h̃_t). ``keep_t`` is the convention-free mean weight on
h_{t-1}: zmean under ``torch``, 1 - zmean under ``cho``.

The measures are computed for every row of the table, one block of whole sentences
at a time, and written as a results table ``(row, dred[, zmean, keep])`` that joins
``tokens`` by ``row`` in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

import actstore
from actstore.errors import SchemaError
from queries.engine import Selection, map_blocks
from queries.options import MeasuresOptions
from queries.results import Column, TableSchema, TidyResult, provenance
from queries.select import one_site, require_tokens, token_column, where_clause
from queries.sentences import sentence_bounds

CONVENTIONS = ("torch", "cho")

TOKEN_MEASURES = TableSchema(
    "measures",
    (
        Column("row", "int64"),
        Column("dred", "float64"),
        Column("zmean", "float64", required=False),
        Column("keep", "float64", required=False),
    ),
)
BY_CATEGORY = TableSchema(
    "measures",
    (
        Column("site", "string"),
        Column("target", "string"),
        Column("category", "string"),
        Column("metric", "string"),
        Column("value", "float64"),
        Column("n", "int64"),
    ),
)


def distance_reduction(states: np.ndarray, sentence: np.ndarray) -> np.ndarray:
    """``dred`` of every row; rows are the words of whole sentences, in order.

    Examples
    --------
    >>> distance_reduction(np.array([[1.0, 0], [1, 1], [0, 1]]), np.array([0, 0, 0])).round(3)
    array([0.   , 0.707, 0.293])
    """
    x = np.asarray(states, np.float64)
    bounds = sentence_bounds(sentence)
    counts = np.diff(bounds)
    final = x[np.repeat(bounds[1:] - 1, counts)]
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(final, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = np.where(norms > 0, 1.0 - np.einsum("ij,ij->i", x, final) / norms, 1.0)
    before = np.concatenate([[1.0], distance[:-1]])
    before[bounds[:-1]] = 1.0  # d_0 = 1 at each sentence's first word
    return np.asarray(before - distance)


def gate_keep(zmean: np.ndarray, convention: str) -> np.ndarray:
    """Mean weight on h_{t-1} from the mean update gate, under the model's convention.

    Examples
    --------
    >>> gate_keep(np.array([0.25]), "cho")
    array([0.75])
    """
    return zmean if convention == "torch" else 1.0 - zmean


def gate_convention(store: actstore.Store, gate_site: str) -> str:
    """The update-gate convention a gate site declares in its provenance.

    Examples
    --------
    >>> gate_convention(store, "toy/layer.1")
    Traceback (most recent call last):
    ...
    actstore.errors.SchemaError: site toy/layer.1 does not declare provenance['gate_convention'] ...
    """
    convention = store.site(gate_site).provenance.get("gate_convention")
    if convention not in CONVENTIONS:
        raise SchemaError(
            f"site {gate_site} does not declare provenance['gate_convention'] as one of "
            f"{list(CONVENTIONS)} (got {convention!r}); zmean and keep need it to be read "
            "correctly"
        )
    return str(convention)


def _block_measures(
    states: np.ndarray, gates: np.ndarray | None = None, *, sentence: np.ndarray
) -> np.ndarray:
    dred = distance_reduction(states, sentence)
    if gates is None:
        return dred[:, None]
    return np.stack([dred, np.asarray(gates, np.float64).mean(axis=1)], axis=1)


def token_measures(store: actstore.Store, site: str, gate_site: str | None = None) -> pd.DataFrame:
    """``row, dred`` (and ``zmean, keep`` with a gate site) for every token the sites
    cover (:data:`TOKEN_MEASURES`): all of them, or the sentences an extraction with
    ``--where`` computed.

    Examples
    --------
    >>> token_measures(store, "toy/layer.0").columns.tolist()
    ['row', 'dred']
    """
    site = one_site(store, site, "site")
    gate_site = one_site(store, gate_site, "gate_site") if gate_site else None
    convention = gate_convention(store, gate_site) if gate_site else None
    sites = tuple(filter(None, (site, gate_site)))
    require_tokens(store, sites)
    # a site extracted for some sentences (--where) is measured on those; one that lags
    # behind its grown table is refused by the selection, as every analysis does
    infos = [store.site(name) for name in sites]
    ranges = infos[0].covers if all(i.covers == infos[0].covers for i in infos) else ()
    chosen = ranges and all(i.n_rows == store.n_rows("tokens") for i in infos)
    whole = sum(b - a for a, b in ranges) == store.n_rows("tokens")
    rows = np.concatenate([np.arange(a, b) for a, b in ranges]) if chosen and not whole else None
    selection = Selection(store, sites, sentences=True, row_ids=rows)
    parts = map_blocks(
        _block_measures,
        selection,
        per_row={"sentence": selection.sentence},
        label=f"measures {' '.join(sites)}",
    )
    values = np.concatenate(parts)
    frame = pd.DataFrame({"row": selection.rows, "dred": values[:, 0]})
    if convention is not None:
        frame["zmean"] = values[:, 1]
        frame["keep"] = gate_keep(values[:, 1], convention)
    return TOKEN_MEASURES.check(frame)


def save_measures(
    store: actstore.Store,
    frame: pd.DataFrame,
    name: str = MeasuresOptions.name,
    *,
    sites: Sequence[str] = (),
) -> None:
    """Write the per-token measures of ``sites`` as results table ``name`` (replacing
    an older one).

    Examples
    --------
    >>> save_measures(store, token_measures(store, "toy/layer.0"), "dred", sites=["toy/layer.0"])
    >>> int(store.sql("SELECT count(*) AS n FROM dred")["n"].iloc[0]) == store.n_rows()
    True
    """
    made = provenance(store, "measures", sites, {"name": name})
    TidyResult(TOKEN_MEASURES, frame, made).save(store, name, replace=True)


def by_category(
    store: actstore.Store,
    values: pd.DataFrame,
    site: str,
    by: tuple[str, ...] = MeasuresOptions.by,
    *,
    min_count: int = MeasuresOptions.min_count,
    where: str | None = None,
) -> pd.DataFrame:
    """Mean of each measure of the per-token ``values`` (:func:`token_measures`) per
    category of each tokens column in ``by``, among the tokens ``where`` selects
    (categories of at least ``min_count`` words); nothing need be stored first.

    Returns :data:`BY_CATEGORY`: ``site, target (the column), category, metric, value, n``.

    Examples
    --------
    >>> values = token_measures(store, "toy/layer.0")
    >>> table = by_category(store, values, "toy/layer.0", ("upos",), min_count=40)
    >>> table[["category", "metric"]].values.tolist()[:2]
    [['ADJ', 'dred'], ['ADP', 'dred']]
    """
    measures = [c for c in ("dred", "zmean", "keep") if c in values]
    frames = []
    for column in by:
        tokens = store.sql(
            f"SELECT row, {token_column(store, column)}::VARCHAR AS category "
            f"FROM tokens{where_clause(where)}"
        )
        grouped = tokens.merge(values, on="row").groupby("category", dropna=False, sort=True)
        frame = grouped[measures].mean().assign(n=grouped.size()).reset_index()
        frame = frame[frame["n"] >= min_count]
        long = frame.melt(id_vars=["category", "n"], var_name="metric", value_name="value")
        frames.append(long.assign(site=site, target=column))
    out = pd.concat(frames, ignore_index=True)
    return BY_CATEGORY.check(out[BY_CATEGORY.names])
