"""A progress line for long extractions: rate and ETA on a terminal, silent otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts work done and redraws one line on stderr at most a few times a second.

    Examples
    --------
    >>> import io
    >>> progress = Progress(total=100, unit="words", stream=io.StringIO())
    >>> progress.advance(40)
    >>> progress.line(progress.started + 2.0)
    '40/100 words (40%) 20 words/s, ETA 00:03'
    """

    def __init__(self, total: int, unit: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.unit = unit
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.started = time.perf_counter()
        self._drawn = 0.0

    def advance(self, n: int) -> None:
        """Count ``n`` more done; redraw if a terminal and it is time."""
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._drawn > 0.2 or self.done >= self.total):
            self._drawn = now
            self.stream.write("\r" + self.line(now) + "\033[K")
            self.stream.flush()

    def line(self, now: float) -> str:
        """The progress line as of ``now`` (a ``time.perf_counter()`` value)."""
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{self.done:,}/{self.total:,} {self.unit} ({pct:.0f}%) "
            f"{rate:,.0f} {self.unit}/s, ETA {_clock(eta)}"
        )

    def close(self) -> None:
        """End the line (on a terminal)."""
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
