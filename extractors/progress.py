"""The extraction's progress bar (see :mod:`actstore.progress` for the switch).

Examples
--------
>>> progress = Progress(total=10, unit="words", enabled=False)
>>> progress.advance(10)
>>> progress.done
10
"""

from __future__ import annotations

from actstore.progress import bar


class Progress:
    """Rows of an extraction done, on a bar (see :func:`bar`) that stays when finished;
    the driver advances it by each model batch's rows, so one chunk shows movement too.

    Examples
    --------
    >>> progress = Progress(total=10, unit="words", enabled=False)
    >>> progress.advance(4)
    >>> progress.advance(6)
    >>> progress.done
    10
    >>> progress.close()
    """

    def __init__(
        self,
        total: int,
        unit: str,
        *,
        desc: str | None = "extract",
        enabled: bool | None = None,
    ) -> None:
        self.total = total
        self.unit = unit
        self.done = 0
        self.bar = bar(total, unit=unit, desc=desc, enabled=enabled, leave=True, unit_scale=True)

    def advance(self, n: int) -> None:
        """Count ``n`` more rows done (a batch's)."""
        self.done += n
        self.bar.update(n)

    def close(self) -> None:
        """Finish the bar (kept on screen where it was shown)."""
        self.bar.close()
