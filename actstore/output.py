"""Printing result tables the way every verb does: aligned text, CSV or JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

FORMATS = ("table", "csv", "json")


def render(frame: pd.DataFrame, fmt: str) -> str:
    """A result table as text: aligned columns, CSV or JSON records."""
    if fmt == "csv":
        return str(frame.to_csv(index=False))
    if fmt == "json":
        return str(frame.to_json(orient="records", indent=1, force_ascii=False)) + "\n"
    with pd.option_context(
        "display.max_rows", 500, "display.max_columns", 50, "display.width", 200
    ):
        return frame.to_string(index=False) + "\n"


def emit(text: str, output: Path | None) -> None:
    """Write ``text`` to ``output``, or to stdout when None."""
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
