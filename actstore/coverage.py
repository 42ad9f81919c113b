"""Which rows of its table a site holds values for: row ranges, kept small and sorted.

A site covers every row of its array unless it was extracted for some sentences only
(``actstore extract --where``); then its record keeps ``covers``, sorted disjoint
``[start, stop)`` ranges. A site whose table grew after it was written covers rows
``0..n_rows-1`` of its array and none of the rows added since.

Examples
--------
>>> merge([(5, 9), (0, 2), (2, 3), (8, 12)])
[(0, 3), (5, 12)]
>>> runs(np.array([0, 1, 2, 7, 8]))
[(0, 3), (7, 9)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from actstore.errors import SiteError

Ranges = list[tuple[int, int]]


def merge(ranges: Iterable[Sequence[int]]) -> Ranges:
    """Sorted, disjoint, non-empty ranges covering the same rows as ``ranges``."""
    out: Ranges = []
    for start, stop in sorted((int(a), int(b)) for a, b in ranges):
        if stop <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def runs(rows: np.ndarray) -> Ranges:
    """The runs of consecutive ids in sorted unique ``rows``, as ranges."""
    if not rows.size:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = rows[np.concatenate(([0], breaks))]
    stops = rows[np.concatenate((breaks - 1, [rows.size - 1]))] + 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def clip(ranges: Sequence[tuple[int, int]], lo: int, hi: int) -> Ranges:
    """The parts of ``ranges`` inside ``[lo, hi)``.

    Examples
    --------
    >>> clip([(0, 3), (5, 12)], 2, 8)
    [(2, 3), (5, 8)]
    """
    return [(max(a, lo), min(b, hi)) for a, b in ranges if a < hi and b > lo]


def count(ranges: Sequence[tuple[int, int]]) -> int:
    """Rows the ranges hold."""
    return sum(b - a for a, b in ranges)


def outside(rows: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Which of ``rows`` (any order) lie in none of the sorted ``ranges`` (a boolean mask).

    Examples
    --------
    >>> outside(np.array([0, 3, 6, 11, 12]), [(0, 3), (5, 12)]).tolist()
    [False, True, False, False, True]
    """
    if not ranges:
        return np.ones(rows.shape, bool)
    starts = np.array([a for a, _ in ranges], np.int64)
    stops = np.array([b for _, b in ranges], np.int64)
    k = np.searchsorted(starts, rows, side="right") - 1
    return np.asarray((k < 0) | (rows >= stops[np.maximum(k, 0)]))


def describe(ranges: Sequence[tuple[int, int]], limit: int = 3) -> str:
    """``rows 0..9, 20..29`` (the first ``limit`` ranges, then how many more).

    Examples
    --------
    >>> describe([(0, 10), (20, 30)]), describe([(i, i + 1) for i in range(0, 10, 2)], 2)
    ('rows 0..9, 20..29', 'rows 0..0, 2..2 and 3 more ranges')
    """
    if not ranges:
        return "no rows"
    shown = ", ".join(f"{a}..{b - 1}" for a, b in ranges[:limit])
    more = len(ranges) - limit
    return f"rows {shown}" + (f" and {more} more ranges" if more > 0 else "")


def require(
    rows: np.ndarray, name: str, table: str, covers: Sequence[tuple[int, int]], table_rows: int
) -> None:
    """Raise :class:`SiteError` unless site ``name`` holds every one of ``rows``."""
    missing = outside(rows, covers)
    if missing.any():
        raise SiteError(
            f"{uncovered(name, table, covers, table_rows)} ({int(missing.sum()):,} of the "
            f"{rows.size:,} rows asked for lie outside it, from row {int(rows[missing][0]):,})"
        )


def uncovered(name: str, table: str, covers: Sequence[tuple[int, int]], table_rows: int) -> str:
    """``site S covers rows 0..N-1 of table T (M rows); run actstore extract to extend it``."""
    return (
        f"site {name} covers {describe(covers)} of table {table} "
        f"({table_rows:,} rows); run actstore extract to extend it"
    )
