"""Analysis results: tables (Parquet, queryable with SQL) and matrices (Zarr, with labels).

A table result is one Parquet file under ``results/<name>/`` and becomes an SQL view
named ``<name>``. A matrix result (an RDM, a Gram matrix) is a 2-D Zarr array under
``results/<name>/`` beside two Parquet tables of labels, one row per matrix row and
one per matrix column (a ``label`` column and any others, such as counts). Both
carry a provenance record (what analysis, parameters, sites ... made them).

Replacing a result writes new files under fresh names and commits the manifest; the
old files stay until the next exclusive writer opens the store, so a reader holding
the old manifest finishes its read.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actstore.commit import RESULTS_DIR, Ledger, named_files
from actstore.errors import CommitUnknownError, ParameterError, SchemaError
from actstore.manifest import Manifest, Part, ResultKind, ResultRecord, now_utc
from actstore.names import check_table_name
from actstore.storage import Storage
from actstore.tables import as_arrow, write_parquet

if TYPE_CHECKING:
    import xarray as xr

MATRIX_DTYPES = ("float32", "float64")
_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class ResultInfo:
    """A committed result: its name, kind, shape and provenance (a copy)."""

    name: str
    kind: ResultKind
    shape: tuple[int, ...]
    provenance: dict[str, Any]
    created: str


@dataclass(frozen=True)
class MatrixResult:
    """A matrix result: lazy values with dims ``(row, column)`` labelled by ``label``,
    the full row and column label tables, and provenance."""

    name: str
    values: xr.DataArray
    rows: pa.Table
    columns: pa.Table
    provenance: dict[str, Any]


def info_of(name: str, record: ResultRecord) -> ResultInfo:
    shape = tuple(record.shape) if record.kind == "matrix" else (record.n_rows,)
    return ResultInfo(name, record.kind, shape, copy.deepcopy(record.provenance), record.created)


def _check_name(manifest: Manifest, name: str, replace: bool) -> None:
    """Check the name of result ``name`` is free in ``manifest`` (or may be replaced).

    Names are compared ignoring case, as SQL compares them: ``Tokens`` would clash with
    the view ``tokens``.
    """
    check_table_name(name)
    for other in [*manifest.tables, *manifest.results]:
        if other.lower() == name.lower() and other != name:
            raise SchemaError(
                f"result name {name!r} clashes with {other!r} (SQL names ignore case); "
                "choose another name"
            )
    if name in manifest.tables:
        raise SchemaError(f"{name!r} is a corpus table; choose another name for a result")
    if name in manifest.results and not replace:
        # "replace is needed: ..." from Python, "--replace is needed: ..." on the command line
        raise ParameterError(
            "replace", f"is needed: a result named {name!r} exists already (or choose another name)"
        )


def _provenance(provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    record = dict(provenance or {})
    try:
        import json

        json.dumps(record)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"result provenance must be JSON-ready: {exc}") from None
    return record


def write_table(
    ledger: Ledger,
    name: str,
    table: Any,
    provenance: Mapping[str, Any] | None,
    replace: bool = False,
) -> None:
    """Write table result ``name`` (``replace``: over an existing one) and commit it."""
    ledger.require_writable()
    data = as_arrow(table)
    _check_name(ledger.manifest, name, replace)
    rel = f"{RESULTS_DIR}/{name}/part-{uuid.uuid4().hex[:16]}.parquet"
    write_parquet(ledger.storage, rel, data)
    record = ResultRecord(
        kind="table",
        n_rows=data.num_rows,
        parts=[Part(rel, data.num_rows, 0)],
        provenance=_provenance(provenance),
        created=now_utc(),
    )
    _publish(ledger, name, record, replace)


def _publish(ledger: Ledger, name: str, record: ResultRecord, replace: bool) -> None:
    """Name ``record`` in the manifest as result ``name`` and commit it. The name is
    checked again in the manifest committed to (a shard writer's may be newer); if the
    commit fails outside a transaction (which cleans up itself), its files are deleted:
    nothing names them."""

    def add(manifest: Manifest) -> None:
        _check_name(manifest, name, replace)
        manifest.results[name] = record

    try:
        ledger.change(add)
    except BaseException as exc:
        if not ledger.in_transaction and not isinstance(exc, CommitUnknownError):
            named = named_files(ledger.manifest)  # never what the store names
            files = [rel for rel in record.files() if rel not in named]
            ledger.storage.delete_files([rel for rel in files if rel != record.path])
            if record.path in files:  # a matrix is a folder
                ledger.storage.delete_tree(record.path)
        raise


def label_table(labels: Any, n: int, axis: str) -> pa.Table:
    """Labels of one matrix axis: a sequence of names, or a table with a ``label`` column."""
    if isinstance(labels, (pa.Table,)) or hasattr(labels, "columns"):
        table = as_arrow(labels)
        if "label" not in table.column_names:
            raise SchemaError(f"the {axis} labels table needs a 'label' column")
    else:
        table = pa.table({"label": pa.array([str(x) for x in labels], pa.string())})
    if table.num_rows != n:
        raise SchemaError(f"{table.num_rows} {axis} labels for a matrix with {n} {axis}s")
    return table


class MatrixWriter:
    """Writes a matrix result block by block (for matrices larger than memory).

    Obtain one from :meth:`Store.create_matrix`; call :meth:`write` for blocks in any
    order, then :meth:`commit` to publish the matrix.
    """

    def __init__(
        self,
        ledger: Ledger,
        name: str,
        shape: tuple[int, int],
        rows: Any,
        columns: Any,
        dtype: str = "float32",
        provenance: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> None:
        import zarr

        ledger.require_writable()
        if dtype not in MATRIX_DTYPES:
            raise SchemaError(f"matrix dtype must be one of {list(MATRIX_DTYPES)}, got {dtype!r}")
        if len(shape) != 2 or min(shape) < 1:
            raise SchemaError(f"a matrix needs a 2-D shape of positive sizes, got {shape}")
        _check_name(ledger.manifest, name, replace)
        self.ledger, self.name, self.shape = ledger, name, (int(shape[0]), int(shape[1]))
        self.replace = replace
        self.closed = False
        tag = uuid.uuid4().hex[:16]
        self.labels = {
            "row": f"{RESULTS_DIR}/{name}/rows-{tag}.parquet",
            "column": f"{RESULTS_DIR}/{name}/columns-{tag}.parquet",
        }
        for (axis, rel), labels, n in zip(self.labels.items(), (rows, columns), shape, strict=True):
            write_parquet(ledger.storage, rel, label_table(labels, n, axis))
        self.path = f"{RESULTS_DIR}/{name}/matrix-{tag}.zarr"
        side = max(1, int(np.sqrt(_BLOCK_BYTES / np.dtype(dtype).itemsize)))
        self.array: Any = zarr.create_array(
            ledger.storage.writable_zarr(self.path),
            shape=self.shape,
            chunks=(min(side, self.shape[0]), min(side, self.shape[1])),
            dtype=dtype,
            compressors=None,
            fill_value=np.nan,
            dimension_names=("row", "column"),
        )
        self.provenance = _provenance(provenance)

    def write(self, row: int, column: int, block: np.ndarray) -> None:
        """Write ``block`` with its top-left corner at (``row``, ``column``)."""
        self._check_open()
        values = np.asarray(block)
        r, c = values.shape
        if row < 0 or column < 0 or row + r > self.shape[0] or column + c > self.shape[1]:
            raise SchemaError(
                f"matrix {self.name}: a {r}x{c} block at ({row}, {column}) does not fit "
                f"shape {self.shape}"
            )
        self.array[row : row + r, column : column + c] = values

    def _check_open(self) -> None:
        if self.closed:
            raise SchemaError(
                f"matrix {self.name}: this writer has committed (or failed to, and its files "
                "are gone); write the matrix with a new one"
            )

    def commit(self) -> None:
        """Publish the matrix in the manifest (once: the writer is closed after)."""
        self._check_open()
        self.closed = True
        record = ResultRecord(
            kind="matrix",
            shape=list(self.shape),
            path=self.path,
            labels=dict(self.labels),
            provenance=self.provenance,
            created=now_utc(),
        )
        _publish(self.ledger, self.name, record, self.replace)


def write_matrix(
    ledger: Ledger,
    name: str,
    values: Any,
    rows: Sequence[Any] | Any,
    columns: Sequence[Any] | Any,
    provenance: Mapping[str, Any] | None,
    replace: bool = False,
) -> None:
    """Write a whole matrix (numpy or any array with ``shape`` and slicing) and commit it."""
    shape = tuple(int(s) for s in values.shape)
    if len(shape) != 2:
        raise SchemaError(f"a matrix result must be 2-D, got shape {shape}")
    dtype = "float64" if np.dtype(getattr(values, "dtype", "float32")) == np.float64 else "float32"
    writer = MatrixWriter(
        ledger, name, (shape[0], shape[1]), rows, columns, dtype, provenance, replace
    )
    step = max(1, _BLOCK_BYTES // (8 * shape[1]))
    for lo in range(0, shape[0], step):
        writer.write(lo, 0, np.asarray(values[lo : lo + step], dtype=dtype))
    writer.commit()


def read_matrix(storage: Storage, name: str, record: ResultRecord) -> MatrixResult:
    """The matrix result ``name``: lazy values (dask, chunk by chunk) and its labels."""
    import dask.array as da
    import xarray as xr
    import zarr

    if record.kind != "matrix" or record.path is None:
        raise SchemaError(f"result {name!r} is a table, not a matrix; read it with SQL")
    array = zarr.open_array(storage.zarr(record.path), mode="r")
    rows = pq.read_table(storage.parquet(record.labels["row"]))
    columns = pq.read_table(storage.parquet(record.labels["column"]))
    values = xr.DataArray(
        da.from_zarr(array),  # type: ignore[no-untyped-call]
        dims=("row", "column"),
        coords={
            "row": rows.column("label").to_numpy(zero_copy_only=False),
            "column": columns.column("label").to_numpy(zero_copy_only=False),
        },
        name=name,
    )
    return MatrixResult(name, values, rows, columns, copy.deepcopy(record.provenance))


def delete(ledger: Ledger, name: str) -> None:
    """Remove result ``name`` from the manifest; its files go at the next exclusive open."""
    ledger.require_writable()
    if name not in ledger.manifest.results:
        listed = ", ".join(sorted(ledger.manifest.results)) or "none"
        raise ParameterError("name", f"{name!r} is not a result; results: {listed}")
    with ledger.update() as manifest:
        del manifest.results[name]
