"""Probes you can keep: a fitted probe saved in the store, applied to other rows (or the
same site in another store), exported to scikit-learn.

A saved probe is a matrix result: one row per class of each word offset it decodes
(labelled ``<offset>|<class>``), one column per unit of the site plus ``intercept``,
holding the weights on raw activations (the standardisation folded in), in float64.
Its provenance names the site, the target, the scoring, and a digest of the site's
name and how it was made (its provenance without what depends on the corpus, the run
or the installation: corpus hash, flag counts, device, paths, versions): a probe is
only applied to the same site made the same way (same model, weights, layer,
alignment, dtype), in this store or another, and refuses any other.

Examples
--------
>>> from queries.probe import fit_probe
>>> from queries.options import ProbeOptions
>>> fitted = fit_probe(store, "toy/layer.0", ProbeOptions("upos", device="cpu"))
>>> save_probe(store, fitted, "upos_probe")
>>> saved = load_probe(store, "upos_probe")
>>> labelled = apply_probe(store, "toy/layer.0", saved, where="row < 5")
>>> labelled.columns.tolist(), len(labelled)
(['row', 'site', 'target', 'word_offset', 'predicted', 'probability'], 5)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

import actstore
from actstore.errors import ParameterError, SchemaError
from queries.engine import Selection, map_blocks
from queries.labels import NA
from queries.linear import logits
from queries.probe import FittedProbe
from queries.results import Column, TableSchema, jsonable, provenance

PREDICTIONS = TableSchema(
    "probe_apply",
    (
        Column("row", "int64"),
        Column("site", "string"),
        Column("target", "string"),
        Column("word_offset", "int64"),
        Column("predicted", "string"),
        Column("probability", "float64"),
    ),
)


@dataclass(frozen=True)
class SavedProbe:
    """A probe read back from the store: per word offset, the classes and the weights
    (``coef`` classes x units, ``intercept``) acting on raw activations."""

    name: str
    site: str
    target: str
    scoring: str
    n_units: int
    made_like: str | None
    heads: dict[int, tuple[list[str], np.ndarray, np.ndarray]]


def save_probe(
    store: actstore.Store, fitted: FittedProbe, name: str, *, replace: bool = False
) -> None:
    """Write the real (not control) heads of ``fitted`` as matrix result ``name``."""
    labels: list[str] = []
    blocks = []
    for head, (coef, intercept) in zip(fitted.labels.heads, fitted.trained.weights, strict=True):
        if head.control:
            continue
        labels += [f"{head.offset}|{c}" for c in head.classes]
        blocks.append(np.hstack([coef, intercept[:, None]]).astype(np.float64))
    n_units = blocks[0].shape[1] - 1
    made = provenance(store, "probe_weights", [fitted.site], fitted.options, fitted.options.where)
    made.update(
        site=fitted.site,
        target=fitted.options.target,
        scoring=fitted.options.scoring,
        n_units=n_units,
        made_like=made_like(store, fitted.site),
    )
    columns = [str(u) for u in range(n_units)] + ["intercept"]
    store.write_matrix(
        name, np.vstack(blocks), rows=labels, columns=columns, provenance=made, replace=replace
    )


def load_probe(store: actstore.Store, name: str) -> SavedProbe:
    """Read probe ``name`` back (see :func:`save_probe`)."""
    matrix = store.matrix(name)
    made = matrix.provenance
    if made.get("analysis") != "probe_weights":
        raise SchemaError(f"result {name!r} is not a saved probe (it is {made.get('analysis')!r})")
    values = np.asarray(matrix.values.values, np.float64)
    offsets = np.array([int(str(label).partition("|")[0]) for label in matrix.values["row"].values])
    names = [str(label).partition("|")[2] for label in matrix.values["row"].values]
    heads = {
        int(k): ([names[i] for i in np.flatnonzero(offsets == k)],
                 values[offsets == k, :-1], values[offsets == k, -1])
        for k in np.unique(offsets)
    }  # fmt: skip
    return SavedProbe(
        name, str(made["site"]), str(made["target"]), str(made["scoring"]),
        int(made["n_units"]), made.get("made_like"), heads,
    )  # fmt: skip


def apply_probe(
    store: actstore.Store, site: str, saved: SavedProbe, where: str | None = None
) -> pd.DataFrame:
    """Label the rows of ``site`` (``where`` selects them) with a saved probe: per row and
    word offset, the predicted class and its probability (:data:`PREDICTIONS`).

    The site must be made the way the probe's was (its provenance digest), so a probe
    of MiniLM layer 3 labels MiniLM layer 3 of any store, and nothing else.
    """
    info = store.site(site)
    if info.n_units != saved.n_units:
        raise ParameterError(
            "apply",
            f"probe {saved.name} reads {saved.n_units} units; site {site} has {info.n_units}",
        )
    here = made_like(store, site)
    if here is None or saved.made_like is None:
        bare = site if here is None else saved.site
        raise ParameterError(
            "apply", f"site {bare} records no provenance, so nothing tells whether the probe's "
            "site and this one were made the same way"
        )  # fmt: skip
    if here != saved.made_like:
        raise ParameterError(
            "apply",
            f"probe {saved.name} was trained on {saved.site} as made by another model, weights "
            f"or alignment than {site} here (their provenance differs); re-train it here",
        )
    selection = Selection(store, (site,), where)
    frames = []
    for offset, (classes, coef, intercept) in sorted(saved.heads.items()):
        real_only = saved.scoring == "feature" and classes[-1] == NA
        parts = map_blocks(
            partial(_label, coef=coef, intercept=intercept, real_only=real_only), selection
        )
        best = np.concatenate([p[0] for p in parts])
        frames.append(
            pd.DataFrame(
                {
                    "row": selection.rows,
                    "site": site,
                    "target": saved.target,
                    "word_offset": offset,
                    "predicted": np.asarray(classes, dtype=object)[best],
                    "probability": np.concatenate([p[1] for p in parts]),
                }
            )
        )
    return PREDICTIONS.check(pd.concat(frames, ignore_index=True))


RUN_KEYS = ("corpus_sha256", "flagged_words", "n_windowed_sentences", "actstore_version",
            "compute", "model_path")  # fmt: skip


def made_like(store: actstore.Store, site: str) -> str | None:
    """A digest of ``site``'s name and how it was made, leaving out what depends on the
    corpus, the run or the installation (:data:`RUN_KEYS`, the tokenizer's path): equal
    for the same model layer extracted into any store. None for a site without
    provenance (nothing would tell two such sites apart).

    Examples
    --------
    >>> made_like(store, "toy/layer.0") == made_like(store, "toy/layer.0")
    True
    """
    info = store.site(site)
    if not info.provenance:
        return None
    made = {k: v for k, v in info.provenance.items() if k not in RUN_KEYS}
    if "tokenizer" in made:  # "<class> <path>": the path differs between installations
        made["tokenizer"] = str(made["tokenizer"]).split(" ")[0]
    described = {
        "site": site, "n_units": info.n_units, "dtype": info.dtype, "provenance": jsonable(made),
    }  # fmt: skip
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _label(
    x: np.ndarray, *, coef: np.ndarray, intercept: np.ndarray, real_only: bool
) -> tuple[np.ndarray, np.ndarray]:
    scores = logits(x, coef, intercept)
    if real_only:  # the words a feature-scored probe labels carry the feature: no N/A
        scores = scores[:, :-1]
    scores -= scores.max(axis=1, keepdims=True)
    probability = np.exp(scores)
    probability /= probability.sum(axis=1, keepdims=True)
    best = probability.argmax(axis=1)
    return best, probability[np.arange(len(best)), best]


def to_sklearn(probe: FittedProbe | SavedProbe, word_offset: int = 0) -> Any:
    """One head as a fitted scikit-learn ``LogisticRegression`` on raw activations
    (``coef_``, ``intercept_``, ``classes_``): its ``predict`` is the probe's with raw
    scoring.

    Examples
    --------
    >>> from queries.probe import fit_probe
    >>> from queries.options import ProbeOptions
    >>> fitted = fit_probe(store, "toy/layer.0", ProbeOptions("upos", device="cpu"))
    >>> model = to_sklearn(fitted)
    >>> x = store.acts("toy/layer.0", np.arange(5)).values
    >>> model.predict(x).shape, list(model.classes_[:2])
    ((5,), ['ADJ', 'ADP'])
    """
    from sklearn.linear_model import LogisticRegression

    if isinstance(probe, FittedProbe):
        heads = {
            h.offset: (h.classes, w[0], w[1])
            for h, w in zip(probe.labels.heads, probe.trained.weights, strict=True)
            if not h.control
        }
    else:
        heads = probe.heads
    if word_offset not in heads:
        raise ParameterError("word_offset", f"must be one of {sorted(heads)}, got {word_offset}")
    classes, coef, intercept = heads[word_offset]
    model = LogisticRegression()
    if len(classes) == 2:  # scikit-learn keeps one row: the second class against the first
        coef, intercept = coef[1:] - coef[:1], intercept[1:] - intercept[:1]
    model.coef_ = np.asarray(coef, np.float64)
    model.intercept_ = np.asarray(intercept, np.float64)
    model.classes_ = np.asarray(classes, dtype=object)
    model.n_features_in_ = model.coef_.shape[1]
    return model
