"""actstore: an activation store and query engine for studying what networks represent.

Activations live in Zarr arrays beside Parquet tables of annotated tokens; row i of
every array is row i of its table. Query annotations with SQL, read activations
lazily, run analyses out of core.

The store API is imported on first use, so ``import actstore`` (and ``actstore
--help``) stays fast.

Examples
--------
>>> import actstore
>>> store = actstore.create(tmp / "ewt.actstore")
>>> records = actstore.ingest_conllu(store, [sample_conllu])
>>> store.sql("SELECT upos, count(*) AS n FROM tokens GROUP BY upos ORDER BY n DESC").iloc[0]
upos    NOUN
n        127
Name: 0, dtype: object
>>> store.close()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from actstore.errors import (
    ActStoreError,
    CorpusError,
    FormatError,
    ImageError,
    ModelError,
    ParameterError,
    ReadOnlyError,
    SchemaError,
    SiteError,
    SiteNotFoundError,
    SQLError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
)
from actstore.version import __version__

if TYPE_CHECKING:
    from actstore.images import ingest_images
    from actstore.ingest import ingest_conllu
    from actstore.lifecycle import create
    from actstore.lifecycle import open_store as open
    from actstore.manifest import SourceInfo
    from actstore.results import MatrixResult, ResultInfo
    from actstore.sites import SiteInfo
    from actstore.store import Store, TableInfo
    from actstore.writer import SiteWriter

_LAZY = {
    "ingest_conllu": ("actstore.ingest", "ingest_conllu"),
    "ingest_images": ("actstore.images", "ingest_images"),
    "MatrixResult": ("actstore.results", "MatrixResult"),
    "ResultInfo": ("actstore.results", "ResultInfo"),
    "SiteInfo": ("actstore.sites", "SiteInfo"),
    "SourceInfo": ("actstore.manifest", "SourceInfo"),
    "Store": ("actstore.store", "Store"),
    "TableInfo": ("actstore.store", "TableInfo"),
    "create": ("actstore.lifecycle", "create"),
    "open": ("actstore.lifecycle", "open_store"),
    "SiteWriter": ("actstore.writer", "SiteWriter"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'actstore' has no attribute {name!r}")


__all__ = [
    "ActStoreError",
    "CorpusError",
    "FormatError",
    "ImageError",
    "MatrixResult",
    "ModelError",
    "ParameterError",
    "ReadOnlyError",
    "ResultInfo",
    "SQLError",
    "SchemaError",
    "SiteError",
    "SiteInfo",
    "SiteNotFoundError",
    "SiteWriter",
    "SourceInfo",
    "Store",
    "StoreExistsError",
    "StoreLockedError",
    "StoreNotFoundError",
    "TableInfo",
    "__version__",
    "create",
    "ingest_conllu",
    "ingest_images",
    "open",
]
