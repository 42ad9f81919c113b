"""Choosing what an analysis reads: sites by glob, token columns checked against the schema."""

from __future__ import annotations

import fnmatch
import re

import numpy as np
import pandas as pd
import pyarrow as pa

import actstore
from actstore.errors import SchemaError, SiteNotFoundError


def resolve_sites(store: actstore.Store, pattern: str) -> list[str]:
    """Complete sites whose name matches a glob (comma-separated globs allowed), sorted
    naturally (``layer.2`` before ``layer.10``)."""
    complete = [name for name, site in store.sites.items() if site.status == "complete"]
    globs = [p.strip() for p in pattern.split(",") if p.strip()]
    chosen = [n for n in complete if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if not chosen:
        raise SiteNotFoundError(
            f"no complete site matches {pattern!r}; sites: {', '.join(sorted(complete)) or 'none'}"
        )
    return sorted(chosen, key=natural_key)


def natural_key(name: str) -> list[object]:
    """Sort key that orders the numbers inside names by value (``layer.2`` < ``layer.10``)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def token_column(store: actstore.Store, name: str) -> str:
    """``name`` quoted for SQL, after checking it is a column of ``tokens``."""
    columns = list(store.sql("SELECT * FROM tokens LIMIT 0").columns)
    if name not in columns:
        raise SchemaError(f"no column {name!r} in tokens; columns: {', '.join(columns)}")
    return '"' + name.replace('"', '""') + '"'


def numeric_column(
    store: actstore.Store, name: str, where: str | None = None, extra: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Selected tokens that have a value of the numeric column ``name``, in row order.

    Columns: ``row``, the ``extra`` columns, and ``y`` (the value, float64).
    """
    quoted = token_column(store, name)
    condition = f"{quoted} IS NOT NULL"
    if where and where.strip():
        condition = f"({where}) AND {condition}"
    columns = ", ".join(["row", *extra, f"{quoted} AS y"])
    frame: pd.DataFrame = store.sql(f"SELECT {columns} FROM tokens WHERE {condition} ORDER BY row")
    try:
        frame["y"] = frame["y"].to_numpy(np.float64)
    except (TypeError, ValueError):
        raise SchemaError(f"column {name!r} is not numeric") from None
    return frame


def where_clause(where: str | None) -> str:
    """`` WHERE (...)`` for an optional user condition, or nothing."""
    return f" WHERE ({where})" if where and where.strip() else ""


def categorical_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A column as integer codes into its sorted distinct values (as text); NULL is -1.

    Dictionary-encoded columns (as ``Store.columns`` reads strings) keep their codes;
    the chunks' dictionaries are unified first.
    """
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries()
        dictionary = column.chunks[0].dictionary if column.num_chunks else pa.array([])
        indices = pa.chunked_array([c.indices for c in column.chunks], column.type.index_type)
    else:
        encoded = column.cast(pa.string()).combine_chunks().dictionary_encode()
        dictionary, indices = encoded.dictionary, pa.chunked_array([encoded.indices])
    names = dictionary.cast(pa.string()).to_pylist()
    order = np.argsort(np.array(names, dtype=object)) if names else np.zeros(0, np.int64)
    remap = np.empty(len(names) + 1, np.int32)  # int32: labels cost O(rows) memory
    remap[order] = np.arange(len(names))
    remap[-1] = -1  # NULL
    raw = indices.fill_null(-1).to_numpy().astype(np.int64)
    return remap[raw], [names[i] for i in order]
