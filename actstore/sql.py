"""Read-only SQL over a store's Parquet tables with DuckDB, read-only by construction.

What a user's query can reach is decided before it runs, not by inspecting it:

- DuckDB's own file access is switched off (``enable_external_access = false``) and
  the configuration is locked, so no query can read, write, attach or install
  anything on the file system, or turn that back on;
- the tables are views over ``actstore://`` paths, served by :class:`StoreFiles`, an
  fsspec file system that opens exactly the Parquet parts the manifest names, for
  reading only; every other path, and every write, is refused;
- Python objects are not visible to queries (no replacement scans), and spilled
  intermediate results go to a private temporary folder;
- every query gets a fresh connection, so nothing it does (a view replaced under
  ``EXPLAIN ANALYZE``, a macro) outlives it.

On top of that, only queries (``SELECT``, ``WITH``, ``DESCRIBE``, ``SUMMARIZE``,
``EXPLAIN`` of those) are accepted, which turns attempts into clear messages.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import fsspec

from actstore.errors import ParameterError, ReadOnlyError, SQLError
from actstore.names import Params, check_table_name, quote_ident
from actstore.storage import Storage

__all__ = ["Params", "check_table_name", "condition", "connect", "quote_ident", "run_query"]

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(ANALYZE\s+|ANALYSE\s+)?(?P<inner>.*)$", re.I | re.S)
PROTOCOL = "actstore"
_DAMAGED: dict[int, dict[str, str]] = {}  # open connection -> its unreadable tables
# what a query is made of, so that words inside strings, quoted names and comments are skipped
_TOKENS = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|(?P<word>[A-Za-z_][A-Za-z0-9_$]*)", re.S
)
_EXCERPT = re.compile(r"^LINE \d+: (?:\.\.\.)?(?P<text>.*?)(?:\.\.\.)?$")


def condition(where: str, parameter: str = "where") -> str:
    """A user's SQL filter, checked to be one expression, ready to sit in ``WHERE (...)``.

    The filter cannot close the surrounding query (``1=1) OR (1=1`` is refused) and a
    trailing comment cannot swallow what follows it.

    Examples
    --------
    >>> condition("upos = 'NOUN' AND depth > 3 -- nouns")
    "\\nupos = 'NOUN' AND depth > 3\\n"
    >>> condition("1=1) OR (1=1")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: where is not one SQL expression: ...
    >>> condition("upos = 'NOUN' AND Case = 'Nom'")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: where ...; Case is an SQL keyword: write the column as "Case"...
    """
    try:
        expression = duckdb.SQLExpression(where)
    except (duckdb.Error, TypeError) as exc:
        hint = _quote_hint(where, None, duckdb.SQLExpression) if isinstance(where, str) else ""
        detail = f"is not one SQL expression: {_first_line(exc)}"
        raise ParameterError(parameter, detail + (f"; {hint}" if hint else "")) from None
    return f"\n{expression}\n"


@functools.cache
def _keywords() -> frozenset[str]:
    """SQL keywords that cannot name a column unquoted (DuckDB's own list)."""
    with duckdb.connect(":memory:") as con:
        kinds = "keyword_category IN ('reserved', 'type_function')"
        rows = con.sql(f"SELECT keyword_name FROM duckdb_keywords() WHERE {kinds}").fetchall()
    return frozenset(str(r[0]).lower() for r in rows)


def _quote_hint(text: str, columns: Iterable[str] | None, parse: Callable[[str], Any]) -> str:
    """Advice to double-quote the words of ``text`` that are keywords but name columns
    (``Case``), if quoting them lets ``parse`` read it; else ``""``. The words: names of
    ``columns`` in any case, or without ``columns``, written as UD writes features; not
    in capitals (as keywords are written), nor in strings, quoted names or comments."""
    spelled = {c.lower(): c for c in columns or ()}
    found = [m["word"] for m in _TOKENS.finditer(text) if m["word"] and not m["word"].isupper()]
    keep = (lambda w: w.lower() in spelled) if columns is not None else (lambda w: w[0].isupper())
    words = [w for w in dict.fromkeys(found) if w.lower() in _keywords() and keep(w)]
    try:
        parse(_TOKENS.sub(lambda m: f'"{m[0]}"' if m[0] in words else m[0], text))
    except duckdb.Error:
        return ""
    names = list(dict.fromkeys(spelled.get(w.lower(), w) for w in words))
    quoted = ", ".join(f'"{n}"' for n in names)
    if len(names) == 1:
        return f"{names[0]} is an SQL keyword: write the column as {quoted}, in double quotes"
    return f"{', '.join(names)} are SQL keywords: write the columns as {quoted}, in double quotes"


class StoreFiles(fsspec.AbstractFileSystem):  # type: ignore[misc]
    """The Parquet parts of one store, for reading only, as ``actstore://<relative path>``.

    Only the files given (relative to ``root``) exist here; opening anything else, or
    opening for writing, raises :class:`PermissionError`.
    """

    protocol = PROTOCOL
    root_marker = ""
    cachable = False

    def __init__(self, storage: Storage, files: Sequence[str]) -> None:
        super().__init__()
        self.storage = storage
        self.files = frozenset(files)
        self.opened: list[Any] = []
        self._sizes: dict[str, int] = {}

    def _rel(self, path: str) -> str:
        rel = str(self._strip_protocol(path)).lstrip("/")
        if rel not in self.files:
            raise PermissionError(f"{path}: not a table file of this store")
        return rel

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            raise PermissionError(f"{path}: the store is read-only through SQL")
        rel = self._rel(path)
        try:
            handle = self.storage.shared_file(rel)
        except FileNotFoundError:  # removed since the store was opened, or damaged
            raise FileNotFoundError(f"{PROTOCOL}://{rel} is missing") from None
        self.opened.append(handle)
        return handle

    def close_all(self) -> None:
        """Close every file DuckDB opened (it leaves them to the garbage collector)."""
        for handle in self.opened:
            handle.close()
        self.opened.clear()

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        rel = self._rel(path)
        if rel not in self._sizes:  # one request per file in object storage
            try:
                self._sizes[rel] = self.storage.file_size(rel)
            except FileNotFoundError:
                raise FileNotFoundError(f"{PROTOCOL}://{rel} is missing") from None
        return {"name": path, "size": self._sizes[rel], "type": "file"}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        return [self.info(path)] if detail else [path]

    def modified(self, path: str) -> _dt.datetime:
        self._rel(path)  # paths are never reused: a part never changes once written
        return _dt.datetime.fromtimestamp(0, _dt.UTC)

    def rm_file(self, path: str) -> None:
        raise PermissionError(f"{path}: the store is read-only through SQL")

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        raise PermissionError(f"{path}: the store is read-only through SQL")


@contextmanager
def connect(
    storage: Storage, views: Mapping[str, list[str]]
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh, locked-down DuckDB connection with one view per table, closed afterwards.

    Parameters
    ----------
    storage
        Where the store is.
    views
        Table name -> Parquet files (relative to the store) that make up the table.
    """
    spill = tempfile.TemporaryDirectory(prefix="actstore-sql-")
    con = duckdb.connect(":memory:")
    damaged = _DAMAGED.setdefault(id(con), {})
    served = StoreFiles(storage, [f for parts in views.values() for f in parts])
    try:
        con.register_filesystem(served)
        con.execute("SET python_enable_replacements = false")
        con.execute(f"SET temp_directory = '{_literal(spill.name)}'")
        con.execute(f"SET allowed_directories = ['{PROTOCOL}://']")
        con.execute("SET enable_external_access = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET lock_configuration = true")
        for name, files in views.items():
            paths = ", ".join(f"'{PROTOCOL}://{_literal(f)}'" for f in files)
            view = f"CREATE VIEW {quote_ident(check_table_name(name))} AS "
            try:
                con.execute(f"{view}SELECT * FROM read_parquet([{paths}], union_by_name = true)")
            except duckdb.Error as exc:  # only queries that use this table fail, and say why
                reason = (
                    f"table {name} cannot be read ({_first_line(exc)}); if the store changed "
                    "since it was opened, open it again, else run `actstore verify`"
                )
                damaged[name] = reason
                fail = f"error('{_literal(reason)}')"
                con.execute(f"{view}SELECT NULL AS damaged FROM range(1) WHERE {fail} IS NULL")
        yield con
    except duckdb.Error as exc:
        raise SQLError(
            f"{storage.where()}: cannot open its tables: {_first_line(exc)}; "
            "run `actstore verify` on it"
        ) from None
    finally:
        _DAMAGED.pop(id(con), None)
        con.close()
        served.close_all()
        spill.cleanup()


def _literal(text: str) -> str:
    return text.replace("'", "''")


def check_query(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but a single read-only query, with a message that says why."""
    if not isinstance(query, str):
        raise SQLError(f"a query must be text, got {type(query).__name__}")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise SQLError("the query is not valid UTF-8 text") from None
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        columns = con.execute("SELECT column_name FROM duckdb_columns() WHERE NOT internal")
        hint = _quote_hint(query, [str(r[0]) for r in columns.fetchall()], con.extract_statements)
        raise SQLError(_message(exc, query) + (f"\n  {hint}" if hint else "")) from None
    if len(statements) != 1:
        raise SQLError(f"expected exactly one SQL statement, got {len(statements)}")
    kind = statements[0].type
    if kind not in _ALLOWED:
        raise ReadOnlyError(
            f"the store is read-only through SQL: {kind.name} statements are not allowed; "
            "run a query (SELECT, WITH ..., DESCRIBE, SUMMARIZE, EXPLAIN)"
        )
    if kind == duckdb.StatementType.EXPLAIN:
        match = _EXPLAIN.match(query)
        if match is None or match["inner"].lstrip().startswith("("):
            raise ReadOnlyError("EXPLAIN is allowed only as EXPLAIN [ANALYZE] <query>")
        check_query(con, match["inner"])


def run_query(
    con: duckdb.DuckDBPyConnection,
    query: str,
    params: Params = None,
    *,
    arrow: bool = False,
    timeout: float | None = None,
) -> Any:
    """Check and run ``query`` with bound ``params``, stopping it after ``timeout`` seconds.

    Returns a pandas DataFrame, or a ``pyarrow.Table`` when ``arrow`` is true. DuckDB's
    errors become :class:`SQLError` (or :class:`ReadOnlyError` for file access); Ctrl-C
    stops the query with ``KeyboardInterrupt``.
    """
    check_query(con, query)
    if timeout is not None and not timeout > 0:
        raise ParameterError("timeout", f"must be a positive number of seconds, got {timeout}")
    timer = threading.Timer(timeout, con.interrupt) if timeout else None
    if timer is not None:
        timer.start()
    try:
        relation = con.sql(query, params=params)
        if relation is None:  # a statement that returns nothing
            raise SQLError("the statement returned no result")
        return relation.to_arrow_table() if arrow else relation.df()
    except (duckdb.InterruptException, RuntimeError) as exc:
        if "interrupt" not in str(exc).lower():
            raise
        if timer is not None and timer.finished.is_set():
            raise SQLError(f"the query was stopped after {timeout:g} s (timeout)") from None
        raise KeyboardInterrupt from None
    except duckdb.PermissionException as exc:
        raise ReadOnlyError(
            f"query refused: {_first_line(exc)} (SQL reads only the store's tables)"
        ) from None
    except duckdb.Error as exc:
        for name, reason in _DAMAGED.get(id(con), {}).items():
            if re.search(rf"\b{re.escape(name)}\b", query, re.IGNORECASE):
                raise SQLError(reason) from None
        if f"{PROTOCOL}://" in str(exc):  # a table file vanished or broke mid-query
            raise SQLError(
                f"{_first_line(exc)}; if the store changed since it was opened, open it "
                "again, else run `actstore verify`"
            ) from None
        raise SQLError(_table_hint(con, _message(exc, query))) from None
    finally:
        if timer is not None:
            timer.cancel()


def _table_hint(con: duckdb.DuckDBPyConnection, message: str) -> str:
    """For a table that does not exist, the store's tables; DuckDB's guess is kept only
    when it names one of them (it may name a catalog table of its own, ``pg_enum``)."""
    if re.match(r"Catalog Error: Table with name \S+ does not exist", message) is None:
        return message
    views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1")
    tables = [str(r[0]) for r in views.fetchall()]
    guess = re.compile(r'\s*Did you mean "(.*)"\?$')
    lines = [ln for ln in message.split("\n") if (m := guess.match(ln)) is None or m[1] in tables]
    guessed = any(guess.match(ln) for ln in lines)
    return "\n".join(lines if guessed else [*lines, f"  tables: {', '.join(tables)}"])


def _message(exc: BaseException, query: str | None = None) -> str:
    """An error as a user should see it: DuckDB's first line, then its hints (candidate
    bindings, the caret under the query) indented on lines of their own.

    An excerpt (``LINE n: ...`` and its caret) is kept only when it quotes ``query``,
    never SQL of our own such as the views'; an error raised in Python under DuckDB
    gives the exception line its traceback ends with.
    """
    lines = [ln.rstrip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if "Traceback (most recent call last)" in lines[0]:
        return lines[-1].strip()
    kept, dropped = [lines[0].strip()], False
    for line in lines[1:]:
        if dropped and not line.strip(" ^"):
            continue  # the caret under a dropped excerpt
        excerpt = _EXCERPT.match(line)
        dropped = excerpt is not None and (query is None or excerpt["text"].strip() not in query)
        if not dropped:
            kept.append("  " + line.replace("\t", "  "))
    return "\n".join(kept)


def _first_line(exc: BaseException) -> str:
    """The line of an error that says what happened, for messages that quote it."""
    return _message(exc).split("\n")[0]
