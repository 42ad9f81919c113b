"""What every extractor is: the rows it reads, the sites it declares, one chunk's work.

An :class:`Extractor` knows its model; the generic driver (:func:`extractors.driver.run`)
knows the store: it declares the chosen sites, hands the extractor the chunks still to
do (of this shard), writes the blocks it returns on a background thread, and commits.
A new family (recurrent gates, CNN layers, static vectors) implements four methods:

- :meth:`Extractor.sites`: every site it can write (name, units, provenance);
- :meth:`Extractor.prepare`: read what it needs from the store, move to the device;
- :meth:`Extractor.batches`: cut a chunk's rows ``lo..hi`` into batches (a hook:
  the default is one batch); the same chunk must always get the same batches, so a
  resumed or sharded run writes the same bytes as an uninterrupted one;
- :meth:`Extractor.compute`: one batch -> a :class:`Block` of rows and per-site values.

Capability flags tell the driver and the contract suite (:mod:`extractors.testing`)
what to expect.

Examples
--------
>>> class Ones(Extractor):
...     name = "ones"
...     def sites(self):
...         return [SiteSpec("ones/unit", n_units=2)]
...     def compute(self, batch):
...         lo, hi = batch
...         return Block(np.arange(lo, hi), [np.ones((hi - lo, 2), np.float32)])
>>> Ones().compute((0, 3)).n_rows
3
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import actstore


@dataclass(frozen=True)
class SiteSpec:
    """A site an extractor can write: its name, width and how its values are made.

    ``provenance`` holds what is particular to this site (``{"hidden_state": 3}``); the
    driver adds the fields common to the run (extractor, versions, corpus hash, dtype,
    compute).

    Examples
    --------
    >>> SiteSpec("minilm/layer.3", n_units=384, provenance={"hidden_state": 3}).component
    'layer.3'
    """

    name: str
    n_units: int
    provenance: Mapping[str, Any] = field(default_factory=dict)
    unit_shape: tuple[int, ...] | None = None  # (C, H, W) of feature maps kept whole

    @property
    def component(self) -> str:
        """The name without its model prefix."""
        return self.name.split("/", 1)[-1]


@dataclass
class Block:
    """Finished values for some rows: ``values[k][i]`` is row ``rows[i]`` of site ``k``.

    ``values`` holds one ``(len(rows), n_units)`` array per chosen site, in the order
    the driver passed them to :meth:`Extractor.prepare` (NumPy arrays, CPU tensors, or
    a stacked ``(sites, rows, units)`` array). ``ready``, if given, is called on the
    writer thread before the values are read (to wait for an asynchronous device copy).

    Examples
    --------
    >>> Block(np.array([4, 2]), [np.zeros((2, 3))]).n_rows
    2
    """

    rows: np.ndarray
    values: Any
    ready: Callable[[], None] | None = None

    @property
    def n_rows(self) -> int:
        """How many rows the block fills."""
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        """Bytes the values hold (what the write-behind buffer budget counts)."""
        if hasattr(self.values, "nbytes"):
            return int(self.values.nbytes)
        return sum(_nbytes(v) for v in self.values)


def _nbytes(values: Any) -> int:
    if hasattr(values, "nbytes"):
        return int(values.nbytes)
    return int(values.numel() * values.element_size())  # a torch tensor


class Extractor(abc.ABC):
    """Base of every extractor; subclasses set the class flags and the four methods.

    Flags
    -----
    name
        Recorded as ``provenance["extractor"]``.
    table
        The row table the sites are aligned to (``tokens``, ``sentences``, ...).
    row_unit
        What a row is, for progress lines (``words``, ``images``).
    resumable, shardable
        A killed run resumes chunk by chunk; shards fill disjoint chunks.
    deterministic
        The same input gives the same bytes, run after run.
    allows_zero_rows
        An empty table gives complete empty sites instead of an error.
    devices
        Device types it can compute on (``("cpu", "cuda")``); ``()`` for an
        extractor that runs no model (static vectors), which then gets no device.

    Examples
    --------
    >>> Extractor.resumable, Extractor.devices
    (True, ('cpu',))
    """

    name: ClassVar[str] = "extractor"
    table: ClassVar[str] = "tokens"
    row_unit: ClassVar[str] = "rows"
    resumable: ClassVar[bool] = True
    shardable: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True
    allows_zero_rows: ClassVar[bool] = False
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

    @abc.abstractmethod
    def sites(self) -> Sequence[SiteSpec]:
        """Every site this extractor can write, in order."""

    def prepare(  # noqa: B027 (an optional hook, not abstract)
        self, store: actstore.Store, sites: Sequence[SiteSpec], device: Any
    ) -> None:
        """Get ready to compute ``sites`` over ``store``'s :attr:`table` on ``device``.

        Called once, with the store open for writing (an extractor may write a result
        table beside its sites, such as an alignment). ``device`` is a
        ``torch.device``, or None when :attr:`devices` is empty. The default does
        nothing.
        """

    def covered_rows(self, store: actstore.Store) -> list[tuple[int, int]] | None:
        """The row ranges ``[start, stop)`` this extractor has values for, after
        :meth:`prepare` (None, the default: every row of its table). Static vectors
        cover the words they hold; the driver declares the sites over these rows only,
        never writing zero rows for the others (``--where`` takes precedence)."""
        return None

    def batches(self, lo: int, hi: int) -> Iterable[Any]:
        """The batches of chunk rows ``lo..hi-1`` (default: one batch ``(lo, hi)``).

        Must depend on ``lo`` and ``hi`` only, never on what ran before, so every run
        of a chunk computes the same batches.
        """
        return [(lo, hi)]

    @abc.abstractmethod
    def compute(self, batch: Any) -> Block:
        """Values of one batch for the prepared sites, rows inside the batch's chunk."""

    def provenance(self) -> dict[str, Any]:
        """Fields common to every site of this run (model id, weights hash, ...)."""
        return {}

    def stats(self) -> dict[str, int]:
        """Counts for the report, e.g. model tokens (after :meth:`prepare`)."""
        return {}

    def describe(self, stats: Mapping[str, int]) -> tuple[str, str]:
        """Text the summary line puts after the row count and at its end."""
        return "", ""

    def close(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Release what :meth:`prepare` took (worker threads); the driver calls it once
        the chunks are done, or failed. The default does nothing."""
