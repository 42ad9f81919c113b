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

import numpy as np
import pandas as pd
import pyarrow as pa
from dask.delayed import delayed

import actstore
from actstore import sql
from actstore.errors import SchemaError
from queries.reduce import compute, sentence_bounds, sentence_spans, span_blocks
from queries.select import token_column, where_clause

CONVENTIONS = ("torch", "cho")


def distance_reduction(states: np.ndarray, sentence: np.ndarray) -> np.ndarray:
    """``dred`` of every row; rows are the words of whole sentences, in order."""
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
    """Mean weight on h_{t-1} from the mean update gate, under the model's convention."""
    return zmean if convention == "torch" else 1.0 - zmean


def gate_convention(store: actstore.Store, gate_site: str) -> str:
    """The update-gate convention a gate site declares in its provenance."""
    convention = store.site(gate_site).provenance.get("gate_convention")
    if convention not in CONVENTIONS:
        raise SchemaError(
            f"site {gate_site} does not declare provenance['gate_convention'] as one of "
            f"{list(CONVENTIONS)} (got {convention!r}); zmean and keep need it to be read "
            "correctly"
        )
    return str(convention)


def _block_measures(
    states: np.ndarray, gates: np.ndarray | None, sentence: np.ndarray
) -> np.ndarray:
    dred = distance_reduction(states, sentence)
    if gates is None:
        return dred[:, None]
    return np.stack([dred, np.asarray(gates, np.float64).mean(axis=1)], axis=1)


def token_measures(store: actstore.Store, site: str, gate_site: str | None = None) -> pd.DataFrame:
    """``row, dred`` (and ``zmean, keep`` with a gate site) for every token.

    Examples
    --------
    >>> token_measures(store, "gru/layer.0.h", "gru/layer.0.gate_z")  # doctest: +SKIP
    """
    convention = gate_convention(store, gate_site) if gate_site else None
    for name in filter(None, (site, gate_site)):
        if store.site(name).table != "tokens":
            raise SchemaError(f"site {name} is aligned to {store.site(name).table}, not tokens")
    sentence = store.columns(["sentence_id"]).column("sentence_id").to_numpy()
    rows = np.arange(sentence.size, dtype=np.int64)
    spans = sentence_spans(sentence, store.site(site).chunk_rows)
    states = span_blocks(store, site, rows, spans)
    gates = span_blocks(store, gate_site, rows, spans) if gate_site else [None] * len(spans)
    parts = [
        delayed(_block_measures)(s, g, sentence[span])
        for s, g, span in zip(states, gates, spans, strict=True)
    ]
    values = np.concatenate(compute(*parts))
    frame = pd.DataFrame({"row": rows, "dred": values[:, 0]})
    if convention is not None:
        frame["zmean"] = values[:, 1]
        frame["keep"] = gate_keep(values[:, 1], convention)
    return frame


def save_measures(store: actstore.Store, frame: pd.DataFrame, name: str = "measures") -> None:
    """Write the measures as results table ``name`` (replacing an older one)."""
    store.write_result(name, pa.Table.from_pandas(frame, preserve_index=False))


def by_category(
    store: actstore.Store,
    table: str,
    site: str,
    by: tuple[str, ...] = ("upos", "deprel"),
    *,
    min_count: int = 500,
    where: str | None = None,
) -> pd.DataFrame:
    """Mean of each measure per category of each column in ``by`` (count >= ``min_count``).

    Returns ``site, target (the column), category, metric, value, n``.
    """
    stored = store.sql(f"SELECT * FROM {sql.quote_ident(sql.check_table_name(table))} LIMIT 0")
    measures = [c for c in ("dred", "zmean", "keep") if c in stored.columns]
    frames = []
    for column in by:
        quoted = token_column(store, column)
        averages = ", ".join(f"avg(m.{m}) AS {m}" for m in measures)
        frame = store.sql(
            f"SELECT {quoted}::VARCHAR AS category, count(*) AS n, {averages} "
            f"FROM tokens JOIN {table} AS m USING (row){where_clause(where)} "
            f"GROUP BY ALL HAVING count(*) >= ? ORDER BY category",
            [min_count],
        )
        long = frame.melt(id_vars=["category", "n"], var_name="metric", value_name="value")
        frames.append(long.assign(site=site, target=column))
    out = pd.concat(frames, ignore_index=True)
    return pd.DataFrame(out[["site", "target", "category", "metric", "value", "n"]])
