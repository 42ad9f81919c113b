"""A query opens views only for the tables it names (``actstore.sql.needed_views``), and
answers exactly as with every view open: joins, subqueries, any case, the catalog."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

import actstore
from actstore import store as store_module
from actstore.names import needed_views


@pytest.fixture
def store(writable_store: actstore.Store) -> Iterator[actstore.Store]:
    for i in range(5):
        writable_store.write_result(f"r{i}", pa.table({"unit": [i, i + 1], "value": [0.5, i]}))
    yield writable_store


@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) AS n FROM TOKENS",
        "SELECT s.sent_id, count(*) AS n FROM tokens t JOIN sentences s USING (sentence_id) "
        "GROUP BY ALL ORDER BY n DESC, s.sent_id LIMIT 3",
        "SELECT sum(value) AS v FROM r1 WHERE unit IN (SELECT unit FROM r2)",
        "WITH x AS (SELECT unit FROM r3) SELECT count(*) AS n FROM x",
        "SELECT table_name FROM information_schema.tables WHERE table_name <> 'tokens' "
        "ORDER BY table_name",
        "SHOW TABLES",
        "SELECT 1 AS one",
    ],
)
def test_same_answer_as_with_every_view(
    store: actstore.Store, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fewer = store.sql(query)
    monkeypatch.setattr(store_module, "needed_views", lambda query, views: dict(views))
    every = store.sql(query)
    assert fewer.equals(every), (fewer, every)


def test_only_named_tables_are_opened(store: actstore.Store) -> None:
    views = store._views()
    assert set(needed_views("SELECT * FROM r1 JOIN R2 USING (unit)", views)) == {"r1", "r2"}
    assert set(needed_views("select form from tokens", views)) == {"tokens"}
    assert len(needed_views("DESCRIBE r1", views)) == len(views)
    assert len(needed_views("SELECT * FROM duckdb_tables()", views)) == len(views)
