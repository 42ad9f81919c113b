"""actstore: an activation store and query engine for studying what networks represent.

Activations live in Zarr arrays beside Parquet tables of annotated tokens; row i of
every array is row i of its table. Query annotations with SQL, read activations
lazily, run analyses out of core.

Examples
--------
>>> import actstore
>>> store = actstore.create("ewt.actstore")  # doctest: +SKIP
>>> actstore.ingest_conllu(store, ["en_ewt-ud-dev.conllu"])  # doctest: +SKIP
>>> store.sql("SELECT upos, count(*) FROM tokens GROUP BY upos")  # doctest: +SKIP
"""

from __future__ import annotations

from actstore.errors import (
    ActStoreError,
    CorpusError,
    FormatError,
    ReadOnlyError,
    SchemaError,
    SiteError,
    SiteNotFoundError,
    SQLError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
)
from actstore.ingest import ingest_conllu
from actstore.store import SiteInfo, Store, TableInfo, create
from actstore.store import open_store as open
from actstore.version import __version__
from actstore.writer import SiteWriter

__all__ = [
    "ActStoreError",
    "CorpusError",
    "FormatError",
    "ReadOnlyError",
    "SQLError",
    "SchemaError",
    "SiteError",
    "SiteInfo",
    "SiteNotFoundError",
    "SiteWriter",
    "Store",
    "StoreExistsError",
    "StoreLockedError",
    "StoreNotFoundError",
    "TableInfo",
    "__version__",
    "create",
    "ingest_conllu",
    "open",
]
