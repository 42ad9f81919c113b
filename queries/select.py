"""Choosing what an analysis reads: sites by glob, columns checked against the schema."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Concatenate, ParamSpec

import numpy as np
import pandas as pd
import pyarrow as pa

import actstore
from actstore.errors import ParameterError, SchemaError
from actstore.names import match_names
from actstore.sql import condition, quote_ident


def resolve_sites(store: actstore.Store, pattern: str) -> list[str]:
    """Complete sites whose name matches a glob (comma-separated globs allowed), sorted
    naturally (``layer.2`` before ``layer.10``).

    Examples
    --------
    >>> resolve_sites(store, "toy/*")
    ['toy/layer.0', 'toy/layer.1']
    >>> resolve_sites(store, "nope/*")
    Traceback (most recent call last):
    ...
    actstore.errors.SiteNotFoundError: no complete site matches 'nope/*'; complete sites: ...
    """
    complete = [name for name, site in store.sites.items() if site.status == "complete"]
    return match_names(complete, pattern, what="complete site")


def require_tokens(store: actstore.Store, names: Sequence[str]) -> None:
    """Refuse sites that are not over ``tokens``, for analyses of words in sentences
    (probes, dynamics, measures, selectivity).

    Examples
    --------
    >>> require_tokens(store, ["toy/layer.0"])
    """
    for name in names:
        table = store.site(name).table
        if table != "tokens":
            raise SchemaError(
                f"site {name} is over table {table}: this analysis reads sites over tokens "
                "(words in sentences); correlate takes a site over any table"
            )


P = ParamSpec("P")


def each_site(
    analysis: Callable[Concatenate[actstore.Store, str, P], pd.DataFrame],
) -> Callable[Concatenate[actstore.Store, str, P], pd.DataFrame]:
    """Let an analysis of one site take a glob, as the command line does: it runs on
    every complete site the glob matches, and their tidy tables are stacked.

    Examples
    --------
    >>> @each_site
    ... def units(store, site):
    ...     return pd.DataFrame({"site": [site], "n_units": [store.site(site).n_units]})
    >>> units(store, "layer.*").values.tolist()
    [['toy/layer.0', 16], ['toy/layer.1', 16]]
    """

    @functools.wraps(analysis)
    def run(store: actstore.Store, site: str, /, *args: P.args, **kwargs: P.kwargs) -> pd.DataFrame:
        names = [site] if site in store.sites else resolve_sites(store, site)
        frames = [analysis(store, name, *args, **kwargs) for name in names]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    return run


def one_site(store: actstore.Store, pattern: str, parameter: str) -> str:
    """The one complete site that glob ``pattern`` matches (for analyses of one site).

    Examples
    --------
    >>> one_site(store, "layer.1", "sites")
    'toy/layer.1'
    >>> one_site(store, "toy/*", "sites")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: sites 'toy/*' matches 2 sites (toy/layer.0, ...); this ...
    """
    names = resolve_sites(store, pattern)
    if len(names) > 1:
        raise ParameterError(
            parameter,
            f"{pattern!r} matches {len(names)} sites ({', '.join(names)}); this analysis takes one",
        )
    return names[0]


def table_columns(store: actstore.Store, table: str = "tokens") -> list[str]:
    """The column names of ``table``.

    Examples
    --------
    >>> table_columns(store)[:3]
    ['row', 'sentence_id', 'position']
    """
    return list(store.schema(table).names)


def check_columns(store: actstore.Store, table: str, names: Sequence[str]) -> None:
    """Raise :class:`SchemaError` naming the first of ``names`` that ``table`` lacks.

    Examples
    --------
    >>> check_columns(store, "tokens", ["upos", "nope"])
    Traceback (most recent call last):
    ...
    actstore.errors.SchemaError: no column 'nope' in tokens; columns: ...
    """
    store.require_columns(names, table)


def token_column(store: actstore.Store, name: str) -> str:
    """``name`` quoted for SQL, after checking it is a column of ``tokens``.

    Examples
    --------
    >>> token_column(store, "upos")
    '"upos"'
    """
    check_columns(store, "tokens", [name])
    return quote_ident(name)


def not_null(where: str | None, column: str) -> str:
    """``where`` narrowed to rows where ``column`` (checked, quoted) has a value.

    Examples
    --------
    >>> not_null("upos = 'NOUN'", '"depth"')
    '(\\nupos = \\'NOUN\\'\\n) AND "depth" IS NOT NULL'
    """
    present = f"{column} IS NOT NULL"
    return f"({condition(where)}) AND {present}" if where and where.strip() else present


def numeric(column: pa.ChunkedArray | pa.Array, name: str) -> np.ndarray:
    """A numeric column as float64; a text column raises :class:`SchemaError`.

    Examples
    --------
    >>> numeric(pa.array([1, 2]), "depth")
    array([1., 2.])
    >>> numeric(pa.array(["a"]), "upos")
    Traceback (most recent call last):
    ...
    actstore.errors.SchemaError: column 'upos' is not numeric
    """
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise SchemaError(f"column {name!r} is not numeric")
    return np.asarray(column.to_numpy(zero_copy_only=False), np.float64)


def where_clause(where: str | None) -> str:
    """`` WHERE (...)`` for an optional user condition, or nothing. The condition must
    be one SQL expression (:func:`actstore.sql.condition`), so it cannot close the query.

    Examples
    --------
    >>> where_clause("depth > 2"), where_clause(None)
    (' WHERE (\\ndepth > 2\\n)', '')
    >>> where_clause("1=1) OR (1=1")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: where is not one SQL expression: ...
    """
    return f" WHERE ({condition(where)})" if where and where.strip() else ""


def categorical_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A column as integer codes into its sorted distinct values (as text); NULL is -1.

    Dictionary-encoded columns (as ``Store.columns`` reads strings) keep their codes;
    the chunks' dictionaries are unified first.

    Examples
    --------
    >>> codes, names = categorical_codes(pa.chunked_array([["b", None, "a", "b"]]))
    >>> codes.tolist(), names
    ([1, -1, 0, 1], ['a', 'b'])
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
