"""Diagnostic classifiers over stored sites (METHODS.md, "Decoding probes").

A softmax probe decodes a token column (UPOS, deprel, a UD feature ...) of word
``w + k`` from the activation at word ``w``, for each offset ``k`` asked for, on a
90/10 split grouped by sentence (:mod:`queries.labels`). All heads (offsets, and the
control task) train together on the same batches.

- **Reading**: the training rows are read once. When they fit ``memory_gib`` (1 GiB by
  default, counted as read: float16 stays float16, bfloat16 becomes float32) they are
  read into memory; otherwise every epoch streams them from the store, so the site is
  never held in memory. Either way each epoch takes the blocks in a random order (the
  next one read ahead by a thread) through a shuffling pool of a fixed number of rows,
  so the batches, and the probe, are the same whichever way the rows come.
- **Training length follows the data**: at most ``epochs`` passes (and ``max_steps``
  steps), batches of at most an eighth of the rows, the learning rate decayed to zero
  over the planned steps; after every epoch each head is scored on the held-out
  training words, keeps its best epoch's weights, and training stops once
  ``patience`` epochs in a row improved no head.
- **Scoring**: only words that carry the feature are scored. With ``scoring="feature"``
  (the default) their prediction is the most likely real class: the ``N/A`` output,
  learnt from the words without the feature, is left out of the argmax. With
  ``"raw"`` (the LSTM probing paper's protocol) a word predicted ``N/A`` counts as
  wrong, so a probe can score below the majority baseline while it ranks the real
  classes well. The table says which was used.
- **Warnings**: an accuracy not above the majority baseline, or a control task within
  2 points of the probe, is named in the table's ``warning`` column.
- **Threads**: on the CPU the training loop runs torch on one thread (like the
  engine's tasks): the mini-batches are small, and a second thread only competes for
  the cores (2.4x slower on 2 cores with another process running, 15% faster idle).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

import actstore
from actstore.devices import resolve_device
from actstore.errors import ParameterError
from queries.batches import add, moments, pooled_batches
from queries.batches import scale as scale_of
from queries.engine import (
    Selection,
    map_blocks,
    map_reduce,
    merge_in_order,
    torch_single_threaded,
)
from queries.labels import NA, Labels, check_target, prepare_labels
from queries.linear import Schedule, Trained, logits, train_softmax
from queries.options import ProbeOptions
from queries.regress import Targets, fit_regression, is_numeric, prepare_targets
from queries.scores import CONFUSION, PROBE, RANKING, cross_validated, with_warnings
from queries.select import each_site, require_tokens

HELD_BYTES = 64 << 20  # held-out activations early stopping scores, at most (as float32)


@dataclass
class FittedProbe:
    """A trained probe of one site: its heads' weights, standardisation and predictions
    on the test words. :meth:`table` scores it, :meth:`confusion` counts its errors."""

    site: str
    options: ProbeOptions
    labels: Labels
    mean: np.ndarray
    scale: np.ndarray
    trained: Trained
    predicted: np.ndarray  # test rows x heads, class codes
    units: np.ndarray | None = None  # the units it reads (None: all)

    def table(self) -> pd.DataFrame:
        """The tidy scores (:data:`PROBE`); see :func:`probe`."""
        return _score(self)

    def confusion(self) -> pd.DataFrame:
        """Scored test words per (true, predicted) class of every real head
        (:data:`CONFUSION`; cells that never occur are left out).

        Examples
        --------
        >>> fitted = fit_probe(store, "toy/layer.0", ProbeOptions("upos", device="cpu"))
        >>> int(fitted.confusion()["n"].sum()) == int(fitted.table()["n"].iloc[0])
        True
        """
        labels, frames = self.labels, []
        truth, scored = labels.codes[labels.test], labels.scored[labels.test]
        for h, head in enumerate(labels.heads):
            if head.control:
                continue
            names = np.asarray(head.classes, dtype=object)
            pairs = pd.DataFrame(
                {
                    "true": names[truth[scored[:, h], h]],
                    "predicted": names[self.predicted[scored[:, h], h]],
                }
            )
            counts = pairs.value_counts().rename("n").reset_index()
            frames.append(
                counts.assign(site=self.site, target=self.options.target, word_offset=head.offset)
            )
        return CONFUSION.check(pd.concat(frames, ignore_index=True)[CONFUSION.names])


def fit_probe(
    store: actstore.Store,
    site: str,
    options: ProbeOptions,
    labels: Labels | None = None,
    units: np.ndarray | None = None,
) -> FittedProbe:
    """Train the probes of ``options`` on one site (on some of its ``units`` only, if
    given) and predict its test words.

    Pass ``labels`` from :func:`~queries.labels.prepare_labels` to reuse them across
    sites.
    """
    labels = labels or prepare_labels(store, options)
    device = resolve_device(options.device)
    selected = Selection(store, (site,), options.where, row_ids=labels.rows)
    fitted_on = ~labels.test & ~labels.validation
    train, test = selected.subset(fitted_on), selected.subset(labels.test)
    codes = labels.codes[fitted_on]
    schedule = Schedule.for_rows(
        train.rows.size,
        epochs=options.epochs,
        batch_size=options.batch_size,
        min_steps=options.min_steps,
        max_steps=options.max_steps,
        patience=options.patience,
        learning_rate=options.learning_rate,
        alpha=options.alpha,
        l1=options.l1,
    )
    rng = np.random.default_rng([options.seed, 2])
    label = f"probe {site}" + ("" if units is None else f" ({units.size} units)")
    (reader,) = train.readers(dtype=None)  # float16 stays float16
    spans, batch = train.spans, schedule.batch_size
    cols = slice(None) if units is None else units
    if train.rows.size * reader.n_units * reader.out_dtype.itemsize <= options.memory_gib * 2**30:
        (x,) = train.read(dtype=None)  # read once; the same blocks, sliced from memory
        mean, scale = scale_of(merge_in_order([moments(x[span]) for span in spans], add))
        if units is not None:
            x = np.ascontiguousarray(x[:, units])
        stream = pooled_batches(lambda i: x[spans[i]], spans, codes, batch, rng)
    else:
        mean, scale = scale_of(map_reduce(moments, add, train, dtype=None, label=f"{label}: scale"))

        def read(i: int) -> np.ndarray:
            return reader.take(train.rows[spans[i]])[:, cols]

        stream = pooled_batches(read, spans, codes, batch, rng)
    held_out = None
    if labels.validation.any() and schedule.n_steps > schedule.steps_per_epoch:
        # scored on the device in float32 every epoch: at most HELD_BYTES of it
        held = np.flatnonzero(labels.validation)[: max(1, HELD_BYTES // (4 * reader.n_units))]
        (x_held,) = selected.subset(held).read(dtype=None)
        held_out = (x_held[:, cols], labels.codes[held])
    n_classes = [len(h.classes) for h in labels.heads]
    mean, scale = mean[cols], scale[cols]
    with torch_single_threaded() if device.type == "cpu" else contextlib.nullcontext():
        trained = train_softmax(
            stream, mean, scale, n_classes, schedule, device, held_out, label=label
        )
    real_only = [options.scoring == "feature" and h.classes[-1] == NA for h in labels.heads]
    predict = partial(_predict, weights=trained.weights, real_only=real_only, units=units)
    predicted = np.concatenate(map_blocks(predict, test, label=f"{label}: test"))
    return FittedProbe(site, options, labels, mean, scale, trained, predicted, units)


def unit_ranking(fitted: FittedProbe) -> pd.DataFrame:
    """The units of every real head ranked by weight mass: the sum over classes of the
    absolute standardised weights (as NeuroX ranks neurons); train with ``l1`` for a
    sparse probe whose mass sits on few units (:data:`RANKING`).

    Examples
    --------
    >>> fitted = fit_probe(store, "toy/layer.0", ProbeOptions("upos", device="cpu", l1=1e-3))
    >>> ranked = unit_ranking(fitted)
    >>> ranked["rank"].tolist()[:3], len(ranked)
    ([1, 2, 3], 16)
    """
    frames = []
    for head, (coef, _) in zip(fitted.labels.heads, fitted.trained.weights, strict=True):
        if head.control:
            continue
        mass = np.abs(coef * fitted.scale).sum(axis=0)  # standardised weights
        order = np.argsort(-mass, kind="stable")
        ids = order if fitted.units is None else fitted.units[order]
        columns = {
            "site": fitted.site, "target": fitted.options.target, "word_offset": head.offset,
            "unit": ids, "rank": np.arange(1, order.size + 1), "weight_mass": mass[order],
        }  # fmt: skip
        frames.append(pd.DataFrame(columns))
    return RANKING.check(pd.concat(frames, ignore_index=True))


def _top_units(store: actstore.Store, fitted: FittedProbe) -> pd.DataFrame:
    """The probe's table, plus, for each k of ``top_units``, the accuracy of a probe
    trained on the k units of most weight mass (ranked on this probe's training words;
    a k not below the site's units is the probe itself, and left out)."""
    table = fitted.table()
    options = fitted.options
    ranking = unit_ranking(fitted)
    rows = [table]
    for k in (k for k in options.top_units if k < fitted.scale.size):
        for offset, ranked in ranking.groupby("word_offset", sort=False):
            units = np.sort(ranked["unit"].to_numpy()[:k])
            small = fit_probe(store, fitted.site, options, fitted.labels, units).table()
            hit = small[(small.metric == "accuracy") & (small.word_offset == offset)]
            rows.append(hit.assign(metric="accuracy_top_units", label=str(k), warning=""))
    return PROBE.check(pd.concat(rows, ignore_index=True))


@each_site
def probe(
    store: actstore.Store,
    site: str,
    options: ProbeOptions,
    labels: Labels | list[Labels] | None = None,
) -> pd.DataFrame:
    """Train and score the probes of ``options`` on one site (on every fold, with
    ``options.folds``); a glob runs it on every site it matches.

    Returns a tidy table (:data:`PROBE`): ``site, target, word_offset, metric, label,
    value, ci_low, ci_high, n, n_train, n_classes, scoring, seed, warning`` with metrics
    ``accuracy``, ``macro_f1``, ``majority`` (the majority-class baseline) and, with a
    control task, ``control_accuracy`` and ``selectivity``; with ``per_class``,
    ``class_accuracy`` per class (``label``). ``n`` counts the scored test words,
    ``n_train`` the scored training words (the held-out part early stopping watches
    included). Cross-validated, ``value`` is the mean over the folds with a 95%
    t-interval in ``ci_low``/``ci_high`` (NaN for one split), ``n`` the scored words of
    all folds. Pass ``labels`` from :func:`prepare_folds` (or
    :func:`~queries.labels.prepare_labels`) to reuse them across sites.

    Examples
    --------
    >>> options = ProbeOptions("upos", control=True, device="cpu")
    >>> probe(store, "toy/layer.0", options)["metric"].tolist()
    ['accuracy', 'macro_f1', 'majority', 'control_accuracy', 'selectivity']
    >>> folds = probe(store, "toy/layer.0", ProbeOptions("upos", folds=3, device="cpu"))
    >>> bool((folds["ci_low"] <= folds["value"]).all()), int(folds["n"].iloc[0])
    (True, 698)
    """
    return run_probe(store, site, options, labels)[0]


def run_probe(
    store: actstore.Store,
    site: str,
    options: ProbeOptions,
    labels: Labels | list[Labels] | list[Targets] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[FittedProbe]]:
    """The scores of :func:`probe`, the confusion counts (summed over folds) and the
    fitted probe of every fold (none for a regression)."""
    require_tokens(store, [site])
    given = prepare_folds(store, options) if labels is None else labels
    folds: list[Labels | Targets] = list(given) if isinstance(given, list) else [given]
    targets = [t for t in folds if isinstance(t, Targets)]
    if targets:  # a regression probe
        tables = [fit_regression(store, site, options, t).table() for t in targets]
        table = tables[0] if len(tables) == 1 else cross_validated(tables)
        return table, CONFUSION.frame([]), []
    fitted = [fit_probe(store, site, options, f) for f in folds if isinstance(f, Labels)]
    confusion = pd.concat([f.confusion() for f in fitted], ignore_index=True)
    keys = [c for c in CONFUSION.names if c != "n"]
    summed = confusion.groupby(keys, sort=False)["n"].sum().reset_index()
    confusion = CONFUSION.check(summed[CONFUSION.names])
    tables = [_top_units(store, f) if options.top_units else f.table() for f in fitted]
    if len(fitted) == 1:
        return tables[0], confusion, fitted
    return cross_validated(tables), confusion, fitted


def prepare_folds(store: actstore.Store, options: ProbeOptions) -> list[Labels] | list[Targets]:
    """The labels (or a regression's targets) of every fold of ``options.folds`` (one
    split when it is 0): regression for ``kind="regress"``, or ``"auto"`` and a numeric
    target.

    Examples
    --------
    >>> folds = prepare_folds(store, ProbeOptions("upos", folds=3))
    >>> len(folds), int(sum(f.test.sum() for f in folds)) == folds[0].rows.size
    (3, True)
    >>> type(prepare_folds(store, ProbeOptions("depth"))[0]).__name__
    'Targets'
    """
    k = range(max(1, options.folds))
    target = str(options.target)
    check_target(store, target)
    if options.kind == "regress" or (options.kind == "auto" and is_numeric(store, target)):
        named = [name for name in ("control", "per_class", "top_units") if getattr(options, name)]
        if named:
            raise ParameterError(
                named[0], f"applies to classification probes; {target!r} is regressed "
                "(numeric; --kind classify probes its values as classes)"
            )  # fmt: skip
        return [prepare_targets(store, options, fold) for fold in k]
    return [prepare_labels(store, options, fold) for fold in k]


def _predict(
    x: np.ndarray,
    *,
    weights: list[tuple[np.ndarray, np.ndarray]],
    real_only: list[bool],
    units: np.ndarray | None = None,
) -> np.ndarray:
    """Predicted class codes of one block (rows x heads); ``real_only`` heads never
    predict their last class (``N/A``); ``units``: the columns the probe reads."""
    if units is not None:
        x = x[:, units]
    out = []
    for (coef, intercept), real in zip(weights, real_only, strict=True):
        scores = logits(x, coef, intercept)
        out.append((scores[:, :-1] if real else scores).argmax(axis=1))
    return np.stack(out, axis=1)


def _score(fitted: FittedProbe) -> pd.DataFrame:
    labels, options = fitted.labels, fitted.options
    truth, scored = labels.codes[labels.test], labels.scored[labels.test]
    train_codes, train_scored = labels.codes[~labels.test], labels.scored[~labels.test]
    records: list[dict[str, object]] = []
    accuracy: dict[tuple[int, bool], float] = {}
    for h, head in enumerate(labels.heads):
        y, p = truth[scored[:, h], h], fitted.predicted[scored[:, h], h]
        seen = train_codes[train_scored[:, h], h]
        acc = float((y == p).mean()) if y.size else float("nan")
        accuracy[(head.offset, head.control)] = acc
        base = {
            "site": fitted.site, "target": options.target, "word_offset": head.offset,
            "label": "", "ci_low": np.nan, "ci_high": np.nan, "n": int(y.size),
            "n_train": int(seen.size), "n_classes": int(np.unique(seen).size),
            "scoring": options.scoring, "seed": options.seed, "warning": "",
        }  # fmt: skip
        if head.control:
            real = accuracy[(head.offset, False)]
            records.append({**base, "metric": "control_accuracy", "value": acc})
            records.append({**base, "metric": "selectivity", "value": real - acc})
            continue
        majority = (
            float((y == np.bincount(seen).argmax()).mean()) if y.size and seen.size else np.nan
        )
        f1 = (
            f1_score(y, p, labels=np.unique(y), average="macro", zero_division=0)
            if y.size
            else np.nan
        )
        records.append({**base, "metric": "accuracy", "value": acc})
        records.append({**base, "metric": "macro_f1", "value": float(f1)})
        records.append({**base, "metric": "majority", "value": majority})
        if options.per_class:
            for code in np.unique(y).tolist():
                hit = y == code
                records.append({
                    **base, "metric": "class_accuracy", "label": head.classes[code],
                    "value": float((p[hit] == code).mean()), "n": int(hit.sum()),
                })  # fmt: skip
    return PROBE.frame(with_warnings(records))
