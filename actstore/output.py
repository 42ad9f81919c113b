"""Printing result tables the way every verb does: aligned text, CSV or JSON.

:class:`Output` and :class:`Keep` are the parameter classes every verb that prints a
table shares (``--format``, ``-o``; ``--save``, ``--plot``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from actstore.errors import ParameterError
from actstore.verbs import option

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

FORMATS = ("table", "csv", "json")
MAX_ROWS = 500


@dataclass(frozen=True)
class Output:
    """Where and how a verb prints its table."""

    format: Literal["table", "csv", "json"] = option("table", help="output format")
    output: Path | None = option(None, short="-o", help="write to this file instead of stdout")
    quiet: bool = option(
        False, short="-q", help="print nothing, no progress bars (with --save or --plot)"
    )


@dataclass(frozen=True)
class Keep:
    """What an analysis keeps besides printing: a results table and a figure."""

    save: str | None = option(None, metavar="NAME", help="also store the full table as result NAME")
    replace: bool = option(False, help="let --save replace an existing result of that name")
    plot: Path | None = option(
        None, metavar="FILE", help="draw the result: FILE.png (300 dpi), .pdf or .svg"
    )


def render(frame: pd.DataFrame | pa.Table, fmt: str) -> str:
    """A result table as text: aligned columns, CSV or JSON records.

    Takes a pandas DataFrame or a ``pyarrow.Table`` (rendered without pandas, which
    keeps ``actstore sql`` quick to start). A missing value is ``NULL`` in a table (as
    DuckDB prints it; pandas' NaN, None, NaT and ``<NA>`` alike), an empty cell in CSV
    and ``null`` in JSON, which escapes no ``/``.

    Examples
    --------
    >>> import pyarrow as pa
    >>> print(render(pa.table({"upos": ["NOUN", None], "n": [3, 12]}), "csv"), end="")
    upos,n
    NOUN,3
    ,12
    >>> print(render(pa.table({"upos": ["NOUN", None], "n": [3, 12]}), "table"), end="")
    upos  n
    NOUN  3
    NULL 12
    >>> import pandas as pd
    >>> print(render(pd.DataFrame({"site": ["m/layer.0", None], "r": [0.5, None]}), "json"))
    [
     {
      "site": "m/layer.0",
      "r": 0.5
     },
     {
      "site": null,
      "r": null
     }
    ]
    """
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        return _render_arrow(frame, fmt)
    import json

    import pandas as pd

    if fmt == "csv":
        return str(frame.to_csv(index=False))
    if fmt == "json":  # through json: pandas writes "/" as "\/" and has no switch for it
        text = frame.to_json(orient="records", double_precision=15, date_format="iso")
        return json.dumps(json.loads(str(text)), indent=1, ensure_ascii=False) + "\n"
    shown = frame.copy()
    for name, column in frame.items():  # na_rep covers float and datetime columns only
        if column.dtype.kind not in "fmM" and column.isna().any():
            shown[name] = column.astype(object).where(column.notna(), "NULL")
    with pd.option_context(
        "display.max_rows", MAX_ROWS, "display.max_columns", 50, "display.width", 200
    ):
        return shown.to_string(index=False, na_rep="NULL") + "\n"


def _render_arrow(table: pa.Table, fmt: str) -> str:
    import csv
    import io
    import json
    import math

    names = table.column_names
    records = table.to_pylist()
    if fmt == "json":  # NaN and infinities are no JSON: null, as pandas writes them
        for record in records:
            for n in names:
                if isinstance(record[n], float) and not math.isfinite(record[n]):
                    record[n] = None
        return json.dumps(records, indent=1, ensure_ascii=False, default=str) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if r[n] is None else r[n] for n in names] for r in records])
        return buffer.getvalue()
    shown = records
    if len(records) > MAX_ROWS:
        half = MAX_ROWS // 2
        shown = [*records[:half], {n: "..." for n in names}, *records[-half:]]
    cells = [[_cell(r[n]) for n in names] for r in shown]
    widths = [max([len(n), *(len(row[i]) for row in cells)]) for i, n in enumerate(names)]
    lines = [" ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))]
    lines += [" ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    if len(records) > MAX_ROWS:
        lines.append(f"[{len(records):,} rows; --format csv -o FILE writes them all]")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def check_output_path(path: Path, parameter: str = "output") -> Path:
    """``path`` if a file may be written there: not inside a store, not a folder, and
    its nearest existing folder (where the missing ones will be made) a writable folder,
    not a file.

    Examples
    --------
    >>> check_output_path(store_path / "manifest.json")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: output ... lies inside the store ...; write it elsewhere
    >>> (tmp / "notes.txt").write_text("x")
    1
    >>> check_output_path(tmp / "notes.txt" / "plots" / "u.svg")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: output .../u.svg: .../notes.txt is a file, not a folder
    """
    resolved = path.resolve()
    if resolved.is_dir():
        raise ParameterError(parameter, f"{path} is a folder; give a file name")
    for folder in resolved.parents:
        if (folder / "manifest.json").is_file() and (folder / "arrays.zarr").is_dir():
            raise ParameterError(
                parameter, f"{path} lies inside the store {folder}; write it elsewhere"
            )
    # the path as given (relative stays relative), up to the first part that exists
    ancestor = next((p for p in path.parents if p.exists()), Path.cwd())
    if not ancestor.is_dir():
        raise ParameterError(parameter, f"{path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK):
        shown = "the current folder" if str(ancestor) == "." else f"the folder {ancestor}"
        raise ParameterError(parameter, f"{path}: {shown} is not writable")
    return path


def emit(text: str, output: Path | None) -> None:
    """Write ``text`` to ``output`` (never inside a store), or to stdout when None or ``-``.

    Examples
    --------
    >>> emit("hello\\n", None)
    hello
    """
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    check_output_path(output)
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:  # name the file: a full disk does not say which
        raise OSError(exc.errno, exc.strerror, str(output)) from None


def show(frame: pd.DataFrame, out: Output) -> None:
    """Print (or write) ``frame`` as ``out`` asks."""
    if out.output is not None or not out.quiet:  # --quiet silences stdout, not -o FILE
        emit(render(frame, out.format), out.output)
