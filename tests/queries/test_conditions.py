"""Condition means (queries.conditions) against pandas groupby over the stored values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import pytest

import actstore
from queries.conditions import condition_counts, condition_means


def groupby_means(store: actstore.Store, site: str, by: str, where: str, min_count: int) -> Any:
    """Means per group computed independently: every row read, pandas groupby."""
    frame = store.sql(f"SELECT row, {by} AS label FROM tokens WHERE {where} ORDER BY row")
    values = store.acts(site, dtype="float32").values.astype(np.float64)[frame["row"].to_numpy()]
    table = pd.DataFrame(values).assign(label=frame["label"].to_numpy()).dropna(subset=["label"])
    grouped = table.groupby("label")
    counts = grouped.size()
    means = grouped.mean()[counts >= min_count]
    return means.sort_index(), counts[counts >= min_count].sort_index()


def test_means_match_pandas_groupby(toy_store: Path) -> None:
    with actstore.open(toy_store) as store:
        found = condition_means(
            store, "toy/*", "lower(lemma)", where="upos IN ('NOUN', 'VERB')", min_count=5
        )
        assert found.sites == ["toy/layer.0", "toy/layer.3"]
        assert found.table == "tokens" and found.min_count == 5
        for site in found.sites:
            means, counts = groupby_means(
                store, site, "lower(lemma)", "upos IN ('NOUN', 'VERB')", 5
            )
            assert found.labels == means.index.tolist() == sorted(found.labels)
            assert found.counts.tolist() == counts.tolist()
            np.testing.assert_allclose(found.means[site], means.to_numpy(), rtol=1e-12, atol=1e-12)


def test_null_labels_are_left_out_and_labels_restrict(toy_store: Path) -> None:
    with actstore.open(toy_store) as store:
        by = "CASE WHEN upos = 'NOUN' THEN NULL ELSE upos END"
        found = condition_means(store, "toy/layer.0", by, min_count=1)
        assert "NOUN" not in found.labels and "None" not in found.labels
        some = condition_means(store, ["toy/layer.0"], "upos", labels=["VERB", "ADJ", "nope"])
        assert some.labels == ["ADJ", "VERB"]
        labels, counts = condition_counts(store, "tokens", "upos", min_count=1)
        assert dict(zip(labels, counts, strict=True))["VERB"] == some.counts[1]


def test_bit_identical_whatever_the_scheduler(toy_store: Path) -> None:
    with actstore.open(toy_store) as store:
        results = []
        for scheduler, workers in (("sync", 1), ("threads", 1), ("threads", 2)):
            with dask.config.set(scheduler=scheduler, num_workers=workers):
                results.append(condition_means(store, "toy/layer.3", "upos", min_count=3))
        for other in results[1:]:
            assert np.array_equal(other.means["toy/layer.3"], results[0].means["toy/layer.3"])


def test_refusals_name_the_problem(toy_store: Path) -> None:
    with actstore.open(toy_store) as store:
        with pytest.raises(actstore.ParameterError, match="too high: no condition of 'upos'"):
            condition_means(store, "toy/layer.0", "upos", min_count=10**6)
        with pytest.raises(actstore.ParameterError, match="by is not one SQL expression"):
            condition_means(store, "toy/layer.0", "upos) FROM tokens; --")
        with pytest.raises(actstore.ParameterError, match="min_count must be at least 1"):
            condition_means(store, "toy/layer.0", "upos", min_count=0)
