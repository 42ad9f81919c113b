"""One transformer on one device: padded batches in, the chosen components out, pooled.

On CUDA the forward pass runs under bfloat16 autocast and results are copied to
pinned host memory without blocking; on CPU everything is float32 (float16 matrix
products on CPU are hundreds of times slower).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from extractors.hooks import Tap, capture


def pooling_weights(
    batch: np.ndarray, first: np.ndarray, last: np.ndarray, n_batch: int, n_time: int, rule: str
) -> tuple[np.ndarray, np.ndarray]:
    """A block-diagonal pooling matrix, one block per batch row: ``(n_batch, most,
    n_time)`` weights whose product with ``(n_batch, n_time, units)`` states gives item
    *j* (pooled from positions ``first[j]..last[j]`` of row ``batch[j]`` by ``rule``:
    mean, first or last) at flat index ``keep[j]``. Exact for first/last, and the same
    order of summation on every device (no scatter-add atomics).

    Examples
    --------
    >>> batch, first, last = np.array([1, 0]), np.array([0, 1]), np.array([1, 2])
    >>> weights, keep = pooling_weights(batch, first, last, 2, 3, "mean")
    >>> weights.shape, keep.tolist(), weights[1, 0].tolist()
    ((2, 1, 3), [1, 0], [0.5, 0.5, 0.0])
    """
    order = np.argsort(batch, kind="stable")
    starts = np.searchsorted(batch[order], np.arange(n_batch))
    slot = np.empty(len(batch), np.int64)
    slot[order] = np.arange(len(batch)) - starts[batch[order]]
    most = int(slot.max()) + 1 if len(batch) else 1
    t = np.arange(n_time)
    if rule == "mean":
        inside = (t >= first[:, None]) & (t <= last[:, None])
        rows = inside / (last - first + 1)[:, None]
    else:
        rows = t == (first if rule == "first" else last)[:, None]
    weights = np.zeros((n_batch * most, n_time), np.float32)
    keep = batch * most + slot
    weights[keep] = rows
    return weights.reshape(n_batch, most, n_time), keep


class Runner:
    """Runs ``model`` (its base model) on ``device``, reads ``taps``, pools pieces.

    ``taps`` say where each component is read (:class:`~extractors.hooks.Tap`: a hidden
    state, 0 being the embedding output, or a hooked module; an int is that hidden
    state); ``rule`` is ``mean``,
    ``first`` or ``last``; ``out_dtype`` the site dtype (float16 sites are converted on
    the device, bfloat16 ones by the writer from float32).

    Examples
    --------
    >>> runner = Runner(torch.nn.Identity(), [Tap(hidden_state=0)], "mean",
    ...                 torch.device("cpu"), 0, "float32")
    >>> hidden = [torch.arange(8.0).reshape(1, 4, 2)]
    >>> [v.tolist() for v in runner.pool(hidden, np.array([0, 0]), np.array([0, 1]),
    ...                                  np.array([0, 3]))]
    [[[0.0, 1.0], [4.0, 5.0]]]
    """

    def __init__(
        self,
        model: Any,
        taps: Sequence[Tap | int],
        rule: str,
        device: torch.device,
        pad_id: int,
        out_dtype: str,
    ) -> None:
        self.model = getattr(model, "base_model", model).to(device)
        self.taps = [Tap(hidden_state=t) if isinstance(t, int) else t for t in taps]
        self.rule = rule
        self.device = device
        self.pad_id = pad_id
        self.cuda = device.type == "cuda"
        self.out_dtype = torch.float16 if out_dtype == "float16" else torch.float32

    def forward(self, segment_ids: Sequence[list[int]]) -> list[torch.Tensor]:
        """The tapped components, each (batch, time, units), in the order of ``taps``."""
        longest = max(len(ids) for ids in segment_ids)
        ids = np.full((len(segment_ids), longest), self.pad_id, dtype=np.int64)
        for b, seg in enumerate(segment_ids):
            ids[b, : len(seg)] = seg
        lengths = np.array([len(x) for x in segment_ids])
        input_ids = torch.from_numpy(ids)
        mask = torch.from_numpy((np.arange(longest) < lengths[:, None]).astype(np.int64))
        if self.cuda:
            input_ids = input_ids.pin_memory().to(self.device, non_blocking=True)
            mask = mask.pin_memory().to(self.device, non_blocking=True)
        states = any(tap.hidden_state is not None for tap in self.taps)
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda),
            capture(self.model, self.taps) as seen,
        ):
            out = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=states)
        return [
            seen[tap] if tap.hidden_state is None else out.hidden_states[tap.hidden_state]
            for tap in self.taps
        ]

    def pool(
        self,
        hidden: Sequence[torch.Tensor],
        batch: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        *,
        rule: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> list[torch.Tensor]:
        """Per tensor of ``hidden``: (items, units), item *j* pooled from positions
        ``[first[j], last[j]]`` of batch row ``batch[j]`` by ``rule`` (default the
        runner's), as ``dtype`` (default the site dtype). Items may come in any order.

        A block-diagonal pooling matrix (one block per batch row) keeps this exact for
        first/last, cheap, and deterministic on every device (no atomics).
        """
        n_batch, n_time = hidden[0].shape[:2]
        weights, keep = pooling_weights(batch, first, last, n_batch, n_time, rule or self.rule)
        w = torch.from_numpy(weights).to(self.device, non_blocking=self.cuda)
        index = torch.from_numpy(keep).to(self.device, non_blocking=self.cuda)
        most = weights.shape[1]
        out = []
        with torch.inference_mode():
            for h in hidden:
                pooled = torch.matmul(w, h.float()).reshape(n_batch * most, h.shape[-1])
                out.append(pooled.index_select(0, index).to(dtype or self.out_dtype))
        return out

    def to_host(
        self, values: Sequence[torch.Tensor]
    ) -> tuple[Callable[[], None] | None, list[torch.Tensor]]:
        """:func:`to_host` on this runner's device."""
        return to_host(values, self.cuda)


def to_host(
    values: Sequence[torch.Tensor], cuda: bool
) -> tuple[Callable[[], None] | None, list[torch.Tensor]]:
    """Copy CUDA tensors to (pinned) host memory without blocking; call the first item
    to wait (None on CPU, where the values are returned as they are).

    The copies share one pinned buffer (allocating pinned memory is slow).
    """
    if not cuda:
        return None, list(values)
    flat = torch.empty(sum(v.numel() for v in values), dtype=values[0].dtype, pin_memory=True)
    host, at = [], 0
    for v in values:
        view = flat[at : at + v.numel()].view(v.shape)
        view.copy_(v, non_blocking=True)
        host.append(view)
        at += v.numel()
    event = torch.cuda.Event()  # type: ignore[no-untyped-call]
    event.record()
    return event.synchronize, host
