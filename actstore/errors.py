"""One family of errors for everything actstore reports to its users.

Each subclass also inherits the matching builtin, so callers can catch either
``ActStoreError`` or, say, ``FileNotFoundError``. Messages say what went wrong,
where (file and line, store path, site name), what was expected and what was found.
"""

from __future__ import annotations


class ActStoreError(Exception):
    """Base class of every error actstore raises on purpose."""


class StoreNotFoundError(ActStoreError, FileNotFoundError):
    """The path holds no actstore store (or does not exist)."""


class StoreExistsError(ActStoreError, FileExistsError):
    """``create`` was asked to make a store where something already is."""


class StoreLockedError(ActStoreError, BlockingIOError):
    """Another process holds the store's writer lock."""


class ReadOnlyError(ActStoreError, PermissionError):
    """A write was attempted through a read-only handle or SQL connection."""


class StorageError(ActStoreError, OSError):
    """The object store a store lives in failed a request, or its URL is not one."""


class CommitUnknownError(StorageError):
    """A commit's request failed without saying whether it landed: nothing it wrote
    may be deleted, as the store may name it."""


class CommitConflictError(ActStoreError, FileExistsError):
    """Another writer committed the generation this writer meant to commit."""


class FormatError(ActStoreError, ValueError):
    """The store on disk does not match the format this version understands."""


class CorpusError(ActStoreError, ValueError):
    """An input corpus file is malformed; the message names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.reason = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class SchemaError(ActStoreError, ValueError):
    """A table, column, site or argument does not fit the store's schema."""


class SiteError(ActStoreError, ValueError):
    """A site cannot be declared, written or read as asked."""


class SiteNotFoundError(SiteError, KeyError):
    """No site of that name is committed in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SQLError(ActStoreError, ValueError):
    """A query failed; the message carries DuckDB's explanation."""


class DataNotFoundError(ActStoreError, FileNotFoundError):
    """The shared data directory (corpora, word-similarity sets) was not found."""


class ParameterError(SchemaError):
    """A parameter has a value it cannot take.

    ``parameter`` names the parameter as the library spells it (``align``); the
    command line shows the flag instead (``--align``). The message reads
    ``"<parameter> <detail>"``.
    """

    def __init__(self, parameter: str, detail: str) -> None:
        self.parameter = parameter
        self.detail = detail
        super().__init__(f"{parameter} {detail}")


class ModelError(ActStoreError, ValueError):
    """A model cannot be found, loaded or run as asked."""


class ImageError(CorpusError):
    """An image source is unusable: a file that does not decode, is truncated or is not
    an image, an empty folder, a bad line of a list; the message names the file (and
    the list's line) and what was expected."""
