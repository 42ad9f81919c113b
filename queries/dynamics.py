"""Sentence-level dynamics (METHODS.md, "Correlations with sequence and tree
statistics", sentence-level).

For each sentence: the sequence of the mean activation over a site's units, word by
word, correlated (Pearson) with the sequence of the words' depths (or any numeric
column); the correlations are averaged over sentences, per site and language. This is
the layout of the LSTM probing paper's Table 2 (languages x components). Sentences
of fewer than ``min_words`` selected words are skipped, and so are sentences where
either sequence is constant (the correlation is undefined); both are counted.

One pass on the query engine: blocks are runs of whole sentences, each returns its
sentences' correlations (:func:`queries.engine.map_blocks`).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

import actstore
from actstore.errors import SchemaError
from actstore.names import natural_key
from queries.engine import map_blocks
from queries.options import DynamicsOptions
from queries.results import Column, TableSchema
from queries.select import each_site, numeric, require_tokens
from queries.selection import with_values
from queries.sentences import sentence_bounds

DYNAMICS = TableSchema(
    "dynamics",
    (
        Column("site", "string"),
        Column("target", "string"),
        Column("lang", "string"),
        Column("metric", "string"),
        Column("value", "float64"),
        Column("sd", "float64"),
        Column("n", "int64"),
        Column("skipped", "int64"),
    ),
)


def sentence_correlations(
    means: np.ndarray, y: np.ndarray, sentence: np.ndarray, min_words: int
) -> np.ndarray:
    """Pearson r between ``means`` and ``y`` within each sentence run (NaN: skipped).

    Examples
    --------
    >>> sentence_correlations(np.array([1.0, 2, 3, 1, 1]), np.array([1.0, 2, 4, 1, 2]),
    ...                       np.array([0, 0, 0, 1, 1]), 2).round(3)
    array([0.982,   nan])
    """
    bounds = sentence_bounds(sentence)
    starts, counts = bounds[:-1], np.diff(bounds)
    centred = []
    for v in (means.astype(np.float64), y.astype(np.float64)):
        mean = np.add.reduceat(v, starts) / counts
        centred.append(v - np.repeat(mean, counts))
    dx, dy = centred
    sxy, sxx, syy = (np.add.reduceat(a * b, starts) for a, b in ((dx, dy), (dx, dx), (dy, dy)))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    r[(counts < min_words) | (sxx <= 0) | (syy <= 0)] = np.nan
    return np.asarray(r)


def _block_correlations(
    x: np.ndarray, *, y: np.ndarray, sentence: np.ndarray, min_words: int
) -> np.ndarray:
    return sentence_correlations(np.asarray(x, np.float64).mean(axis=1), y, sentence, min_words)


@each_site
def sentence_dynamics(
    store: actstore.Store,
    site: str,
    covariate: str = DynamicsOptions.covariate,
    where: str | None = None,
    *,
    min_words: int = DynamicsOptions.min_words,
) -> pd.DataFrame:
    """Mean over sentences of r(mean activation, ``covariate``), per language (a glob as
    ``site``: for every site it matches).

    Returns
    -------
    pandas.DataFrame
        :data:`DYNAMICS`: ``site, target, lang, metric ("mean_r"), value, sd, n,
        skipped``: ``n`` sentences averaged, ``skipped`` too short or constant.

    Examples
    --------
    >>> table = sentence_dynamics(store, "toy/layer.0", "depth")
    >>> table[["site", "lang", "metric"]].values.tolist(), int(table["n"].iloc[0]) > 20
    ([['toy/layer.0', 'en', 'mean_r']], True)
    >>> sentence_dynamics(store, "layer.*", "depth")["site"].tolist()
    ['toy/layer.0', 'toy/layer.1']
    """
    require_tokens(store, [site])
    selection, columns = with_values(store, (site,), [covariate, "lang"], where, sentences=True)
    if selection.rows.size == 0:
        raise SchemaError(f"no tokens with a {covariate!r} value are selected")
    y = numeric(columns.column(covariate), covariate)
    sentence = selection.sentence
    parts = map_blocks(
        partial(_block_correlations, min_words=min_words),
        selection,
        per_row={"y": y, "sentence": sentence},
        label=f"dynamics {site}",
    )
    r = np.concatenate(parts)
    starts = sentence_bounds(sentence)[:-1]
    lang = columns.column("lang").to_numpy(zero_copy_only=False)[starts]
    per_sentence = pd.DataFrame({"lang": lang, "r": r})
    records = []
    for lang_name, group in per_sentence.groupby("lang", sort=True):
        kept = group["r"].dropna()
        records.append(
            {
                "site": site,
                "target": covariate,
                "lang": lang_name,
                "metric": "mean_r",
                "value": float(kept.mean()) if len(kept) else float("nan"),
                "sd": float(kept.std(ddof=1)) if len(kept) > 1 else float("nan"),
                "n": len(kept),
                "skipped": int(len(group) - len(kept)),
            }
        )
    return DYNAMICS.frame(records)


def layout(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout: one row per language, one column per site, mean r in cells.

    Examples
    --------
    >>> layout(sentence_dynamics(store, "toy/layer.0")).columns.tolist()
    ['lang', 'toy/layer.0']
    """
    wide = table.pivot_table(index="lang", columns="site", values="value", aggfunc="first")
    sites: list[str] = sorted(map(str, wide.columns), key=natural_key)
    out = wide[sites].round(3).reset_index()
    out.columns.name = None
    return out
