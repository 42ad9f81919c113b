"""Diagnostic classifiers over stored sites (METHODS.md, "Decoding probes").

A softmax probe decodes a token column (UPOS, deprel, a UD feature ...) of word
``w + k`` from the activation at word ``w``, for each offset ``k`` asked for, on a
90/10 split grouped by sentence. It trains on mini-batches streamed from the site's
training rows, read once: when they fit ``memory_gib`` (1 GiB by default, counted
as read: float16 stays float16, bfloat16 becomes float32) they are read into memory;
otherwise every epoch streams them from the store, so the site is never held in
memory. Either way each epoch takes the blocks in a random order (the next one read
ahead by a thread) through a shuffling pool of a fixed number of rows, so the batches,
and the probe, are the same whichever way the rows come. All heads (offsets, and the
control task) train together on the same batches, so the rows are read once per epoch
at most, whatever the number of heads.

- Features that apply to some words only: the other words get the label ``N/A``
  and are trained on, but accuracy counts only words that carry the feature.
- Control task (Hewitt and Liang 2019): every word type (``form``) gets a fixed
  random label drawn from the distribution of the real labels; selectivity is
  accuracy minus control accuracy.
- Split: the selected words' sentences in a seeded random order, taken for the test
  side until it holds ``test_fraction`` of the words.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score

import actstore
from actstore.devices import resolve_device
from actstore.errors import ParameterError, SchemaError
from queries.engine import Selection, map_blocks, map_reduce, merge_in_order
from queries.linear import Batches, Schedule, logits, train_softmax
from queries.options import ProbeOptions
from queries.results import Column, TableSchema
from queries.select import categorical_codes
from queries.sentences import sentence_bounds

NA = "N/A"
POOL_ROWS = 32768
POOL_BYTES = 96 << 20  # a pool of wide rows holds fewer (it is copied once when cut)


PROBE = TableSchema(
    "probe",
    (
        Column("site", "string"),
        Column("target", "string"),
        Column("word_offset", "int64"),
        Column("metric", "string"),
        Column("value", "float64"),
        Column("n", "int64"),
        Column("n_train", "int64"),
        Column("n_classes", "int64"),
        Column("seed", "int64"),
    ),
)


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
    codes: np.ndarray
    scored: np.ndarray
    heads: list[Head]


def prepare_labels(store: actstore.Store, options: ProbeOptions) -> Labels:
    """Read the target (and word types) once; build the split and the heads' labels.

    Examples
    --------
    >>> labels = prepare_labels(store, ProbeOptions("upos", offsets=(0, 1)))
    >>> [(h.offset, h.control) for h in labels.heads], labels.codes.shape[1]
    ([(0, False), (1, False)], 2)
    """
    names_read = ["sentence_id", options.target]
    if options.control:
        names_read.append(options.control_type)
    table = store.columns(names_read)
    sentence = table.column("sentence_id").to_numpy()
    values, names = categorical_codes(table.column(options.target))
    rows = store.rows(options.where) if options.where else np.arange(sentence.size)
    if rows.size == 0:
        raise ParameterError("where", f"{options.where!r}: no tokens selected")
    present = np.unique(values[rows][values[rows] >= 0])
    if present.size < 2:
        raise ParameterError(
            "target",
            f"{options.target!r} has {present.size} class(es) on the selected tokens; "
            "a probe needs at least 2",
        )
    test = _sentence_split(sentence[rows], options.test_fraction, options.seed)
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
            classes, head_codes = _head_classes(raw, names)
            heads.append(Head(offset, is_control, classes))
            columns.append(head_codes)
            scored.append(raw >= 0)
    return Labels(rows, test, np.stack(columns, axis=1), np.stack(scored, axis=1), heads)


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


def probe(
    store: actstore.Store, site: str, options: ProbeOptions, labels: Labels | None = None
) -> pd.DataFrame:
    """Train and score the probes of ``options`` on one site.

    Returns a tidy table: ``site, target, word_offset, metric, value, n, n_train,
    n_classes, seed`` with metrics ``accuracy``, ``macro_f1``, ``majority`` (the
    majority-class baseline) and, with a control task, ``control_accuracy`` and
    ``selectivity``. ``n`` counts the scored test words, ``n_train`` the scored
    training words. Pass ``labels`` from :func:`prepare_labels` to reuse them across sites.

    Examples
    --------
    >>> options = ProbeOptions("upos", control=True, device="cpu", min_steps=20)
    >>> probe(store, "toy/layer.0", options)["metric"].tolist()
    ['accuracy', 'macro_f1', 'majority', 'control_accuracy', 'selectivity']
    """
    labels = labels or prepare_labels(store, options)
    device = resolve_device(options.device)
    selected = Selection(store, (site,), options.where, row_ids=labels.rows)
    train, test = selected.subset(~labels.test), selected.subset(labels.test)
    codes = labels.codes[~labels.test]
    schedule = Schedule.for_rows(
        train.rows.size,
        epochs=options.epochs,
        min_steps=options.min_steps,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        alpha=options.alpha,
    )
    rng = np.random.default_rng([options.seed, 2])
    (reader,) = train.readers(dtype=None)  # float16 stays float16
    spans = train.spans
    if train.rows.size * reader.n_units * reader.out_dtype.itemsize <= options.memory_gib * 2**30:
        (x,) = train.read(dtype=None)  # read once; the same blocks, sliced from memory
        mean, scale = _scale(merge_in_order([_moments(x[span]) for span in spans], _add))
        stream = _pooled_batches(lambda i: x[spans[i]], spans, codes, options.batch_size, rng)
    else:
        mean, scale = _scale(map_reduce(_moments, _add, train, dtype=None))

        def read(i: int) -> np.ndarray:
            return reader.take(train.rows[spans[i]])

        stream = _pooled_batches(read, spans, codes, options.batch_size, rng)
    weights = train_softmax(
        stream, mean, scale, [len(h.classes) for h in labels.heads], schedule, device
    )
    predicted = map_blocks(partial(_predict, weights=weights), test)
    return _score(site, options, labels, np.concatenate(predicted))


def _moments(x: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    x64 = torch.from_numpy(x).double().numpy()  # torch converts float16 fast
    return len(x64), x64.sum(axis=0), (x64 * x64).sum(axis=0)


def _add(
    a: tuple[int, np.ndarray, np.ndarray], b: tuple[int, np.ndarray, np.ndarray]
) -> tuple[int, np.ndarray, np.ndarray]:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def _scale(sums: tuple[int, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every unit from its count, sum and sum of squares."""
    n, total, squares = sums
    mean = total / n
    scale = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    scale[scale == 0] = 1.0
    return mean, scale


def _pooled_batches(
    block: Callable[[int], np.ndarray],
    spans: list[slice],
    codes: np.ndarray,
    batch: int,
    rng: np.random.Generator,
) -> Batches:
    """Endless mini-batches: each epoch takes the blocks in a random order into a pool of
    about ``POOL_ROWS`` rows (fewer if they pass ``POOL_BYTES``), shuffles the pool and
    cuts it into batches; the rows left over start the next pool. ``block(i)`` gives
    block ``i`` (from memory, or read from the store while the model trains on the
    previous one): the batches are the same."""
    pool_x: list[np.ndarray] = []
    pool_y: list[np.ndarray] = []
    with concurrent.futures.ThreadPoolExecutor(1) as ahead:
        while True:
            order = rng.permutation(len(spans))
            pending = ahead.submit(block, order[0])
            for i, index in enumerate(order):
                x = pending.result()
                if i + 1 < len(order):
                    pending = ahead.submit(block, order[i + 1])
                pool_x.append(x)
                pool_y.append(codes[spans[index]])
                pool_rows = min(POOL_ROWS, max(1, POOL_BYTES // max(1, x[:1].nbytes)))
                if sum(len(p) for p in pool_x) >= max(pool_rows, batch) or i + 1 == len(order):
                    yield from _cut(pool_x, pool_y, batch, rng)


def _cut(
    pool_x: list[np.ndarray], pool_y: list[np.ndarray], batch: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffle the pool, yield its full batches and keep the remainder in the pool."""
    x, y = np.concatenate(pool_x), np.concatenate(pool_y)
    order = rng.permutation(len(x))
    full = len(x) - len(x) % batch if len(x) >= batch else len(x)
    for lo in range(0, full, batch):
        take = order[lo : lo + batch]
        yield x[take], y[take]
    rest = order[full:]
    pool_x[:] = [x[rest]] if rest.size else []
    pool_y[:] = [y[rest]] if rest.size else []


def _predict(x: np.ndarray, *, weights: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Predicted class codes of one block (rows x heads)."""
    return np.stack([logits(x, c, b).argmax(axis=1) for c, b in weights], axis=1)


def _score(site: str, options: ProbeOptions, labels: Labels, predicted: np.ndarray) -> pd.DataFrame:
    truth, scored = labels.codes[labels.test], labels.scored[labels.test]
    train_codes, train_scored = labels.codes[~labels.test], labels.scored[~labels.test]
    records = []
    accuracy: dict[tuple[int, bool], float] = {}
    for h, head in enumerate(labels.heads):
        y, p = truth[scored[:, h], h], predicted[scored[:, h], h]
        seen = train_codes[train_scored[:, h], h]
        majority = np.bincount(seen).argmax() if seen.size else -1
        acc = float((y == p).mean()) if y.size else float("nan")
        accuracy[(head.offset, head.control)] = acc
        base = {"site": site, "target": options.target, "word_offset": head.offset}
        counts = {
            "n": int(y.size),
            "n_train": int(seen.size),
            "n_classes": int(np.unique(seen).size),
            "seed": options.seed,
        }
        if head.control:
            records.append({**base, "metric": "control_accuracy", "value": acc, **counts})
            selectivity = accuracy[(head.offset, False)] - acc
            records.append({**base, "metric": "selectivity", "value": selectivity, **counts})
            continue
        f1 = f1_score(y, p, labels=np.unique(y), average="macro", zero_division=0)
        for metric, value in (
            ("accuracy", acc),
            ("macro_f1", float(f1)),
            ("majority", float((y == majority).mean()) if y.size else float("nan")),
        ):
            records.append({**base, "metric": metric, "value": value, **counts})
    return PROBE.frame(records)


def metric_value(table: pd.DataFrame, metric: str, word_offset: int = 0) -> float:
    """One number of a single site's probe table, e.g. its ``accuracy`` at offset 0.

    Examples
    --------
    >>> table = probe(store, "toy/layer.0", ProbeOptions("upos", device="cpu", min_steps=20))
    >>> 0 <= metric_value(table, "accuracy") <= 1
    True
    """
    hit = table[(table["metric"] == metric) & (table["word_offset"] == word_offset)]
    return float(hit["value"].to_numpy(np.float64)[0])
