"""One transformer on one device: padded batches in, word vectors of chosen layers out.

On CUDA the forward pass runs under bfloat16 autocast and results are copied to
pinned host memory without blocking; on CPU everything is float32 (float16 matrix
products on CPU are hundreds of times slower).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


class Runner:
    """Runs ``model`` (its base model) on ``device`` and pools pieces to words.

    ``layers`` are hidden-state indices (0 is the embedding output); ``rule`` is
    ``mean``, ``first`` or ``last``; ``out_dtype`` the site dtype (float16 sites are
    converted on the device, bfloat16 ones by the writer from float32).

    Examples
    --------
    >>> import torch
    >>> runner = Runner(torch.nn.Identity(), [0], "mean", torch.device("cpu"), 0, "float32")
    >>> hidden = [torch.arange(8.0).reshape(1, 4, 2)]
    >>> runner.pool(hidden, np.array([0, 0]), np.array([0, 1]), np.array([0, 3])).tolist()
    [[[0.0, 1.0], [4.0, 5.0]]]
    """

    def __init__(
        self,
        model: Any,
        layers: list[int],
        rule: str,
        device: torch.device,
        pad_id: int,
        out_dtype: str,
    ) -> None:
        self.model = getattr(model, "base_model", model).to(device)
        self.layers = layers
        self.rule = rule
        self.device = device
        self.pad_id = pad_id
        self.cuda = device.type == "cuda"
        self.out_dtype = torch.float16 if out_dtype == "float16" else torch.float32

    def forward(self, segment_ids: Sequence[list[int]]) -> list[torch.Tensor]:
        """Hidden states of the chosen layers, each (batch, time, units)."""
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
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda),
        ):
            out = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        return [out.hidden_states[i] for i in self.layers]

    def pool(
        self, hidden: list[torch.Tensor], batch: np.ndarray, first: np.ndarray, last: np.ndarray
    ) -> torch.Tensor:
        """Word vectors (layers, words, units) from piece ranges ``[first, last]`` of batch
        rows ``batch`` (one entry per word, words grouped by batch row).

        A block-diagonal pooling matrix (one block per batch row) keeps this exact for
        first/last, cheap, and deterministic on every device (no atomics).
        """
        n_batch, n_time, n_units = hidden[0].shape
        starts = np.searchsorted(batch, np.arange(n_batch))
        slot = np.arange(len(batch)) - starts[batch]
        most = int(slot.max()) + 1
        t = np.arange(n_time)
        if self.rule == "mean":
            inside = (t >= first[:, None]) & (t <= last[:, None])
            rows = inside / (last - first + 1)[:, None]
        else:
            rows = t == (first if self.rule == "first" else last)[:, None]
        weights = np.zeros((n_batch * most, n_time), np.float32)
        keep = batch * most + slot
        weights[keep] = rows
        w = torch.from_numpy(weights.reshape(n_batch, most, n_time)).to(
            self.device, non_blocking=self.cuda
        )
        index = torch.from_numpy(keep).to(self.device, non_blocking=self.cuda)
        out = torch.empty(
            (len(hidden), len(batch), n_units), dtype=self.out_dtype, device=self.device
        )
        with torch.inference_mode():
            for k, h in enumerate(hidden):
                pooled = torch.matmul(w, h.float()).reshape(n_batch * most, n_units)
                out[k] = pooled.index_select(0, index)  # converted as it is copied
        return out

    def to_host(self, values: torch.Tensor) -> tuple[Callable[[], None] | None, torch.Tensor]:
        """Copy to (pinned) host memory without blocking; call the first item to wait."""
        if not self.cuda:
            return None, values
        host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        host.copy_(values, non_blocking=True)
        event = torch.cuda.Event()  # type: ignore[no-untyped-call]
        event.record()
        return event.synchronize, host
