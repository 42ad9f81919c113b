"""Sentence-level dynamics (METHODS.md, "Correlations with sequence and tree
statistics", sentence-level).

For each sentence: the sequence of the mean activation over a site's units, word by
word, correlated (Pearson) with the sequence of the words' depths (or any numeric
column); the correlations are averaged over sentences, per site and language. This is
the layout of the LSTM probing paper's Table 2 (languages x components). Sentences
of fewer than ``min_words`` selected words are skipped, and so are sentences where
either sequence is constant (the correlation is undefined); both are counted.

One pass: blocks are runs of whole sentences, each block returns its sentences'
correlations, and the blocks run as one dask graph.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from dask.delayed import delayed

import actstore
from actstore.errors import SchemaError
from queries.reduce import compute, sentence_bounds, sentence_spans, span_blocks
from queries.select import natural_key, numeric_column


def sentence_correlations(
    means: np.ndarray, y: np.ndarray, sentence: np.ndarray, min_words: int
) -> np.ndarray:
    """Pearson r between ``means`` and ``y`` within each sentence run (NaN: skipped)."""
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
    x: np.ndarray, y: np.ndarray, sentence: np.ndarray, min_words: int
) -> np.ndarray:
    return sentence_correlations(np.asarray(x, np.float64).mean(axis=1), y, sentence, min_words)


def sentence_dynamics(
    store: actstore.Store,
    site: str,
    covariate: str = "depth",
    where: str | None = None,
    *,
    min_words: int = 3,
) -> pd.DataFrame:
    """Mean over sentences of r(mean activation, ``covariate``), per language.

    Returns
    -------
    pandas.DataFrame
        ``site, target, lang, metric ("mean_r"), value, sd, n, skipped``: ``n``
        sentences averaged, ``skipped`` too short or constant.

    Examples
    --------
    >>> sentence_dynamics(store, "minilm/layer.3", "depth")  # doctest: +SKIP
    """
    frame = numeric_column(store, covariate, where, extra=("sentence_id", "lang"))
    if frame.empty:
        raise SchemaError(f"no tokens with a {covariate!r} value are selected")
    y = frame["y"].to_numpy(np.float64)
    rows = frame["row"].to_numpy(np.int64)
    sentence = frame["sentence_id"].to_numpy(np.int64)
    spans = sentence_spans(sentence, store.site(site).chunk_rows)
    parts = [
        delayed(_block_correlations)(x, y[s], sentence[s], min_words)
        for x, s in zip(span_blocks(store, site, rows, spans), spans, strict=True)
    ]
    r = np.concatenate(compute(*parts))
    starts = sentence_bounds(sentence)[:-1]
    per_sentence = pd.DataFrame({"lang": frame["lang"].to_numpy()[starts], "r": r})
    records = []
    for lang, group in per_sentence.groupby("lang", sort=True):
        kept = group["r"].dropna()
        records.append(
            {
                "site": site,
                "target": covariate,
                "lang": lang,
                "metric": "mean_r",
                "value": float(kept.mean()) if len(kept) else float("nan"),
                "sd": float(kept.std(ddof=1)) if len(kept) > 1 else float("nan"),
                "n": len(kept),
                "skipped": int(len(group) - len(kept)),
            }
        )
    return pd.DataFrame.from_records(records)


def layout(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout: one row per language, one column per site, mean r in cells."""
    wide = table.pivot_table(index="lang", columns="site", values="value", aggfunc="first")
    sites: list[str] = sorted(map(str, wide.columns), key=natural_key)
    return wide[sites].round(3).reset_index()
