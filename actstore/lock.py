"""The writer locks of a store.

``fcntl.flock`` on ``STORE/.lock``: the kernel releases it when the holder exits,
even on SIGKILL, so a crashed writer never leaves a stale lock behind. The file
also records who holds it, for the error message the next writer sees. Readers
never take a lock.

A writer holds ``.lock`` exclusively (ingest, deleting sites). Shard writers, several
processes filling disjoint chunks of the same sites, hold it shared. Every manifest
update takes ``.commit.lock`` exclusively for the moment of its read-modify-write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from actstore.errors import StoreLockedError
from actstore.manifest import now_utc

LOCK_FILE = ".lock"
COMMIT_LOCK_FILE = ".commit.lock"


class WriterLock:
    """A non-blocking writer lock on one store directory, exclusive or shared."""

    def __init__(self, root: Path, *, shared: bool = False) -> None:
        self.path = root / LOCK_FILE
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreLockedError` naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(self.path)
            os.close(fd)
            raise StoreLockedError(
                f"{self.path.parent} is being written by another process ({holder}); "
                "wait for it to finish (readers are not blocked)"
            ) from None
        if self.shared:  # the info belongs to the exclusive holder; shards leave it alone
            self._fd = fd
            return
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": now_utc(),
            "command": " ".join(sys.argv)[:500],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (safe to call twice)."""
        if self._fd is None:
            return
        if not self.shared:
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


class ObjectClaim:
    """A writer's claim on a store in object storage, which has no lock to take: any
    number of writers may hold one, and of those that commit the same generation one
    wins (the conditional create of :mod:`actstore.objects`) and the others get
    :class:`~actstore.errors.CommitConflictError`, their changes invisible."""

    def __init__(self, *, shared: bool = False) -> None:
        self.shared = shared
        self._held = False

    def acquire(self) -> None:
        self._held = True

    def release(self) -> None:
        self._held = False

    @property
    def held(self) -> bool:
        return self._held


@contextlib.contextmanager
def commit_lock(root: Path) -> Iterator[None]:
    """Hold ``.commit.lock`` exclusively (blocking) around one manifest update."""
    fd = os.open(root / COMMIT_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _describe_holder(path: Path) -> str:
    try:
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return (
        f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}, "
        f"running {info.get('command')!r}"
    )
