"""Row tables on disk: Parquet parts written atomically, appended, read by column.

A corpus table (``tokens``, ``sentences``) is a list of parts in row order; each new
part is written to ``*.partial``, fsynced by rename, and only then named in the
manifest. Reading whole columns goes straight to the parts (no query engine).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from actstore.commit import TABLES_DIR
from actstore.errors import FormatError, SchemaError
from actstore.manifest import Manifest, Part, ResultRecord, TableRecord
from actstore.names import check_table_name
from actstore.storage import Storage


def as_arrow(table: Any) -> pa.Table:
    """A ``pyarrow.Table`` from Arrow or pandas input (the index is dropped).

    Examples
    --------
    >>> import pandas as pd
    >>> as_arrow(pd.DataFrame({"x": [1, 2]})).num_rows
    2
    """
    if isinstance(table, pa.Table):
        return table
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        return pa.Table.from_pandas(table, preserve_index=False)
    raise SchemaError(f"expected a pyarrow.Table or a pandas.DataFrame, got {type(table).__name__}")


def write_parquet(storage: Storage, rel: str, table: pa.Table) -> None:
    """Write ``table`` as the Parquet file ``rel`` of a store, whole (see
    :meth:`~actstore.storage.Storage.put_file`)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=128 * 1024)
    storage.put_file(rel, sink.getvalue().to_pybytes())


def append_part(storage: Storage, manifest: Manifest, name: str, table: pa.Table) -> None:
    """Write ``table`` as the next part of corpus table ``name`` and name it in ``manifest``
    (published when the manifest is committed)."""
    check_table_name(name)
    for other in [*manifest.tables, *manifest.results]:
        if other.lower() == name.lower() and (other != name or other in manifest.results):
            raise SchemaError(f"table name {name!r} clashes with {other!r} (SQL names ignore case)")
    record = manifest.tables.setdefault(name, TableRecord())
    # without a lock another writer may be writing the same part: a random tag keeps
    # the loser of the commit from overwriting (and then deleting) the winner's file
    tag = "" if storage.exclusive else f"-{uuid.uuid4().hex[:16]}"
    rel = f"{TABLES_DIR}/{name}/part-{len(record.parts):05d}{tag}.parquet"
    write_parquet(storage, rel, table)
    record.parts.append(Part(rel, table.num_rows, record.n_rows))
    record.n_rows += table.num_rows


def schema(storage: Storage, record: TableRecord | ResultRecord, table: str) -> pa.Schema:
    """The columns of a table and their types (the union of its parts', in order), from
    the Parquet footers alone."""
    fields: dict[str, pa.Field] = {}
    for part in record.parts:
        for field in _part(storage, part.path, table).schema_arrow:
            fields.setdefault(field.name, field)
    return pa.schema(list(fields.values()))


def _part(storage: Storage, rel: str, table: str, **kwargs: Any) -> pq.ParquetFile:
    """A table's Parquet part, or one line saying it cannot be read and what to do."""
    try:
        return pq.ParquetFile(storage.parquet(rel), **kwargs)
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(
            f"table {table}: its part {storage.where(rel)} cannot be read "
            f"({str(exc).splitlines()[0]}); "
            "if the store changed since it was opened, open it again, else run `actstore verify`"
        ) from None


def read_columns(
    storage: Storage, record: TableRecord | ResultRecord, table: str, names: Sequence[str]
) -> pa.Table:
    """Whole columns of a table in row order, read straight from its Parquet parts.

    Strings come dictionary-encoded; a column missing from some parts (a UD feature
    absent in one corpus) is NULL there.
    """
    files = [_part(storage, part.path, table) for part in record.parts]
    kinds = {f.name: f.type for file in files for f in file.schema_arrow}
    unknown = [n for n in names if n not in kinds]
    if unknown:
        raise SchemaError(f"no column {unknown[0]!r} in {table}; columns: {', '.join(kinds)}")
    strings = [n for n in names if pa.types.is_string(kinds[n])]
    pieces = []
    for part, file in zip(record.parts, files, strict=True):
        have = [n for n in names if n in file.schema_arrow.names]
        # ParquetFile.read, not pq.read_table: that goes through pyarrow.dataset (+0.2 s)
        encoded = [n for n in strings if n in have]
        piece = _part(storage, part.path, table, read_dictionary=encoded).read(columns=have)
        for n in names:
            if n not in have:
                kind = pa.dictionary(pa.int32(), pa.string()) if n in strings else kinds[n]
                piece = piece.append_column(n, pa.nulls(piece.num_rows, kind))
        pieces.append(piece.select(list(names)))
    if not pieces:
        return pa.table({n: pa.array([], kinds.get(n, pa.null())) for n in names})
    return pa.concat_tables(pieces, promote_options="permissive")
