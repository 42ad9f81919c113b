"""Read-only SQL over a store's Parquet tables with DuckDB.

Each table is a view over the Parquet parts the manifest names (``union_by_name``,
so parts with different feature columns line up). The connection can read files
inside the store only, its configuration is locked, and only queries (``SELECT``,
``WITH``, ``DESCRIBE``, ``EXPLAIN`` ...) are accepted: any statement that would change
data or write a file is refused before it runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from actstore.errors import ReadOnlyError, SchemaError, SQLError

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Params = Sequence[Any] | Mapping[str, Any] | None


def quote_ident(name: str) -> str:
    """Quote a table or column name that was checked against the schema."""
    return '"' + name.replace('"', '""') + '"'


def check_table_name(name: str) -> str:
    """Table names are plain identifiers: letters, digits and underscores."""
    if not _IDENT.match(name):
        raise SchemaError(
            f"invalid table name {name!r}: use letters, digits and underscores, "
            "starting with a letter"
        )
    return name


def connect(root: Path, views: Mapping[str, list[str]]) -> duckdb.DuckDBPyConnection:
    """A locked-down DuckDB connection with one view per table.

    Parameters
    ----------
    root
        The store directory: the only place the connection may read files.
    views
        Table name -> Parquet files (relative to ``root``) that make up the table.
    """
    con = duckdb.connect(":memory:")
    for name, files in views.items():
        paths = ", ".join("'" + str(root / f).replace("'", "''") + "'" for f in files)
        con.execute(
            f"CREATE VIEW {quote_ident(check_table_name(name))} AS "
            f"SELECT * FROM read_parquet([{paths}], union_by_name = true)"
        )
    allowed = str(root.resolve()).replace("'", "''") + "/"
    con.execute(f"SET allowed_directories = ['{allowed}']")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def check_query(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but a single read-only query, with a message that says why."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise SQLError(f"SQL syntax error: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise SQLError(f"expected exactly one SQL statement, got {len(statements)}")
    kind = statements[0].type
    if kind not in _ALLOWED:
        raise ReadOnlyError(
            f"the store is read-only through SQL: {kind.name} statements are not allowed; "
            "run a query (SELECT, WITH ..., DESCRIBE, SUMMARIZE, EXPLAIN)"
        )


def run_query(
    con: duckdb.DuckDBPyConnection, query: str, params: Params = None, *, arrow: bool = False
) -> Any:
    """Check and run ``query`` with bound ``params``.

    Returns a pandas DataFrame, or a ``pyarrow.Table`` when ``arrow`` is true. DuckDB's
    errors become :class:`SQLError` (or :class:`ReadOnlyError` for file access).
    """
    check_query(con, query)
    try:
        relation = con.sql(query, params=params)
        if relation is None:  # a statement that returns nothing, e.g. EXPLAIN in some modes
            raise SQLError("the statement returned no result")
        return relation.to_arrow_table() if arrow else relation.df()
    except duckdb.PermissionException as exc:
        raise ReadOnlyError(
            f"query refused: {_first_line(exc)} (SQL reads only the store's tables)"
        ) from None
    except duckdb.Error as exc:
        raise SQLError(_first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
