"""Typed results: tidy tables with a checked schema, and the provenance saved beside them.

Every analysis declares a :class:`TableSchema`: its name and its columns with their
dtypes. The analysis builds its table through the schema (:meth:`TableSchema.frame`),
so a column that is missing, unknown or of the wrong kind is an error where it is
made, not a surprise in someone's SQL later. :class:`TidyResult` binds a checked
table to its provenance (:func:`provenance`: analysis, parameters, ``where``, a digest
of the sites' provenance, the store's generation and the actstore version), and
:meth:`TidyResult.save` is the one way analyses write results
(``Store.write_result``), so ``actstore sql`` can query them and ``Store.results``
says how each was made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

import actstore
from actstore.errors import SchemaError

Kind = Literal["string", "int64", "float64", "bool"]
_ARROW: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
}


@dataclass(frozen=True)
class Column:
    """One column of a result table: name, kind, and whether every table has it."""

    name: str
    kind: Kind
    required: bool = True


@dataclass(frozen=True)
class TableSchema:
    """The columns (in order) of the tidy table an analysis returns.

    Examples
    --------
    >>> schema = TableSchema("demo", (Column("unit", "int64"), Column("value", "float64")))
    >>> schema.frame({"unit": [0, 1], "value": [0.5, 1]}).dtypes.tolist()
    [dtype('int64'), dtype('float64')]
    >>> schema.frame({"unit": [0], "values": [0.5]})
    Traceback (most recent call last):
    ...
    actstore.errors.SchemaError: demo table: unexpected column(s) values; columns: unit, value
    """

    analysis: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """The column names, in order."""
        return [c.name for c in self.columns]

    def frame(self, data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """A checked table from columns (a mapping) or records (a list of mappings)."""
        if isinstance(data, Mapping):
            return self.check(pd.DataFrame(dict(data)))
        records = list(data)
        given = {key for record in records for key in record}
        names = [c.name for c in self.columns if c.required or c.name in given]
        names += sorted(given - set(names))  # unknown keys: refused by check, by name
        return self.check(pd.DataFrame.from_records(records, columns=names))

    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the schema's columns in order and dtypes; raises
        :class:`SchemaError` for a missing, unexpected or mistyped column."""
        extra = [c for c in frame.columns if c not in self.names]
        if extra:
            raise SchemaError(
                f"{self.analysis} table: unexpected column(s) {', '.join(map(str, extra))}; "
                f"columns: {', '.join(self.names)}"
            )
        out = {}
        for column in self.columns:
            if column.name not in frame.columns:
                if column.required:
                    raise SchemaError(f"{self.analysis} table: column {column.name!r} is missing")
                continue
            out[column.name] = _coerce(frame[column.name], column, self.analysis)
        return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))

    def to_arrow(self, frame: pd.DataFrame) -> pa.Table:
        """The checked table as Arrow, with the schema's types."""
        checked = self.check(frame)
        fields = [pa.field(c.name, _ARROW[c.kind]) for c in self.columns if c.name in checked]
        return pa.Table.from_pandas(checked, schema=pa.schema(fields), preserve_index=False)


def _coerce(series: pd.Series, column: Column, analysis: str) -> pd.Series:
    kind = series.dtype
    if len(series) == 0:
        return series.astype(object if column.kind == "string" else column.kind)
    ok = {
        "string": pd.api.types.is_string_dtype(kind) or series.isna().all(),
        "int64": pd.api.types.is_integer_dtype(kind) or pd.api.types.is_bool_dtype(kind),
        "float64": pd.api.types.is_numeric_dtype(kind),
        "bool": pd.api.types.is_bool_dtype(kind),
    }[column.kind]
    if not ok:
        raise SchemaError(
            f"{analysis} table: column {column.name!r} should hold {column.kind}, got {kind}"
        )
    if column.kind == "string":
        return series.astype(object)
    return series.astype(column.kind)


def jsonable(value: Any) -> Any:
    """Parameters as JSON values: dataclasses as dicts, tuples as lists, paths as text.

    Examples
    --------
    >>> jsonable({"offsets": (0, 1), "plot": Path("a.png"), "top": np.int64(3)})
    {'offsets': [0, 1], 'plot': 'a.png', 'top': 3}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def site_digest(store: actstore.Store, sites: Sequence[str]) -> str:
    """SHA-256 of the sites' names, shapes, dtypes and provenance (how they were made).

    Examples
    --------
    >>> len(site_digest(store, ["toy/layer.0"]))
    64
    """
    described = []
    for name in sites:
        info = store.site(name)
        described.append(
            {
                "name": name,
                "table": info.table,
                "shape": [info.n_rows, info.n_units],
                "dtype": info.dtype,
                "provenance": info.provenance,
            }
        )
    text = json.dumps(jsonable(described), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def provenance(
    store: actstore.Store,
    analysis: str,
    sites: Sequence[str],
    parameters: Any,
    where: str | None = None,
) -> dict[str, Any]:
    """How a result was made: analysis, parameters, ``where``, sites and their digest,
    the store's generation and the actstore version.

    Examples
    --------
    >>> made = provenance(store, "correlate", ["toy/layer.0"], {"covariate": "depth"})
    >>> sorted(made)[:4], made["analysis"], made["sites"]
    (['actstore_version', 'analysis', 'parameters', 'site_digest'], 'correlate', ['toy/layer.0'])
    """
    return {
        "analysis": analysis,
        "parameters": jsonable(parameters),
        "where": where,
        "sites": list(sites),
        "site_digest": site_digest(store, sites),
        "store_generation": int(store.generation),
        "actstore_version": actstore.__version__,
    }


@dataclass(frozen=True)
class TidyResult:
    """A checked tidy table and how it was made.

    Examples
    --------
    >>> schema = TableSchema("mean", (Column("unit", "int64"), Column("value", "float64")))
    >>> made = provenance(store, "mean", ["toy/layer.0"], {})
    >>> result = TidyResult(schema, schema.frame({"unit": [0], "value": [0.5]}), made)
    >>> result.save(store, "unit_means")
    >>> store.sql("SELECT value FROM unit_means")["value"].tolist()
    [0.5]
    """

    schema: TableSchema
    frame: pd.DataFrame
    provenance: Mapping[str, Any]

    def save(self, store: actstore.Store, name: str, *, replace: bool = False) -> None:
        """Write the table as the store's result ``name`` (an older one of that name only
        with ``replace``)."""
        table = self.schema.to_arrow(self.frame)
        store.write_result(name, table, provenance=self.provenance, replace=replace)
