"""The writing half of :class:`~actstore.store.Store`: transactions, corpus tables,
results and sites (a mixin, so that each half stays readable)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actstore import results, sites, tables
from actstore.commit import Ledger
from actstore.errors import SchemaError
from actstore.manifest import Manifest, SourceInfo
from actstore.results import MatrixWriter

if TYPE_CHECKING:
    from actstore.writer import SiteWriter


class StoreWriting:
    """What a store handle open for writing can do (see :class:`~actstore.store.Store`)."""

    _ledger: Ledger

    @property
    def path(self) -> Path:
        """The store's directory (a store in object storage has none: see ``location``)."""
        return self._ledger.local_root("this operation")

    def local_path(self, what: str) -> Path:
        """The store's directory, which ``what`` needs: one line saying so for a store
        in object storage."""
        return self._ledger.local_root(what)

    # -- writing -----------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group changes into one commit; on an exception the manifest is left as it was.

        Files written inside a failed transaction are not named by the manifest and
        are deleted the next time the store is opened for writing.
        """
        with self._ledger.transaction():
            yield

    def append_table(self, name: str, table: Any) -> None:
        """Write ``table`` (Arrow or pandas) as the next Parquet part of corpus table
        ``name``; published by the enclosing :meth:`transaction`."""
        self._ledger.require_writable(exclusive=True)
        ledger = self._ledger
        tables.append_part(ledger.storage, ledger.manifest, name, tables.as_arrow(table))

    def add_source(self, source: SourceInfo) -> None:
        """Record an ingested corpus file (inside the :meth:`transaction` that adds its rows)."""
        self._ledger.require_writable(exclusive=True)
        self._ledger.manifest.sources.append(source)

    def add_table_source(self, table: str, source: Mapping[str, Any]) -> None:
        """Record where rows of row table ``table`` came from, in its provenance
        (``provenance["sources"]``), inside the :meth:`transaction` that adds them."""
        self._ledger.require_writable(exclusive=True)
        record = self._ledger.manifest.tables.get(table)
        if record is None:
            raise SchemaError(f"no table {table!r} to record a source for; append its rows first")
        record.provenance.setdefault("sources", []).append(dict(source))

    def write_result(
        self,
        name: str,
        table: Any,
        *,
        provenance: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> None:
        """Write table result ``name`` (Arrow or pandas) and commit it.

        It becomes an SQL view named ``name``. An existing result of that name is
        replaced only with ``replace=True``; names clash ignoring case, as in SQL.
        Allowed for shard writers too.

        Examples
        --------
        >>> import pandas as pd
        >>> store.write_result("scores", pd.DataFrame({"row": [0, 1], "s": [0.5, 0.25]}),
        ...                    provenance={"analysis": "example"})
        >>> store.sql("SELECT sum(s) AS total FROM scores").total[0], store.results["scores"].kind
        (np.float64(0.75), 'table')
        """
        results.write_table(self._ledger, name, table, provenance, replace)

    def write_matrix(
        self,
        name: str,
        values: Any,
        *,
        rows: Any,
        columns: Any,
        provenance: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> None:
        """Write matrix result ``name`` with its row and column labels (``replace``: over
        an existing result of that name).

        Examples
        --------
        >>> store.write_matrix("rdm", np.eye(2), rows=["cat", "dog"], columns=["cat", "dog"])
        >>> store.matrix("rdm").values.sel(row="dog", column="dog").compute().item()
        1.0
        """
        results.write_matrix(self._ledger, name, values, rows, columns, provenance, replace)

    def create_matrix(
        self, name: str, shape: tuple[int, int], *, rows: Any, columns: Any, dtype: str = "float32",
        provenance: Mapping[str, Any] | None = None, replace: bool = False,
    ) -> MatrixWriter:  # fmt: skip
        """A writer that fills matrix result ``name`` block by block (then ``commit()``)."""
        return MatrixWriter(self._ledger, name, shape, rows, columns, dtype, provenance, replace)

    def delete_result(self, name: str) -> None:
        """Remove result ``name`` from the manifest; its files go at the next exclusive open."""
        results.delete(self._ledger, name)

    def create_site(
        self,
        name: str,
        *,
        table: str = "tokens",
        n_units: int,
        dtype: str = "float16",
        chunk_rows: int | None = None,
        codec: str = "none",
        provenance: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        covers: Sequence[tuple[int, int]] | None = None,
        unit_shape: Sequence[int] | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> SiteWriter:
        """Declare a site (or resume or grow it) and return its writer.

        ``name`` is ``<model>/<component>``; ``table`` the row table the site is aligned
        to; ``dtype`` float16 (default), float32 or bfloat16; ``chunk_rows`` defaults to
        chunks of about 8 MiB; ``codec`` ``"none"`` (activations barely compress) or
        ``"zstd"``; ``provenance`` says how the values were made; ``covers`` the row
        ranges ``[start, stop)`` to hold values for (None: every row); ``unit_shape``
        the shape of one row, e.g. ``(C, H, W)`` for feature maps (product ``n_units``;
        :meth:`acts` then reads ``(row, channel, y, x)``; blocks are written flat).

        A site declared before with the same settings is resumed: its writer skips
        the chunks already written. If its table has grown since, or ``covers`` asks
        for rows it lacks, it grows: it keeps the chunks that stay the same and its
        writer asks for the new rows only (:meth:`SiteWriter.pending_ranges`). Other
        settings under the same name are refused, naming what differs, unless
        ``overwrite`` (which replaces the site). ``shard`` ``(i, n)``: this writer fills
        shard *i* of *n* (what its record of chunks done is named by, in object storage).

        Examples
        --------
        >>> writer = store.create_site("demo/first", n_units=2, chunk_rows=64, covers=[(0, 100)])
        >>> writer.pending_ranges()
        [(0, 100)]
        >>> writer.write(0, np.ones((100, 2), np.float32)); writer.commit()
        >>> store.site("demo/first").n_covered
        100
        >>> store.create_site("demo/first", n_units=2).pending_ranges()  # chunk 0 is kept
        [(64, 698)]
        """
        return sites.declare(
            self._ledger, name, table=table, n_units=n_units, dtype=dtype,
            chunk_rows=chunk_rows, codec=codec, provenance=provenance, overwrite=overwrite,
            covers=covers, unit_shape=unit_shape, shard=shard,
        )  # fmt: skip

    def reopen_chunks(self, site: str, damaged: list[int]) -> None:
        """Mark chunks of a complete site as not written (after ``actstore verify``), so
        rerunning its extraction with the same settings rewrites just those."""
        sites.reopen(self._ledger, site, damaged)

    def manifest_records(self) -> Manifest:
        """A copy of the committed manifest records (for tools such as ``verify``)."""
        return self._ledger.manifest.copy()

    def delete_site(self, name: str) -> None:
        """Remove a site from the manifest (committed), then its arrays and progress."""
        sites.delete(self._ledger, name)
