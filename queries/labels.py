"""The labels a probe learns: the split, the heads (offsets, control task) and their
class codes (METHODS.md, "Decoding probes").

- Features that apply to some words only: the other words get the label ``N/A``
  and are trained on, but only words that carry the feature are scored.
- Control task (Hewitt and Liang 2019): every word type (``form``) gets a fixed
  random label drawn from the distribution of the real labels on the training words.
- Split: the selected words' sentences in a seeded random order, taken for the test
  side until it holds ``test_fraction`` of the words (or the words ``test_where``
  selects, such as ``split = 'test'`` or ``sentence_id > 1600``); the training side's sentences
  give about ``VALIDATION_FRACTION`` of its words (about ``VALIDATION_ROWS`` at most) as
  the held-out part early stopping watches. No sentence straddles two parts: a
  ``test_where`` that would split one is refused.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

import actstore
from actstore.errors import ParameterError, SchemaError
from actstore.names import did_you_mean
from queries.options import ProbeOptions
from queries.select import categorical_codes
from queries.sentences import sentence_bounds

NA = "N/A"
VALIDATION_FRACTION = 0.1
VALIDATION_ROWS = 20_000


@dataclass(frozen=True)
class Head:
    """One label set: the real target or its control task, at one word offset."""

    offset: int
    control: bool
    classes: list[str]


@dataclass
class Labels:
    """Selected rows, their split and every head's class codes (-1: no label here).

    ``scored`` marks, per head, the words whose label counts for accuracy: a real
    value of the target (not ``N/A``) within the sentence.
    """

    rows: np.ndarray
    test: np.ndarray
    validation: np.ndarray  # held out of training for early stopping (never test rows)
    codes: np.ndarray
    scored: np.ndarray
    heads: list[Head]


def prepare_labels(store: actstore.Store, options: ProbeOptions, fold: int = 0) -> Labels:
    """Read the target (and word types) once; build the split and the heads' labels.

    With ``options.folds`` (k >= 2) the test side is fold ``fold`` of k folds of whole
    sentences (:func:`sentence_folds`); :func:`queries.probe.prepare_folds` gives all k.

    Examples
    --------
    >>> labels = prepare_labels(store, ProbeOptions("upos", offsets=(0, 1)))
    >>> [(h.offset, h.control) for h in labels.heads], labels.codes.shape[1]
    ([(0, False), (1, False)], 2)
    """
    target = options.target
    if target is None:
        raise ParameterError("target", "is needed (the token column to probe)")
    check_target(store, target)
    names_read = ["sentence_id", target]
    if options.control:
        check_target(store, options.control_type, "control_type")
        names_read.append(options.control_type)
    table = store.columns(names_read)
    sentence = table.column("sentence_id").to_numpy()
    values, names = categorical_codes(table.column(target))
    rows = store.rows(options.where) if options.where else np.arange(sentence.size)
    if rows.size == 0:
        raise ParameterError("where", f"{options.where!r}: no tokens selected")
    present = np.unique(values[rows][values[rows] >= 0])
    if present.size < 2:
        raise ParameterError(
            "target",
            f"{target!r} has {present.size} class(es) on the selected tokens; "
            "a probe needs at least 2",
        )
    test, validation = split_rows(store, options, sentence, rows, fold, bool(options.patience))
    control = None
    if options.control:
        types, _ = categorical_codes(table.column(options.control_type))
        control = _control_labels(values, types, rows[~test], len(names), options.seed)
    heads, columns, scored = [], [], []
    for offset in options.offsets:
        if offset == 0:
            neighbour, real = rows, values[rows]
        else:
            neighbour = rows + offset
            inside = (neighbour >= 0) & (neighbour < sentence.size)
            neighbour = np.where(inside, neighbour, 0)
            inside &= sentence[neighbour] == sentence[rows]
            real = np.where(inside, values[neighbour], np.int32(-2))  # -2: no word, -1: N/A
        for is_control, source in ((False, values), (True, control)):
            if source is None:
                continue
            raw = np.where(real < 0, real, source[neighbour])
            if np.unique(raw[raw >= 0]).size < 2:
                raise ParameterError(
                    "offsets", f"offset {offset:+d}: the words there carry fewer than 2 values "
                    f"of {target!r} in this selection; a probe needs at least 2"
                )  # fmt: skip
            classes, head_codes = _head_classes(raw, names)
            heads.append(Head(offset, is_control, classes))
            columns.append(head_codes)
            scored.append(raw >= 0)
    return Labels(
        rows, test, validation, np.stack(columns, axis=1), np.stack(scored, axis=1), heads
    )


def check_target(store: actstore.Store, name: str, parameter: str = "target") -> None:
    """Refuse a ``name`` that is no column of ``tokens``, naming the closest columns.

    Examples
    --------
    >>> check_target(store, "tense")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: target is 'tense', but ... (did you mean Tense?); columns: ...
    """
    columns = store.schema("tokens").names
    if name not in columns:
        close = did_you_mean(name, columns)
        raise ParameterError(
            parameter,
            f"is {name!r}, but there is no column {name!r} in tokens"
            f"{f' ({close})' if close else ''}; columns: {', '.join(columns)}",
        )


def split_rows(
    store: actstore.Store,
    options: ProbeOptions,
    sentence: np.ndarray,
    rows: np.ndarray,
    fold: int,
    hold_out: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The test and held-out (validation) masks over ``rows`` (``sentence`` is every
    table row's sentence id): fold ``fold`` of ``options.folds``, ``options.test_where``,
    or a seeded random ``test_fraction`` of the sentences; with ``hold_out``, about
    ``VALIDATION_FRACTION`` of the training words (whole sentences, about
    ``VALIDATION_ROWS`` at most) are held out."""
    if options.folds:
        if not 0 <= fold < options.folds:
            raise ParameterError("fold", f"must lie in 0..{options.folds - 1}, got {fold}")
        test = sentence_folds(sentence[rows], options.folds, options.seed) == fold
    elif options.test_where:
        test = np.isin(rows, store.rows(options.test_where))
        if test.all() or not test.any():
            raise ParameterError(
                "test_where",
                f"{options.test_where!r} selects {'every' if test.any() else 'none'} of the "
                f"{rows.size:,} tokens probed; it must leave some for training and take some",
            )
        ids = sentence[rows]
        tested, every = np.bincount(ids[test], minlength=ids.max() + 1), np.bincount(ids)
        split = np.flatnonzero((tested > 0) & (tested < every))
        if split.size:
            raise ParameterError(
                "test_where",
                f"{options.test_where!r} puts words of {split.size:,} sentences on both sides "
                f"(sentence {split[0]}, for one); a split keeps sentences whole: choose them "
                "by sentence (sentence_id, split, lang ...)",
            )
    else:
        test = _sentence_split(sentence[rows], options.test_fraction, options.seed)
    validation = np.zeros(rows.size, bool)
    train = np.flatnonzero(~test)
    if hold_out and np.unique(sentence[rows[train]]).size > 1:
        fraction = min(VALIDATION_FRACTION, VALIDATION_ROWS / train.size)
        validation[train] = _sentence_split(sentence[rows[train]], fraction, options.seed + 1)
    return test, validation


def sentence_folds(sentence: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of every row: whole sentences, in a seeded random order, each
    dealt to the fold with the fewest words so far (so no fold is empty and the folds'
    sizes differ by at most one sentence).

    ``sentence`` is non-decreasing (rows are in corpus order).

    Examples
    --------
    >>> sentence_folds(np.array([0, 0, 1, 2, 2, 2, 3]), 2, seed=0).tolist()
    [1, 1, 1, 0, 0, 0, 0]
    """
    counts = np.diff(sentence_bounds(sentence))
    if counts.size < k:
        raise SchemaError(
            f"the selected tokens come from {counts.size} sentences; {k} folds need {k}"
        )
    order = np.random.default_rng([seed, 3]).permutation(counts.size)
    fold = np.empty(counts.size, np.int64)
    lightest = [(0, f) for f in range(k)]  # (words so far, fold)
    for s in order.tolist():
        words, f = heapq.heappop(lightest)
        fold[s] = f
        heapq.heappush(lightest, (words + int(counts[s]), f))
    return np.repeat(fold, counts)


def _sentence_split(sentence: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Test mask: whole sentences in a seeded random order until ``fraction`` of the words.

    ``sentence`` is non-decreasing (rows are in corpus order), so each sentence is one run.
    """
    bounds = sentence_bounds(sentence)
    counts = np.diff(bounds)
    if counts.size < 2:
        raise SchemaError("the selected tokens come from one sentence; a split needs two")
    order = np.random.default_rng(seed).permutation(counts.size)
    filled = np.cumsum(counts[order])
    n_test = min(int(np.searchsorted(filled, fraction * sentence.size)) + 1, counts.size - 1)
    chosen = np.zeros(counts.size, bool)
    chosen[order[:n_test]] = True
    return np.repeat(chosen, counts)


def _control_labels(
    values: np.ndarray, types: np.ndarray, train_rows: np.ndarray, n_names: int, seed: int
) -> np.ndarray:
    """Per row, the control label of its word type, drawn once per type from the
    distribution of the real labels on the training words (N/A rows stay N/A)."""
    real = values[train_rows]
    freq = np.bincount(real[real >= 0], minlength=n_names).astype(np.float64)
    rng = np.random.default_rng([seed, 1])
    per_type = rng.choice(n_names, size=int(types.max()) + 2, p=freq / freq.sum())
    return np.where(values >= 0, per_type[types].astype(np.int32), np.int32(-1))


def _head_classes(raw: np.ndarray, names: list[str]) -> tuple[list[str], np.ndarray]:
    """Class names of one head (``N/A`` last when present) and codes into them."""
    used = np.unique(raw[raw >= 0])
    classes = [names[i] for i in used]
    remap = np.full(len(names), -1, np.int32)
    remap[used] = np.arange(used.size)
    codes = np.where(raw >= 0, remap[np.maximum(raw, 0)], np.int32(-1))
    if (raw == -1).any():
        codes = np.where(raw == -1, np.int32(len(classes)), codes)
        classes.append(NA)
    return classes, codes
