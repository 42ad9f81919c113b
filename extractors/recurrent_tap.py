"""Unrolling a model's recurrent modules while the model runs.

:func:`tap` puts a forward pre-hook on each recurrent module: it reads the input the
module actually gets (a padded tensor, batch first or not, or a ``PackedSequence``;
and ``hx`` if the model passes one) and unrolls the module over it
(:func:`extractors.unroll.unroll`). A module that runs torch's own fused forward is
then handed the unrolled result to return in torch's format instead of computing it
again; any other module (such as IMAGINET's ``SteepGRU``) runs its own forward after
the hook, so the model goes on exactly as it would.

Examples
--------
>>> _ = torch.manual_seed(0)
>>> model = nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 3, batch_first=True))
>>> recurrents = find_recurrent(model)
>>> ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
>>> with tap(recurrents, torch.tensor([3, 2])) as seen:
...     output, (h_n, c_n) = model(ids)
>>> tuple(seen["1"].states[0, 0]["f"].shape)          # (time, batch, units)
(3, 2, 3)
>>> fused, _ = model[1](model[0](ids))
>>> bool((output - fused).abs().max() < 1e-6)
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from actstore.errors import ModelError
from extractors.unroll import Recurrent, Unrolled, find_recurrent, unroll

__all__ = ["StopModel", "find_recurrent", "module_output", "read_input", "tap"]

Packing = PackedSequence | None


def read_input(
    recurrent: Recurrent, args: tuple[Any, ...], kwargs: dict[str, Any], lengths: Tensor | None
) -> tuple[Tensor, Tensor, Packing, Any, bool]:
    """What a recurrent module was called with: its input time-major ``(time, batch,
    input)``, each sequence's length, the ``PackedSequence`` it came as (or None),
    ``hx`` (or None), and whether the input was unbatched (2-D).

    The lengths of a packed input are its own; a padded tensor takes ``lengths`` if
    they fit its batch and time (the model padded the sentences the caller passed),
    else every sequence is the full length.

    Examples
    --------
    >>> gru = find_recurrent(nn.GRU(2, 3, batch_first=True))[0]
    >>> x, lengths, packing, hx, unbatched = read_input(gru, (torch.zeros(4, 5, 2),), {}, None)
    >>> tuple(x.shape), lengths.tolist(), packing, hx, unbatched
    ((5, 4, 2), [5, 5, 5, 5], None, None, False)
    """
    given = args[0] if args else kwargs.get("input")
    hx = args[1] if len(args) > 1 else next(
        (kwargs[k] for k in ("hx", "h0", "hidden") if k in kwargs), None
    )  # fmt: skip
    where = f"recurrent module {recurrent.path or 'model'}"
    if isinstance(given, PackedSequence):
        x, found = pad_packed_sequence(given)
        return x, found, given, hx, False
    if not isinstance(given, Tensor) or given.dim() not in (2, 3):
        raise ModelError(f"{where} got {type(given).__name__}; expected a 2-D or 3-D tensor")
    unbatched = given.dim() == 2
    if unbatched:
        x = given.unsqueeze(1)
        if isinstance(hx, Tensor):
            hx = hx.unsqueeze(1)
        elif isinstance(hx, tuple | list):
            hx = tuple(h.unsqueeze(1) for h in hx)
    else:
        x = given.transpose(0, 1) if recurrent.batch_first else given
    steps, batch = x.shape[0], x.shape[1]
    fits = lengths is not None and len(lengths) == batch and int(lengths.max()) <= steps
    full = torch.full((batch,), steps, dtype=torch.long)
    return x, lengths.cpu() if lengths is not None and fits else full, None, hx, unbatched


def module_output(
    recurrent: Recurrent, unrolled: Unrolled, packing: Packing, unbatched: bool
) -> tuple[Any, Any]:
    """What the fused module returns, built from the unrolled states: ``(output, h_n)``
    for a GRU, ``(output, (h_n, c_n))`` for an LSTM, ``output`` packed as the input
    was (same ``sorted_indices``), or batch first, or unbatched.

    Examples
    --------
    >>> lstm = nn.LSTM(2, 3, batch_first=True)
    >>> recurrent = find_recurrent(lstm)[0]
    >>> x = torch.randn(1, 4, 2)
    >>> output, (h_n, c_n) = module_output(
    ...     recurrent, unroll(recurrent, x.transpose(0, 1), torch.tensor([4])), None, False)
    >>> bool((output - lstm(x)[0]).abs().max() < 1e-6), tuple(h_n.shape)
    (True, (1, 1, 3))
    """
    output = unrolled.output
    final_h, final_c = unrolled.final_h, unrolled.final_c
    if packing is not None:
        order = packing.sorted_indices
        ordered = output if order is None else output.index_select(1, order)
        lengths = unrolled.lengths if order is None else unrolled.lengths[order.cpu()]
        data = pack_padded_sequence(ordered, lengths, enforce_sorted=True).data
        packed: Any = PackedSequence(
            data, packing.batch_sizes, packing.sorted_indices, packing.unsorted_indices
        )
        result: Any = packed
    elif unbatched:
        result = output.squeeze(1)
        final_h = final_h.squeeze(1)
        final_c = None if final_c is None else final_c.squeeze(1)
    else:
        result = output.transpose(0, 1) if recurrent.batch_first else output
    if recurrent.kind == "lstm":
        return result, (final_h, final_c)
    return result, final_h


class StopModel(Exception):
    """Raised by :func:`tap` (``stop=True``) once every module asked for is unrolled."""


@contextlib.contextmanager
def tap(
    recurrents: Sequence[Recurrent], lengths: Tensor | None = None, *, stop: bool = False
) -> Iterator[dict[str, Unrolled]]:
    """Unroll each of ``recurrents`` when the model calls it; yields ``{path:
    Unrolled}``, filled as the model runs. ``lengths`` are the lengths of the sequences
    the caller passed (for modules that get a padded tensor). With ``stop``, the last
    of them raises :class:`StopModel` instead of running: the rest of the model is not
    computed (catch it around the model call).

    A module called twice in one pass is refused (its gates would be ambiguous).
    """
    seen: dict[str, Unrolled] = {}
    replies: dict[str, tuple[Any, Any]] = {}
    handles = []
    replayable = {r.path for r in recurrents if r.replayable}  # before forward is replaced

    def pre_hook(recurrent: Recurrent) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if recurrent.path in seen:
                raise ModelError(
                    f"recurrent module {recurrent.path or 'model'} ran twice in one forward "
                    "pass; actstore reads modules that run once over whole sentences"
                )
            x, found, packing, hx, unbatched = read_input(recurrent, args, kwargs, lengths)
            unrolled = unroll(recurrent, x, found, hx)
            seen[recurrent.path] = unrolled
            if stop and len(seen) == len(recurrents):
                raise StopModel
            if recurrent.path in replayable:
                replies[recurrent.path] = module_output(recurrent, unrolled, packing, unbatched)

        return hook

    def replay(recurrent: Recurrent) -> Any:
        def forward(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
            return replies.pop(recurrent.path)

        return forward

    replayed = []
    try:
        for recurrent in recurrents:
            module = recurrent.module
            handles.append(module.register_forward_pre_hook(pre_hook(recurrent), with_kwargs=True))
            if recurrent.path in replayable:
                module.forward = replay(recurrent)
                replayed.append(module)
        yield seen
    finally:
        for handle in handles:
            handle.remove()
        for module in replayed:
            del module.forward
