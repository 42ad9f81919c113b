"""Rows in runs of whole sentences: where each sentence starts, and blocks of them."""

from __future__ import annotations

import numpy as np


def sentence_spans(sentence: np.ndarray, target_rows: int) -> list[slice]:
    """Cut rows into runs of whole sentences of at least ``target_rows`` rows (the last
    may be shorter). ``sentence`` holds each row's sentence id, in row order.

    Examples
    --------
    >>> sentence_spans(np.array([0, 0, 1, 1, 1, 2, 3, 3]), 3)
    [slice(0, 5, None), slice(5, 8, None)]
    """
    spans: list[slice] = []
    lo = 0
    for cut in sentence_bounds(sentence)[1:-1].tolist():
        if cut - lo >= target_rows:
            spans.append(slice(lo, cut))
            lo = cut
    if lo < sentence.size:
        spans.append(slice(lo, sentence.size))
    return spans


def sentence_bounds(sentence: np.ndarray) -> np.ndarray:
    """Start offsets of each sentence's run of rows, plus the end.

    Examples
    --------
    >>> sentence_bounds(np.array([4, 4, 7, 9, 9]))
    array([0, 2, 3, 5])
    """
    return np.concatenate([[0], np.flatnonzero(np.diff(sentence)) + 1, [sentence.size]])
