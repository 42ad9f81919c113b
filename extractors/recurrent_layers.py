"""What a recurrent module is, for actstore: ``nn.LSTM``, ``nn.GRU``, or any module
that declares ``actstore_recurrent`` and names its parameters as they do.

:func:`find_recurrent` lists a model's recurrent modules, each described by a
:class:`Recurrent` (kind, layers, directions, sizes, activations, the GRU update
convention, its weights per layer and direction); :mod:`extractors.unroll` unrolls
them. A module declared recurrent but lacking what unrolling needs is refused in one
line.

Examples
--------
>>> lstm = describe(nn.LSTM(3, 4, num_layers=2, proj_size=2), "encoder")
>>> lstm.kind, lstm.num_layers, lstm.units("h"), lstm.units("c"), lstm.convention
('lstm', 2, 2, 4, '')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from actstore.errors import ModelError

Kind = Literal["lstm", "gru"]
KINDS: tuple[Kind, ...] = ("lstm", "gru")
GATES: dict[str, tuple[str, ...]] = {
    "lstm": ("i", "f", "g", "o", "c", "h"),
    "gru": ("r", "z", "n", "h"),
}
CONVENTIONS = ("torch", "cho")
DIRECTIONS = ("forward", "reverse")
Activation = Callable[[Tensor], Tensor]
_ATTRIBUTES = ("num_layers", "hidden_size", "bidirectional", "batch_first")


@dataclass(frozen=True, eq=False)
class Recurrent:
    """One recurrent module of a model and how to unroll it (see :func:`describe`).

    Examples
    --------
    >>> gru = describe(nn.GRU(3, 4, bidirectional=True), "encoder.rnn")
    >>> gru.kind, gru.directions, gru.convention, gru.units("h"), gru.replayable
    ('gru', 2, 'torch', 4, True)
    """

    path: str
    module: nn.Module
    kind: Kind
    num_layers: int
    hidden_size: int
    bidirectional: bool
    batch_first: bool
    proj_size: int = 0
    gate_activation: Activation = torch.sigmoid
    candidate_activation: Activation = torch.tanh
    convention: str = "torch"

    @property
    def directions(self) -> int:
        """1, or 2 for a bidirectional module."""
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Units of ``h``: ``proj_size`` if the LSTM projects, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def units(self, gate: str) -> int:
        """Units of one gate's site."""
        return self.output_size if gate == "h" else self.hidden_size

    @property
    def replayable(self) -> bool:
        """Whether the module runs torch's own forward (then :mod:`extractors.recurrent_tap` may
        hand the model the unrolled result instead of computing it again)."""
        own = type(self.module).forward
        fused = own in (nn.LSTM.forward, nn.GRU.forward)
        return fused and "forward" not in vars(self.module)

    def weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``weight_ih, weight_hh, bias_ih, bias_hh, weight_hr`` of one layer and
        direction (zero biases where the module has none; ``weight_hr`` empty without
        ``proj_size``)."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        w_ih = _parameter(self, "weight_ih" + suffix)
        w_hh = _parameter(self, "weight_hh" + suffix)
        n_gates = w_ih.shape[0]
        zeros = w_ih.new_zeros(n_gates)
        b_ih = getattr(self.module, "bias_ih" + suffix, None)
        b_hh = getattr(self.module, "bias_hh" + suffix, None)
        w_hr = _parameter(self, "weight_hr" + suffix) if self.proj_size else w_ih.new_zeros(0, 0)
        return (
            w_ih, w_hh, zeros if b_ih is None else b_ih, zeros if b_hh is None else b_hh, w_hr
        )  # fmt: skip


def _parameter(recurrent: Recurrent, name: str) -> Tensor:
    value = getattr(recurrent.module, name, None)
    if not isinstance(value, Tensor):
        raise ModelError(
            f"recurrent module {recurrent.path or 'model'} ({type(recurrent.module).__name__}) "
            f"has no parameter {name}; a recurrent module names its parameters as nn.GRU/nn.LSTM do"
        )
    return value


def describe(module: nn.Module, path: str) -> Recurrent | None:
    """How to unroll ``module`` (found at ``path`` in its model), or None if it is not
    recurrent.

    A recurrent module is an ``nn.LSTM``, an ``nn.GRU``, or any module with
    ``actstore_recurrent = "lstm"`` or ``"gru"``, parameters named as torch's
    (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``,
    ``_reverse`` for direction 1) and the attributes ``num_layers``, ``hidden_size``,
    ``bidirectional``, ``batch_first`` (LSTM: ``proj_size``, optional). Optional:
    ``gate_activation``, ``candidate_activation`` and, for a GRU, ``gate_convention``.

    Examples
    --------
    >>> describe(nn.Linear(2, 2), "head") is None
    True
    >>> class Odd(nn.Module):
    ...     actstore_recurrent = "rnn"
    >>> describe(Odd(), "odd")
    Traceback (most recent call last):
    ...
    actstore.errors.ModelError: module odd (Odd): actstore_recurrent must be 'lstm' or ...
    """
    where = f"module {path or 'model'} ({type(module).__name__})"
    kind: object
    if isinstance(module, nn.LSTM):
        kind = "lstm"
    elif isinstance(module, nn.GRU):
        kind = "gru"
    else:
        kind = getattr(module, "actstore_recurrent", None)
        if kind is None:
            return None
        if kind not in KINDS:
            raise ModelError(f"{where}: actstore_recurrent must be 'lstm' or 'gru', got {kind!r}")
    missing = [name for name in _ATTRIBUTES if not hasattr(module, name)]
    if missing:
        raise ModelError(f"{where}: a recurrent module needs the attributes {', '.join(missing)}")
    convention = str(getattr(module, "gate_convention", "torch"))
    if kind == "gru" and convention not in CONVENTIONS:
        raise ModelError(
            f"{where}: gate_convention must be one of {list(CONVENTIONS)}, got {convention!r}"
        )
    proj_size = int(getattr(module, "proj_size", 0) or 0)
    if proj_size and kind == "gru":
        raise ModelError(f"{where}: proj_size is an LSTM setting; a GRU cannot project")
    recurrent = Recurrent(
        path=path,
        module=module,
        kind="lstm" if kind == "lstm" else "gru",
        num_layers=int(getattr(module, "num_layers", 0)),
        hidden_size=int(getattr(module, "hidden_size", 0)),
        bidirectional=bool(getattr(module, "bidirectional", False)),
        batch_first=bool(getattr(module, "batch_first", False)),
        proj_size=proj_size,
        gate_activation=getattr(module, "gate_activation", torch.sigmoid),
        candidate_activation=getattr(module, "candidate_activation", torch.tanh),
        convention=convention if kind == "gru" else "",
    )
    _check_shapes(recurrent, where)
    return recurrent


def _check_shapes(recurrent: Recurrent, where: str) -> None:
    n_gates = 4 if recurrent.kind == "lstm" else 3
    for layer in range(recurrent.num_layers):
        for direction in range(recurrent.directions):
            w_ih, w_hh, b_ih, b_hh, w_hr = recurrent.weights(layer, direction)
            rows, width = n_gates * recurrent.hidden_size, recurrent.output_size
            fits = (
                w_ih.shape[0] == rows
                and tuple(w_hh.shape) == (rows, width)
                and b_ih.shape == b_hh.shape == (rows,)
            )
            if recurrent.proj_size:
                fits = fits and tuple(w_hr.shape) == (recurrent.proj_size, recurrent.hidden_size)
            if not fits:
                raise ModelError(
                    f"{where}: layer {layer} {DIRECTIONS[direction]}: weights of shape "
                    f"{tuple(w_ih.shape)} and {tuple(w_hh.shape)} do not fit a "
                    f"{recurrent.kind.upper()} of {recurrent.hidden_size} units"
                )


def find_recurrent(model: nn.Module) -> list[Recurrent]:
    """Every recurrent module of ``model`` (outermost ones; the model itself may be one).

    Examples
    --------
    >>> model = nn.Sequential(nn.Embedding(5, 3), nn.GRU(3, 4))
    >>> [(r.path, r.kind) for r in find_recurrent(model)]
    [('1', 'gru')]
    >>> find_recurrent(nn.Sequential(nn.Embedding(5, 3), nn.RNN(3, 4)))
    Traceback (most recent call last):
    ...
    actstore.errors.ModelError: Sequential has no recurrent layer to unroll (nn.LSTM, ...
    ...; it holds: Embedding, RNN
    """
    found: list[Recurrent] = []
    for path, module in model.named_modules():
        if any(path.startswith(f"{r.path}.") or not r.path for r in found):
            continue  # inside a recurrent module already found
        recurrent = describe(module, path)
        if recurrent is not None:
            found.append(recurrent)
    if not found:
        kinds = sorted({type(m).__name__ for m in model.modules()} - {type(model).__name__})
        raise ModelError(
            f"{type(model).__name__} has no recurrent layer to unroll (nn.LSTM, nn.GRU, or a "
            "module with actstore_recurrent = 'lstm' or 'gru'); it holds: "
            + (", ".join(kinds) or "no submodules")
        )
    return found
