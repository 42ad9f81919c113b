"""Names and constants every layer shares, with no heavy imports: site dtypes, site
names, glob matching of site names, natural sort order.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from actstore.errors import SchemaError, SiteNotFoundError

Params = Sequence[Any] | Mapping[str, Any] | None  # values for an SQL query's placeholders
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Dtype = Literal["float16", "bfloat16", "float32"]
DTYPES: tuple[Dtype, ...] = ("float16", "bfloat16", "float32")  # most compact first
_SITE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def check_site_name(name: str) -> str:
    """Site names are ``<model>/<component>[/...]`` of letters, digits, ``_ . -``.

    Examples
    --------
    >>> check_site_name("minilm/layer.3")
    'minilm/layer.3'
    >>> check_site_name("../etc")
    Traceback (most recent call last):
    ...
    actstore.errors.SchemaError: invalid site name '../etc': expected '<model>/<component>' ...
    """
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) < 2 or not all(_SITE_PART.match(p) and p not in {".", ".."} for p in parts):
        raise SchemaError(
            f"invalid site name {name!r}: expected '<model>/<component>' such as "
            "'minilm/layer.3', each part of letters, digits, '_', '.', '-'"
        )
    return name


def natural_key(name: str) -> list[object]:
    """Sort key that orders the numbers inside names by value (``layer.2`` < ``layer.10``).

    Examples
    --------
    >>> sorted(["m/layer.10", "m/layer.2"], key=natural_key)
    ['m/layer.2', 'm/layer.10']
    """
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def match_names(names: Iterable[str], pattern: str, what: str = "site") -> list[str]:
    """The names matching any of the comma-separated globs in ``pattern``, naturally sorted.

    A glob matches a whole name (``minilm/layer.*``) or, for ``<model>/<component>``
    names, the component alone (``layer.*``). No match raises
    :class:`~actstore.errors.SiteNotFoundError` listing the names there are.

    Examples
    --------
    >>> match_names(["m/layer.0", "m/layer.10", "m/layer.2"], "layer.*")
    ['m/layer.0', 'm/layer.2', 'm/layer.10']
    >>> match_names(["m/layer.0"], "x/*")
    Traceback (most recent call last):
    ...
    actstore.errors.SiteNotFoundError: no site matches 'x/*'; sites: m/layer.0
    """
    pool = list(names)
    globs = [p.strip() for p in pattern.split(",") if p.strip()]
    chosen = [
        n
        for n in pool
        if any(
            fnmatch.fnmatchcase(n, g) or fnmatch.fnmatchcase(n.split("/", 1)[-1], g) for g in globs
        )
    ]
    if not chosen:
        known = ", ".join(sorted(pool, key=natural_key)) or "none"
        raise SiteNotFoundError(f"no {what} matches {pattern!r}; {what}s: {known}")
    return sorted(chosen, key=natural_key)


def quote_ident(name: str) -> str:
    """Quote a table or column name that was checked against the schema.

    Examples
    --------
    >>> quote_ident('odd"name')
    '"odd""name"'
    """
    return '"' + name.replace('"', '""') + '"'


def check_table_name(name: str) -> str:
    """Table names are plain identifiers: letters, digits and underscores.

    Examples
    --------
    >>> check_table_name("probe_upos")
    'probe_upos'
    """
    if not isinstance(name, str) or not _IDENT.match(name):
        raise SchemaError(
            f"invalid table name {name!r}: use letters, digits and underscores, "
            "starting with a letter"
        )
    return name


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """``"did you mean X?"`` naming the names closest to ``name`` (the one that differs
    from it only in case, when there is one), or ``""``.

    Examples
    --------
    >>> did_you_mean("tense", ["upos", "Tense", "Person"])
    'did you mean Tense?'
    >>> did_you_mean("deprel_bas", ["deprel", "deprel_base", "lemma"])
    'did you mean deprel_base or deprel?'
    >>> did_you_mean("zzz", ["upos"])
    ''
    """
    spelled: dict[str, str] = {}
    for other in names:
        spelled.setdefault(other.lower(), other)
    if spelled.get(name.lower(), name) != name:
        close = [spelled[name.lower()]]
    else:
        matches = difflib.get_close_matches(name.lower(), list(spelled), n=3)
        close = [spelled[m] for m in matches if spelled[m] != name]
    if len(close) > 1:
        return f"did you mean {', '.join(close[:-1])} or {close[-1]}?"
    return f"did you mean {close[0]}?" if close else ""


def unit_dims(n: int) -> tuple[str, ...]:
    """Names of the dimensions of a row of ``n`` axes: ``channel, y, x`` for feature maps.

    Examples
    --------
    >>> unit_dims(3), unit_dims(2)
    (('channel', 'y', 'x'), ('unit_0', 'unit_1'))
    """
    return ("channel", "y", "x") if n == 3 else tuple(f"unit_{i}" for i in range(n))


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# a query that reads the catalog sees every table, named or not
_CATALOG = re.compile(
    r"information_schema|duckdb_|pg_catalog|\b(show|describe|summarize|pragma)\b", re.I
)


def needed_views(query: str, views: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The views a query needs: the tables whose names occur in it as words (SQL names
    ignore case); every table when it names none, or reads the catalog. A store with
    hundreds of results then opens two views for a query over two tables, not hundreds
    (each view reads its Parquet footers). Naming a table more than it uses (in a string,
    as a column) only opens a view too many.

    Examples
    --------
    >>> views = {"tokens": ["t.parquet"], "words": ["w.parquet"], "probe": ["p.parquet"]}
    >>> sorted(needed_views("SELECT upos FROM Tokens WHERE form IN (SELECT word FROM words)",
    ...                     views))
    ['tokens', 'words']
    >>> len(needed_views("SHOW TABLES", views)), len(needed_views("SELECT 1", views))
    (3, 3)
    """
    if _CATALOG.search(query):
        return dict(views)
    words = {w.lower() for w in _WORD.findall(query)}
    named = {n: files for n, files in views.items() if n.lower() in words}
    return named or dict(views)
