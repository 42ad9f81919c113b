"""Typed results: schemas refuse what does not fit; provenance says how a result was made."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import actstore
from queries.correlate import CORRELATIONS, unit_correlations
from queries.results import Column, TableSchema, TidyResult, provenance, site_digest

SCHEMA = TableSchema(
    "demo", (Column("site", "string"), Column("n", "int64"), Column("q", "float64", False))
)


def test_schema_orders_coerces_and_refuses() -> None:
    frame = SCHEMA.frame([{"n": 3, "site": "m/a"}])
    assert list(frame.columns) == ["site", "n"]  # optional q absent: left out
    assert SCHEMA.to_arrow(frame).schema.types == [pa.string(), pa.int64()]
    with pytest.raises(actstore.SchemaError, match="column 'site' is missing"):
        SCHEMA.check(pd.DataFrame({"n": [1]}))
    with pytest.raises(actstore.SchemaError, match="unexpected column"):
        SCHEMA.check(pd.DataFrame({"site": ["a"], "n": [1], "extra": [0]}))
    with pytest.raises(actstore.SchemaError, match="column 'n' should hold int64, got float64"):
        SCHEMA.check(pd.DataFrame({"site": ["a"], "n": [1.5]}))
    with pytest.raises(actstore.SchemaError, match="column 'site' should hold string"):
        SCHEMA.check(pd.DataFrame({"site": [1], "n": [1]}))


SiteWriter = Callable[..., np.ndarray]


def test_saved_with_provenance(writable_store: actstore.Store, site_writer: SiteWriter) -> None:
    store = writable_store
    n = store.n_rows()
    values = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    site_writer(store, "toy/a", values, model="toy", hidden_state=1)
    site_writer(store, "toy/b", values, model="toy", hidden_state=2)
    table = unit_correlations(store, "toy/a", "depth", "upos = 'NOUN'", spearman=False)
    assert list(table.columns) == CORRELATIONS.names
    made = provenance(store, "correlate", ["toy/a"], {"covariate": "depth"}, "upos = 'NOUN'")
    TidyResult(CORRELATIONS, table, made).save(store, "corr")
    info = store.results["corr"]
    assert info.provenance["parameters"] == {"covariate": "depth"}
    assert info.provenance["where"] == "upos = 'NOUN'"
    assert info.provenance["store_generation"] == made["store_generation"]
    assert store.generation > made["store_generation"]  # the write committed a new one
    saved = store.sql("SELECT * FROM corr ORDER BY unit")
    assert list(saved.columns) == CORRELATIONS.names
    np.testing.assert_array_equal(saved["value"], table["value"])
    # the digest follows how a site was made, not its name alone
    assert site_digest(store, ["toy/a"]) != site_digest(store, ["toy/b"])
    assert site_digest(store, ["toy/a"]) == site_digest(store, ["toy/a"])
