"""The ``words`` table seen from the tokens: which word type each token is.

A store may hold a ``words`` table (one row per word type: ``row``, ``word``, ``rank``,
``source``; filled by ``actstore ingest STORE vectors`` and ``actstore types``) and
sites over it (``glove/vectors``, ``minilm-types/layer.3``). A token is a word of that
table by its form or lemma, lower-cased or not (:func:`token_keys`); :func:`word_rows`
gives each token its ``words`` row, and :func:`token_vectors` a word site seen row for
row over the tokens: out-of-vocabulary tokens are NaN rows flagged by the coordinate
``in_vocab``, never zero rows that pass for vectors. Extractors and queries share this
mapping; neither needs the other.

Lower-casing is Unicode's (``pyarrow.compute.utf8_lower``), the same everywhere.

Examples
--------
>>> with store.transaction():  # the first words are "From the AP comes this story :"
...     store.append_table("words", pa.table({"row": [0, 1], "word": ["the", "from"]}))
>>> word_rows(store)[:4].tolist(), word_rows(store, lowercase=False)[:2].tolist()
([1, 0, -1, -1], [-1, 0])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from actstore import coverage
from actstore.errors import ParameterError, SchemaError

if TYPE_CHECKING:  # xarray and dask load when a view is built
    import xarray as xr

    from actstore.reader import SiteReader
    from actstore.store import Store

WORDS = "words"
By = Literal["form", "lemma"]
BY_CHOICES: tuple[By, ...] = ("form", "lemma")
BLOCK_ROWS = 65536  # tokens per block of a lazy view


def normalise(words: pa.Array | pa.ChunkedArray, lowercase: bool) -> pa.Array:
    """``words`` as a plain string array, lower-cased if asked (nulls stay null).

    Examples
    --------
    >>> normalise(pa.array(["The", None, "ÉTÉ"]), True).to_pylist()
    ['the', None, 'été']
    """
    if isinstance(words, pa.ChunkedArray):
        words = words.combine_chunks()
    if pa.types.is_dictionary(words.type):
        words = words.dictionary_decode()
    words = words.cast(pa.string())
    return pc.utf8_lower(words) if lowercase else words


def token_keys(store: Store, by: str = "form", lowercase: bool = True) -> pa.Array:
    """Per ``tokens`` row the word type it is: its ``form`` or ``lemma``, lower-cased
    unless ``lowercase=False`` (null where the column is)."""
    if by not in BY_CHOICES:
        raise ParameterError("by", f"must be one of {list(BY_CHOICES)}, got {by!r}")
    column = store.columns([by], table="tokens").column(by)
    return normalise(column, lowercase)


def vocabulary(store: Store) -> pa.Array:
    """The ``words`` table's ``word`` column in row order (an error if there is none)."""
    if store.n_rows(WORDS) == 0:
        raise SchemaError(
            f"{store.location} has no words table: run `actstore ingest STORE vectors` "
            "or `actstore types` first"
        )
    return normalise(store.columns(["word"], table=WORDS).column("word"), False)


def lookup(keys: pa.Array, words: pa.Array) -> np.ndarray:
    """The position in ``words`` of each key (-1 where absent or null).

    Examples
    --------
    >>> lookup(pa.array(["b", "x", None]), pa.array(["a", "b"])).tolist()
    [1, -1, -1]
    """
    found = pc.index_in(keys, value_set=words)
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def word_rows(store: Store, by: str = "form", lowercase: bool = True) -> np.ndarray:
    """Per ``tokens`` row its ``words`` row (-1: out of the vocabulary).

    Examples
    --------
    >>> word_rows(store)
    Traceback (most recent call last):
    ...
    actstore.errors.SchemaError: ... has no words table: run `actstore ingest STORE vectors` ...
    """
    return lookup(token_keys(store, by, lowercase), vocabulary(store))


def token_vectors(
    store: Store,
    site: str = "glove/vectors",
    *,
    by: str = "form",
    lowercase: bool = True,
    where: str | None = None,
) -> xr.DataArray:
    """Word site ``site`` over the tokens: a lazy ``(row, unit)`` view, one row per token.

    A token whose type has no row in ``words``, or whose row the site does not cover,
    is out of the vocabulary: a NaN row with ``in_vocab`` False. Coordinates:
    ``in_vocab`` and ``word_row`` (-1 when out); ``attrs`` hold the coverage
    (``n_tokens``, ``n_in_vocab``, ``token_coverage``, ``n_types``,
    ``n_types_in_vocab``, ``type_coverage``; types are distinct non-null keys).
    ``where`` is an SQL condition choosing tokens.

    Examples
    --------
    >>> with store.transaction():
    ...     store.append_table("words", pa.table({"row": [0, 1], "word": ["the", "from"]}))
    >>> writer = store.create_site("vec/vectors", table="words", n_units=2, dtype="float32")
    >>> writer.write(0, np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)); writer.commit()
    >>> view = token_vectors(store, "vec/vectors")
    >>> view.values[:3].tolist(), view.in_vocab.values[:3].tolist()
    ([[3.0, 4.0], [1.0, 2.0], [nan, nan]], [True, True, False])
    >>> view.attrs["n_types_in_vocab"], view.attrs["n_in_vocab"]
    (2, 39)
    """
    import dask.array as da
    import xarray as xr

    info = store.site(site)
    if info.table != WORDS:
        raise SchemaError(f"site {site} is over table {info.table}, not {WORDS}")
    keys = token_keys(store, by, lowercase)
    tokens = np.arange(len(keys), dtype=np.int64) if where is None else store.rows(where)
    keys = keys.take(pa.array(tokens))
    rows = lookup(keys, vocabulary(store))
    rows[coverage.outside(rows, list(info.covers))] = -1  # words the site has no values for
    attrs = {"site": site, "by": by, "lowercase": lowercase, **coverage_of(keys, rows)}
    reader = store.site_reader(site)
    index = da.from_array(rows, chunks=BLOCK_ROWS)  # type: ignore[no-untyped-call]
    data = index.map_blocks(
        _gather, reader, dtype=np.float32, new_axis=1, chunks=(index.chunks[0], (info.n_units,))
    )
    return xr.DataArray(
        data,
        dims=("row", "unit"),
        coords={
            "row": tokens,
            "unit": np.arange(info.n_units),
            "in_vocab": ("row", rows >= 0),
            "word_row": ("row", rows),
        },
        name=f"{site} by token {by}",
        attrs=attrs,
    )


def coverage_of(keys: pa.Array, rows: np.ndarray) -> dict[str, Any]:
    """Token and type coverage of tokens with type ``keys`` and ``words`` rows ``rows``.

    Examples
    --------
    >>> coverage_of(pa.array(["a", "b", "a", None]), np.array([0, -1, 0, -1]))["type_coverage"]
    0.5
    """
    n_tokens, n_in = len(rows), int((rows >= 0).sum())
    valid = pc.is_valid(keys).to_numpy(zero_copy_only=False)
    types = pc.unique(keys.filter(pa.array(valid)))
    known = pc.unique(keys.filter(pa.array(valid & (rows >= 0))))
    return {
        "n_tokens": n_tokens,
        "n_in_vocab": n_in,
        "token_coverage": n_in / n_tokens if n_tokens else 0.0,
        "n_types": len(types),
        "n_types_in_vocab": len(known),
        "type_coverage": len(known) / len(types) if len(types) else 0.0,
    }


def describe_coverage(attrs: dict[str, Any]) -> str:
    """One line: ``tokens 24,178 of 25,147 (96.1%), types 5,127 of 5,880 (87.2%)``.

    Examples
    --------
    >>> describe_coverage(coverage_of(pa.array(["a", "b"]), np.array([0, -1])))
    'tokens 1 of 2 (50.0%), types 1 of 2 (50.0%)'
    """
    return (
        f"tokens {attrs['n_in_vocab']:,} of {attrs['n_tokens']:,} "
        f"({attrs['token_coverage']:.1%}), types {attrs['n_types_in_vocab']:,} of "
        f"{attrs['n_types']:,} ({attrs['type_coverage']:.1%})"
    )


def _gather(rows: np.ndarray, reader: SiteReader) -> np.ndarray:
    """One block of a token view: each in-vocabulary row read once, NaN elsewhere."""
    out = np.full((rows.size, reader.n_units), np.nan, np.float32)
    inside = rows >= 0
    unique, inverse = np.unique(rows[inside], return_inverse=True)
    out[inside] = reader.take(unique)[inverse]
    return out
