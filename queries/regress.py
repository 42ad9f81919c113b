"""Regression probes: a numeric token column (depth, position, head distance, sentence
length ...) of word ``w + k`` predicted from the activation at ``w`` by ridge regression.

The split is the classification probe's (:func:`queries.labels.split_rows`: a random
tenth of the sentences, ``test_where``, or folds). One out-of-core pass over the
training words gathers, per offset, the count, sums and cross-products of the units
and the target (float64, merged in the engine's fixed order); the units are
standardised from them and the ridge solution follows for every penalty of a grid from
one eigendecomposition. The penalty that predicts the held-out training sentences best
is kept (the grid's middle when there are none), and the probe is fitted again at that
penalty on all the training words, held-out ones included (``n_train``). Scores on the
test words: ``r2`` (1 - residual / total sum of squares about the test mean),
``pearson`` and ``spearman`` between prediction and target, and the ``ridge_alpha``
chosen (relative to the number of training words). An ``r2`` not above 0 is named in
the ``warning`` column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from scipy import stats

import actstore
from actstore.errors import ParameterError, SchemaError
from queries.engine import Selection, map_blocks, map_reduce
from queries.labels import split_rows
from queries.options import ProbeOptions
from queries.scores import PROBE, with_warnings
from queries.select import numeric

ALPHAS = 10.0 ** np.arange(-4, 3)  # ridge penalties tried, times the training words

Sums = list[tuple[float, np.ndarray, np.ndarray, float, np.ndarray, float]]


def is_numeric(store: actstore.Store, column: str) -> bool:
    """Whether a tokens column holds numbers (not text, not booleans).

    Examples
    --------
    >>> is_numeric(store, "depth"), is_numeric(store, "upos")
    (True, False)
    """
    kind = store.schema().field(column).type
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


@dataclass
class Targets:
    """Selected rows, their split, and the target of each offset (NaN: no word there)."""

    rows: np.ndarray
    test: np.ndarray
    validation: np.ndarray
    values: np.ndarray  # rows x offsets
    offsets: tuple[int, ...]


def prepare_targets(store: actstore.Store, options: ProbeOptions, fold: int = 0) -> Targets:
    """Read the target once; build the split and each offset's values.

    Examples
    --------
    >>> targets = prepare_targets(store, ProbeOptions("depth", offsets=(0, 1)))
    >>> targets.values.shape[1], bool(np.isnan(targets.values[:, 1]).any())
    (2, True)
    """
    target = str(options.target)
    table = store.columns(["sentence_id", target])
    sentence = table.column("sentence_id").to_numpy()
    values = numeric(table.column(target), target)
    rows = store.rows(options.where) if options.where else np.arange(sentence.size)
    if rows.size == 0:
        raise ParameterError("where", f"{options.where!r}: no tokens selected")
    test, validation = split_rows(store, options, sentence, rows, fold, hold_out=True)
    columns = []
    for offset in options.offsets:
        neighbour = rows + offset
        inside = (neighbour >= 0) & (neighbour < sentence.size)
        neighbour = np.where(inside, neighbour, 0)
        inside &= sentence[neighbour] == sentence[rows]
        columns.append(np.where(inside, values[neighbour], np.nan))
    return Targets(rows, test, validation, np.stack(columns, axis=1), options.offsets)


@dataclass
class FittedRegression:
    """Ridge weights per offset (on raw activations) and the test predictions."""

    site: str
    options: ProbeOptions
    targets: Targets
    weights: list[tuple[np.ndarray, float]]  # per offset: coef (units), intercept
    alphas: list[float]  # per offset, the penalty kept (relative to training words)
    predicted: np.ndarray  # test rows x offsets
    n_train: list[int]

    def table(self) -> pd.DataFrame:
        """Scores on the test words, as rows of the probe table (:data:`PROBE`)."""
        truth = self.targets.values[self.targets.test]
        records: list[dict[str, object]] = []
        for j, offset in enumerate(self.targets.offsets):
            keep = ~np.isnan(truth[:, j])
            y, p = truth[keep, j], self.predicted[keep, j]
            r2 = 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()
            base = {
                "site": self.site, "target": self.options.target, "word_offset": offset,
                "label": "", "ci_low": np.nan, "ci_high": np.nan, "n": int(y.size),
                "n_train": self.n_train[j], "n_classes": 0, "scoring": "regression",
                "seed": self.options.seed, "warning": "",
            }  # fmt: skip
            records += [
                {**base, "metric": "r2", "value": float(r2)},
                {**base, "metric": "pearson", "value": float(stats.pearsonr(y, p)[0])},
                {**base, "metric": "spearman", "value": float(stats.spearmanr(y, p)[0])},
                {**base, "metric": "ridge_alpha", "value": self.alphas[j]},
            ]
        return PROBE.frame(with_warnings(records))


def fit_regression(
    store: actstore.Store, site: str, options: ProbeOptions, targets: Targets | None = None
) -> FittedRegression:
    """Fit the ridge probes of ``options`` (a numeric target) on one site.

    The penalty is chosen on the held-out training sentences (their squared errors
    summed block by block, never all in memory), then the probe is fitted again on all
    the training words at that penalty.
    """
    targets = targets or prepare_targets(store, options)
    selected = Selection(store, (site,), options.where, row_ids=targets.rows)
    fitted_on = ~targets.test & ~targets.validation
    train = selected.subset(fitted_on)
    label = f"regress {site}"
    y_train = {"y": targets.values[fitted_on]}
    sums: Sums = map_reduce(_sums, _add, train, per_row=y_train, label=f"{label}: sums")
    solvers = [_solver(part) for part in sums]
    middle = float(ALPHAS[len(ALPHAS) // 2])
    alphas = [middle] * len(sums)
    if targets.validation.any():
        held = selected.subset(targets.validation)
        y_held = {"y": targets.values[targets.validation]}
        candidates = [[solve(a) for a in ALPHAS] for solve in solvers]
        errors = map_reduce(
            _errors,
            np.add,
            held,
            per_row=y_held,
            shared={"candidates": candidates},
            label=f"{label}: penalties",
        )
        alphas = [
            float(ALPHAS[int(np.argmin(e))]) if np.isfinite(e).all() else middle for e in errors
        ]
        sums = _add(sums, map_reduce(_sums, _add, held, per_row=y_held, label=f"{label}: sums"))
        solvers = [_solver(part) for part in sums]
    weights = [solve(alpha) for solve, alpha in zip(solvers, alphas, strict=True)]
    predict = partial(_predict, weights=weights)
    test = selected.subset(targets.test)
    predicted = np.concatenate(map_blocks(predict, test, label=f"{label}: test"))
    n_train = [int(p[0]) for p in sums]
    return FittedRegression(site, options, targets, weights, alphas, predicted, n_train)


def _sums(x: np.ndarray, *, y: np.ndarray) -> Sums:
    """Per offset: count, sum of x, x'x, sum of y, x'y, sum of y**2 over rows with a y."""
    out = []
    for j in range(y.shape[1]):
        keep = ~np.isnan(y[:, j])
        xs = torch.from_numpy(np.ascontiguousarray(x[keep], np.float64))
        ys = torch.from_numpy(np.ascontiguousarray(y[keep, j]))
        out.append((
            float(keep.sum()), xs.sum(0).numpy(), (xs.T @ xs).numpy(),
            float(ys.sum()), (xs.T @ ys).numpy(), float((ys * ys).sum()),
        ))  # fmt: skip
    return out


def _add(a: Sums, b: Sums) -> Sums:
    return [
        (p[0] + q[0], p[1] + q[1], p[2] + q[2], p[3] + q[3], p[4] + q[4], p[5] + q[5])
        for p, q in zip(a, b, strict=True)
    ]


def _solver(
    sums: tuple[float, np.ndarray, np.ndarray, float, np.ndarray, float],
) -> Callable[[float], tuple[np.ndarray, float]]:
    """From one offset's sums: the ridge weights on raw activations (and intercept) for
    a penalty ``alpha`` on the standardised units (relative to the training words)."""
    n, sx, gram, sy, sxy, _ = sums
    if n < 2:
        raise SchemaError("fewer than 2 training words have a target value to regress on")
    mean, my = sx / n, sy / n
    cov = gram / n - np.outer(mean, mean)
    scale = np.sqrt(np.maximum(np.diag(cov), 0.0))
    scale[scale == 0] = 1.0
    standard = cov / np.outer(scale, scale)  # correlation-like, per training word
    target = (sxy / n - mean * my) / scale
    eigenvalues, vectors = np.linalg.eigh(standard)
    projected = vectors.T @ target

    def solve(alpha: float) -> tuple[np.ndarray, float]:
        w = vectors @ (projected / (eigenvalues + alpha)) / scale
        return w, my - float(mean @ w)

    return solve


def _errors(
    x: np.ndarray, *, y: np.ndarray, candidates: list[list[tuple[np.ndarray, float]]]
) -> np.ndarray:
    """Per offset and penalty, the squared errors of one block's rows with a target."""
    x64 = np.asarray(x, np.float64)
    out = np.zeros((len(candidates), len(candidates[0])))
    for j, fits in enumerate(candidates):
        keep = ~np.isnan(y[:, j])
        for a, (w, b) in enumerate(fits):
            out[j, a] = float(((x64[keep] @ w + b - y[keep, j]) ** 2).sum())
    return out


def _predict(x: np.ndarray, *, weights: list[tuple[np.ndarray, float]]) -> np.ndarray:
    x64 = np.asarray(x, np.float64)
    return np.stack([x64 @ w + b for w, b in weights], axis=1)
