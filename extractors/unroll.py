"""Gates of recurrent layers, step by step, from the layers' own weights.

torch runs ``nn.LSTM`` and ``nn.GRU`` fused and shows only ``h`` (and the last ``c``).
:func:`unroll` recomputes every gate of every layer and direction with the module's
own parameters: the input projections of all steps in one matrix product per layer
and direction, then a loop over time for the recurrence alone. One code path serves
``nn.LSTM``, ``nn.GRU`` and any module declaring ``actstore_recurrent = "lstm"`` or
``"gru"`` (:func:`extractors.recurrent_layers.describe` says what such a module must
hold).

Per step, with torch's parameter layout (gates stacked in this order in
``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``), ``*``
elementwise:

- LSTM (``i, f, g, o``): ``i, f, o = s(W x + b_ih + U h_prev + b_hh)`` (their rows),
  ``g = a(...)``, ``c = f * c_prev + i * g``, ``h = o * a(c)`` (then ``h = W_hr h``
  with ``proj_size``);
- GRU (``r, z, n``): ``r, z = s(W x + b_ih + U h_prev + b_hh)`` (their rows),
  ``n = a(W_n x + b_in + r * (U_n h_prev + b_hn))``, and ``h = (1 - z) * n + z * h_prev``
  (``gate_convention = "torch"``, nn.GRU) or ``h = (1 - z) * h_prev + z * n``
  (``"cho"``);

where ``s`` is the module's ``gate_activation`` (default ``torch.sigmoid``) and ``a``
its ``candidate_activation`` (default ``torch.tanh``; for an LSTM also the activation
of the cell in ``h = o * a(c)``, as in Keras).

Sequences of several lengths are unrolled as torch's packed sequences run them: the
forward direction from each sequence's first step, the reverse direction from each
sequence's own last real step back to its first, both from the initial state. Values
at padded steps are left unspecified.

Examples
--------
>>> _ = torch.manual_seed(0)
>>> lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).eval()
>>> x = torch.randn(5, 2, 3)
>>> states = unroll(describe(lstm, "lstm"), x, torch.tensor([5, 5]))
>>> sorted(states.states[1, 1])
['c', 'f', 'g', 'h', 'i', 'o']
>>> fused, _ = lstm(x)
>>> bool((states.output - fused).abs().max() < 1e-6)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from actstore.errors import ModelError
from extractors.recurrent_layers import (
    DIRECTIONS,
    GATES,
    Activation,
    Recurrent,
    describe,
    find_recurrent,
)

__all__ = ["DIRECTIONS", "GATES", "Recurrent", "Unrolled", "describe", "find_recurrent", "unroll"]


@dataclass
class Unrolled:
    """Every gate of every layer and direction of one run, time-major.

    ``states[layer, direction][gate]`` is ``(time, batch, units)``; ``final_h`` (and for
    an LSTM ``final_c``) are ``(layers * directions, batch, units)`` as torch returns
    ``h_n`` and ``c_n``.
    """

    recurrent: Recurrent
    states: dict[tuple[int, int], dict[str, Tensor]]
    lengths: Tensor
    final_h: Tensor
    final_c: Tensor | None

    @property
    def output(self) -> Tensor:
        """The last layer's ``h``, directions side by side: torch's ``output``."""
        last = self.recurrent.num_layers - 1
        parts = [self.states[last, d]["h"] for d in range(self.recurrent.directions)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def unroll(
    recurrent: Recurrent,
    x: Tensor,
    lengths: Tensor,
    hx: Tensor | tuple[Tensor, Tensor] | None = None,
) -> Unrolled:
    """Unroll ``recurrent`` over ``x`` ``(time, batch, input)``, sequence *b* being its
    first ``lengths[b]`` steps; ``hx`` is the initial state as torch takes it (zeros
    if None). See the module docstring for the formulas.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> gru = torch.nn.GRU(2, 3, bidirectional=True)
    >>> x = torch.randn(4, 2, 2)
    >>> out = unroll(describe(gru, ""), x, torch.tensor([4, 2]))
    >>> alone, _ = gru(x[:2, 1:])                    # sequence 1 is two steps long
    >>> bool((out.output[:2, 1:] - alone).abs().max() < 1e-6)
    True
    """
    steps, batch = x.shape[0], x.shape[1]
    lengths = lengths.to(torch.long).cpu()
    layers, directions = recurrent.num_layers, recurrent.directions
    h0, c0 = _initial(recurrent, hx, batch, x)
    states: dict[tuple[int, int], dict[str, Tensor]] = {}
    finals_h, finals_c = [], []
    flip = _reverse_index(lengths, steps, x.device) if recurrent.bidirectional else None
    last = (lengths - 1).clamp(min=0).to(x.device)
    columns = torch.arange(batch, device=x.device)
    layer_input = x
    with torch.no_grad():
        for layer in range(layers):
            outputs = []
            for direction in range(directions):
                w_ih, w_hh, b_ih, b_hh, w_hr = recurrent.weights(layer, direction)
                index = layer * directions + direction
                if recurrent.kind == "lstm":  # both biases go into the projection
                    rows = _lstm_rows(recurrent.hidden_size, x.device)
                    w_hh = w_hh.index_select(0, rows)
                    projected = _project(layer_input, w_ih[rows], (b_ih + b_hh)[rows])
                else:
                    projected = _project(layer_input, w_ih, b_ih)
                if direction:
                    projected = _take(projected, flip)
                if recurrent.kind == "lstm":
                    gates = _lstm_steps(recurrent, projected, w_hh, w_hr, h0[index], c0[index])
                else:
                    gates = _gru_steps(recurrent, projected, w_hh, b_hh, h0[index])
                if direction:
                    gates = {name: _take(value, flip) for name, value in gates.items()}
                    finals_h.append(gates["h"][0])
                    if "c" in gates:
                        finals_c.append(gates["c"][0])
                else:
                    finals_h.append(gates["h"][last, columns])
                    if "c" in gates:
                        finals_c.append(gates["c"][last, columns])
                states[layer, direction] = _split(recurrent, gates)
                outputs.append(gates["h"])
            layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)
    return Unrolled(
        recurrent,
        states,
        lengths,
        torch.stack(finals_h),
        torch.stack(finals_c) if finals_c else None,
    )


def _initial(
    recurrent: Recurrent, hx: Tensor | tuple[Tensor, Tensor] | None, batch: int, x: Tensor
) -> tuple[Tensor, Tensor]:
    """``h0`` and ``c0`` as ``(layers * directions, batch, units)`` (a GRU's ``c0`` is
    empty)."""
    n = recurrent.num_layers * recurrent.directions
    cell = recurrent.hidden_size if recurrent.kind == "lstm" else 0
    if hx is None:
        return x.new_zeros(n, batch, recurrent.output_size), x.new_zeros(n, batch, cell)
    if recurrent.kind == "lstm":
        if not isinstance(hx, tuple | list) or len(hx) != 2:
            raise ModelError(f"module {recurrent.path or 'model'}: an LSTM's hx is (h_0, c_0)")
        return hx[0].to(x.dtype), hx[1].to(x.dtype)
    if not isinstance(hx, Tensor):
        raise ModelError(f"module {recurrent.path or 'model'}: a GRU's hx is one tensor h_0")
    return hx.to(x.dtype), x.new_zeros(n, batch, 0)


def _project(inputs: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """All steps' input projections: one matrix product, ``(time, batch, gates)``."""
    steps, batch, width = inputs.shape
    flat = inputs.reshape(steps * batch, width)
    return torch.addmm(bias, flat, weight.t()).view(steps, batch, -1)


def _reverse_index(lengths: Tensor, steps: int, device: torch.device) -> Tensor:
    """Flat ``(time * batch)`` indices reversing each sequence within its own length
    (padded steps stay in place); the permutation is its own inverse."""
    batch = len(lengths)
    t = torch.arange(steps)[:, None]
    source = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return (source * batch + torch.arange(batch)[None, :]).reshape(-1).to(device)


def _take(values: Tensor, index: Tensor | None) -> Tensor:
    """``values`` ``(time, batch, units)`` with its (time, batch) cells permuted."""
    if index is None:
        return values
    steps, batch, units = values.shape
    return values.reshape(steps * batch, units).index_select(0, index).view(steps, batch, units)


def _lstm_rows(size: int, device: torch.device) -> Tensor:
    """Rows of torch's stacked LSTM weights (``i, f, g, o``) in the order the steps keep
    their gates (:data:`BUFFER_ORDER`: the three sigmoid gates side by side)."""
    blocks = [torch.arange(k * size, (k + 1) * size) for k in (0, 1, 3, 2)]
    return torch.cat(blocks).to(device)


BUFFER_ORDER = {"lstm": ("i", "f", "o", "g"), "gru": ("r", "z", "n")}


def _activate(function: Activation, view: Tensor, out: Tensor | None = None) -> None:
    """``out = function(view)`` (in place if ``out`` is None), with torch's own kernels
    where ``function`` is one."""
    target = view if out is None else out
    if function is torch.sigmoid:
        torch.sigmoid(view, out=target)
    elif function is torch.tanh:
        torch.tanh(view, out=target)
    else:
        target.copy_(function(view))


def _lstm_steps(
    recurrent: Recurrent, gates: Tensor, w_hh: Tensor, w_hr: Tensor, h: Tensor, c: Tensor
) -> dict[str, Tensor]:
    """The recurrence of one LSTM layer and direction; ``gates`` (time, batch, 4H) holds
    the input projections in the rows of :func:`_lstm_rows` (``w_hh`` likewise) and is
    overwritten with the activated gates ``i, f, o, g``."""
    steps, batch, _ = gates.shape
    size = recurrent.hidden_size
    cells = gates.new_empty(steps, batch, size)
    hidden = gates.new_empty(steps, batch, recurrent.output_size)
    squashed = gates.new_empty(batch, size)
    u, sigma, phi = w_hh.t(), recurrent.gate_activation, recurrent.candidate_activation
    for t in range(steps):
        g = gates[t]
        g.addmm_(h, u)
        _activate(sigma, g[:, : 3 * size])  # i, f, o
        _activate(phi, g[:, 3 * size :])  # g
        c = torch.mul(g[:, size : 2 * size], c, out=cells[t])  # f * c_prev
        c.addcmul_(g[:, :size], g[:, 3 * size :])  # + i * g
        _activate(phi, c, out=squashed)
        if recurrent.proj_size:
            squashed.mul_(g[:, 2 * size : 3 * size])
            h = torch.mm(squashed, w_hr.t(), out=hidden[t])
        else:
            h = torch.mul(g[:, 2 * size : 3 * size], squashed, out=hidden[t])
    return {"gates": gates, "c": cells, "h": hidden}


def _gru_steps(
    recurrent: Recurrent, gates: Tensor, w_hh: Tensor, b_hh: Tensor, h: Tensor
) -> dict[str, Tensor]:
    """The recurrence of one GRU layer and direction; ``gates`` (time, batch, 3H) holds
    the input projections (with ``b_ih``) and is overwritten with ``r, z, n``."""
    steps, batch, _ = gates.shape
    size = recurrent.hidden_size
    hidden = gates.new_empty(steps, batch, size)
    from_h = gates.new_empty(batch, 3 * size)
    u, sigma, phi = w_hh.t(), recurrent.gate_activation, recurrent.candidate_activation
    torch_convention = recurrent.convention == "torch"
    for t in range(steps):
        g = gates[t]
        torch.addmm(b_hh, h, u, out=from_h)
        rz = g[:, : 2 * size]
        rz.add_(from_h[:, : 2 * size])
        _activate(sigma, rz)
        z, n = g[:, size : 2 * size], g[:, 2 * size :]
        n.addcmul_(g[:, :size], from_h[:, 2 * size :])
        _activate(phi, n)
        out = hidden[t]
        if torch_convention:  # n + z (h - n)
            torch.sub(h, n, out=out).mul_(z).add_(n)
        else:  # h + z (n - h)
            torch.sub(n, h, out=out).mul_(z).add_(h)
        h = out
    return {"gates": gates, "h": hidden}


def _split(recurrent: Recurrent, computed: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each gate of the stacked buffer as its own ``(time, batch, units)`` view."""
    size = recurrent.hidden_size
    stacked = computed["gates"]
    where = {name: k for k, name in enumerate(BUFFER_ORDER[recurrent.kind])}
    return {
        name: stacked[:, :, where[name] * size : (where[name] + 1) * size]
        if name in where
        else computed[name]
        for name in GATES[recurrent.kind]
    }
