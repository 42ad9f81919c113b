"""The progress line: drawn on a terminal, silent in logs and pipes."""

from __future__ import annotations

import io

from extractors.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_draws_rate_and_eta_on_a_terminal() -> None:
    stream = Terminal()
    progress = Progress(total=1000, unit="words", stream=stream)
    progress.started -= 10.0  # ten seconds ago
    progress.advance(250)
    progress.close()
    line = stream.getvalue()
    # 250 words in ~10 s: ~25 words/s, 750 left: ~30 s to go
    assert line.startswith("\r250/1,000 words (25%) 25 words/s, ETA 00:30")
    assert line.endswith("\n")


def test_quiet_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(total=10, unit="words", stream=stream)
    progress.advance(10)
    progress.close()
    assert stream.getvalue() == ""
