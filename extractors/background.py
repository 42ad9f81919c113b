"""Writing finished blocks on a thread of its own while the model computes the next."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

import actstore
from extractors.base import Block


class BackgroundWriter:
    """A thread that writes finished blocks while the caller computes the next ones.

    :meth:`put` waits while more than ``max_bytes`` of blocks are queued (one block is
    always accepted), so a fast model cannot outrun the disk without bound. An error
    on the writer thread is raised by the next :meth:`put` or by :meth:`close`.

    Examples
    --------
    >>> writer = store.create_site("demo/unit", n_units=2)
    >>> background = BackgroundWriter([writer], max_bytes=1 << 20)
    >>> background.put(Block(np.arange(698), [np.ones((698, 2), np.float32)]))
    >>> background.close()
    >>> writer.complete
    True
    """

    def __init__(self, writers: Sequence[actstore.SiteWriter], max_bytes: int) -> None:
        self.writers = list(writers)
        self.max_bytes = max_bytes
        self.error: BaseException | None = None
        self._queue: deque[Block | None] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="actstore-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                block = self._queue[0]
            if block is None:
                return
            if self.error is None:
                try:
                    self._write(block)
                except BaseException as exc:  # reported to the calling thread
                    self.error = exc
            with self._cond:
                self._queue.popleft()
                self._queued -= block.nbytes
                self._cond.notify_all()

    def _write(self, block: Block) -> None:
        if block.ready is not None:
            block.ready()
        values = block.values
        if hasattr(values, "numpy"):  # one stacked CPU tensor: a view, no copy
            values = values.numpy()
        for writer, site_values in zip(self.writers, values, strict=True):
            writer.write_rows(block.rows, site_values)

    def put(self, block: Block) -> None:
        """Queue ``block`` for writing (waits while the queue is over its budget)."""
        size = block.nbytes
        with self._cond:
            while self._queue and self._queued + size > self.max_bytes and self.error is None:
                self._cond.wait()
            if self.error is not None:
                raise self.error
            self._queue.append(block)
            self._queued += size
            self._cond.notify_all()

    def close(self) -> None:
        """Write what is queued, stop the thread, raise its error if it had one."""
        with self._cond:
            self._queue.append(None)
            self._cond.notify_all()
        self._thread.join()
        if self.error is not None:
            raise self.error
