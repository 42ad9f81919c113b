"""Progress bars for long work: extraction, analyses, training (tqdm: a line on a
terminal, a widget in Jupyter).

One switch for the whole process, the environment variable ``ACTSTORE_PROGRESS``:
``1`` shows bars, ``0`` hides them, unset (or ``auto``) shows them only where someone
watches: stderr is a terminal, or the code runs in a Jupyter kernel. :func:`configure`
sets it (``--quiet`` on the command line sets it off) and :func:`quiet` sets it for a
while; being the environment, it holds for the processes started meanwhile too. A bar
given ``enabled=True`` or ``False`` ignores the switch.

Bars only watch: nothing they do reaches the numbers, which are the same bit for bit
with bars on or off.

Examples
--------
>>> with quiet():
...     active()
False
>>> with bar(3, unit="blocks", desc="demo", enabled=False) as shown:
...     _ = shown.update(3)
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Protocol

ENV = "ACTSTORE_PROGRESS"
ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")
MIN_INTERVAL = 0.2  # seconds between redraws


class Bar(Protocol):
    """What a bar offers (a ``tqdm`` instance)."""

    def update(self, n: float = 1) -> bool | None: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Bar: ...

    def __exit__(self, *exc: object) -> None: ...


def interactive() -> bool:
    """Whether someone watches: stderr is a terminal, or this is a Jupyter kernel (whose
    stderr is no terminal, but whose cells show bars)."""
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def active(enabled: bool | None = None) -> bool:
    """Whether a bar would show: ``enabled`` if given, else what ``ACTSTORE_PROGRESS``
    says, else (unset or ``auto``) :func:`interactive`.

    Examples
    --------
    >>> active(True), active(False)
    (True, False)
    """
    if enabled is not None:
        return enabled
    setting = os.environ.get(ENV, "").strip().lower()
    if setting in ON:
        return True
    if setting in OFF:
        return False
    return interactive()


def configure(enabled: bool | None) -> None:
    """Show bars (True), hide them (False) or show them where someone watches (None),
    from now on, in this process and the processes it starts.

    Examples
    --------
    >>> configure(False)
    >>> active()
    False
    >>> configure(None)
    """
    if enabled is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = "1" if enabled else "0"


@contextlib.contextmanager
def quiet(hush: bool = True) -> Iterator[None]:
    """No bars inside (``hush`` False: no change); the setting before comes back after.

    Examples
    --------
    >>> with quiet():
    ...     active()
    False
    """
    if not hush:
        yield
        return
    before = os.environ.get(ENV)
    os.environ[ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def bar(
    total: float | None = None,
    *,
    unit: str = "it",
    desc: str | None = None,
    enabled: bool | None = None,
    leave: bool = False,
    unit_scale: bool = False,
) -> Bar:
    """A tqdm bar of ``total`` ``unit``, shown if :func:`active` says so (``tqdm.auto``:
    a widget in Jupyter with ipywidgets, a line on stderr elsewhere); a bar that is not
    shown costs nothing and writes nothing. ``leave``: keep the finished bar on screen.

    Examples
    --------
    >>> with bar(2, unit="blocks", desc="sums", enabled=False) as shown:
    ...     _ = shown.update(1)
    ...     _ = shown.update(1)
    """
    if not active(enabled):
        from tqdm.std import tqdm as silent  # type: ignore[import-untyped]

        off: Bar = silent(total=total, disable=True)
        return off
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    shown: Bar = tqdm(
        total=total,
        unit=unit,
        desc=desc,
        leave=leave,
        unit_scale=unit_scale,
        mininterval=MIN_INTERVAL,
        miniters=1,  # every update may redraw (each batch, block, step), at most so often
        dynamic_ncols=True,
    )
    return shown
