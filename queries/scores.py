"""The tables probes return: the scores (:data:`PROBE`), the confusion counts
(:data:`CONFUSION`), their warnings, and the mean over cross-validation folds."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd

from queries.results import Column, TableSchema

CONTROL_MARGIN = 0.02  # a control task this close to the probe makes the probe suspect

PROBE = TableSchema(
    "probe",
    (
        Column("site", "string"),
        Column("target", "string"),
        Column("word_offset", "int64"),
        Column("metric", "string"),
        Column("label", "string"),
        Column("value", "float64"),
        Column("ci_low", "float64"),
        Column("ci_high", "float64"),
        Column("n", "int64"),
        Column("n_train", "int64"),
        Column("n_classes", "int64"),
        Column("scoring", "string"),
        Column("seed", "int64"),
        Column("warning", "string"),
    ),
)

CONFUSION = TableSchema(
    "probe_confusion",
    (
        Column("site", "string"),
        Column("target", "string"),
        Column("word_offset", "int64"),
        Column("true", "string"),
        Column("predicted", "string"),
        Column("n", "int64"),
    ),
)


RANKING = TableSchema(
    "probe_units",
    (
        Column("site", "string"),
        Column("target", "string"),
        Column("word_offset", "int64"),
        Column("unit", "int64"),
        Column("rank", "int64"),
        Column("weight_mass", "float64"),
    ),
)


def cross_validated(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One table from the tables of k folds: the mean of every value, its 95% t-interval,
    the folds' scored words summed (:data:`PROBE`).

    Examples
    --------
    >>> one = PROBE.frame([{"site": "s", "target": "t", "word_offset": 0, "metric": "accuracy",
    ...     "label": "", "value": v, "ci_low": np.nan, "ci_high": np.nan, "n": 10,
    ...     "n_train": 90, "n_classes": 2, "scoring": "feature", "seed": 0, "warning": ""}
    ...     for v in (0.8, 0.9)])
    >>> row = cross_validated([one.iloc[[0]], one.iloc[[1]]]).iloc[0]
    >>> float(round(row["value"], 3)), float(round(row["ci_high"] - row["value"], 3)), int(row["n"])
    (0.85, 0.635, 20)
    """
    from scipy import stats

    frame = pd.concat(tables, ignore_index=True)
    keys = ["site", "target", "word_offset", "metric", "label", "scoring", "seed"]
    grouped = frame.groupby(keys, sort=False)
    out = grouped.agg(
        value=("value", "mean"), sd=("value", "std"), k=("value", "count"), n=("n", "sum"),
        n_train=("n_train", "mean"), n_classes=("n_classes", "max"),
    ).reset_index()  # fmt: skip
    half = stats.t.ppf(0.975, out["k"] - 1) * out["sd"] / np.sqrt(out["k"])
    out["ci_low"], out["ci_high"] = out["value"] - half, out["value"] + half
    out["n_train"] = out["n_train"].round().astype("int64")
    out["warning"] = ""
    records: list[dict[str, object]] = [
        {str(k): v for k, v in r.items()} for r in out[PROBE.names].to_dict("records")
    ]
    return PROBE.frame(with_warnings(records))


def with_warnings(records: list[dict[str, object]]) -> list[dict[str, object]]:
    """Name, on each offset's accuracy row, an accuracy not above the majority baseline
    and a control task within 2 points of the probe (or above it); on a regression's
    ``r2`` row, an r2 not above 0."""
    value = {(r["site"], r["word_offset"], r["metric"]): cast(float, r["value"]) for r in records}
    for record in records:
        if record["metric"] == "r2":
            above = cast(float, record["value"]) > 0
            record["warning"] = "" if above else "r2 not above 0: no better than the test mean"
        if record["metric"] != "accuracy":
            continue
        key = (record["site"], record["word_offset"])
        acc, majority = value[(*key, "accuracy")], value.get((*key, "majority"))
        notes = []
        if majority is not None and not acc > majority:
            notes.append(f"not above the majority baseline ({majority:.3f})")
        control = value.get((*key, "control_accuracy"))
        if control is not None and acc - control < CONTROL_MARGIN:
            notes.append(f"the control task scores {control:.3f}, within 2 points")
        record["warning"] = "; ".join(notes)
    return records


def metric_value(table: pd.DataFrame, metric: str, word_offset: int = 0) -> float:
    """One number of a single site's probe table, e.g. its ``accuracy`` at offset 0.

    Examples
    --------
    >>> from queries.options import ProbeOptions
    >>> from queries.probe import probe
    >>> table = probe(store, "toy/layer.0", ProbeOptions("upos", device="cpu"))
    >>> 0 <= metric_value(table, "accuracy") <= 1
    True
    """
    hit = table[(table["metric"] == metric) & (table["word_offset"] == word_offset)]
    return float(hit["value"].to_numpy(np.float64)[0])
