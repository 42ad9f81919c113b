"""IMAGINET (Chrupała, Kádár and Alishahi 2015): two GRU pathways over shared word
embeddings; the visual one predicts an image vector from its final state, the textual
one predicts the next word.

Its GRU is :class:`SteepGRU`: steep sigmoid gates ``sigmoid(3.75 x)`` and a candidate
clipped to ``[0, 5]``, looped over time in plain torch (nothing fused), with the
parameters named and shaped as ``nn.GRU``'s (gates in torch's order r, z, n) so that
the gate extractor unrolls it with the same code as ``nn.GRU``. The paper's update is
``h_t = (1 - z_t)·h_{t-1} + z_t·n_t`` (its equation 1), the opposite of torch's
``h_t = (1 - z_t)·n_t + z_t·h_{t-1}``; the module says which in ``gate_convention``
(``"cho"``). Its candidate follows torch's formula with these activations:
``n_t = clip(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn), 0, 5)`` (the paper puts the
reset gate before the recurrent matrix, ``U(r_t ⊙ h_{t-1})``; with the bias this is
the form the unrolling shares with ``nn.GRU``).

Examples
--------
>>> import torch
>>> _ = torch.manual_seed(0)
>>> model = Imaginet(n_vocab=10, image_dim=4, embedding_dim=8, hidden_size=6)
>>> out = model(torch.tensor([[3, 4, 5], [6, 7, 0]]))
>>> tuple(out.word_logits.shape), tuple(out.image.shape)
((2, 3, 10), (2, 4))
>>> model.visual.gate_convention
'cho'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional

GATE_STEEPNESS = 3.75
CLIP = 5.0
ImageActivation = Literal["clip", "linear"]
IMAGE_ACTIVATIONS: tuple[ImageActivation, ...] = ("clip", "linear")


def steep_sigmoid(x: Tensor) -> Tensor:
    """IMAGINET's gate activation, ``1 / (1 + exp(-3.75·x))``.

    Examples
    --------
    >>> round(float(steep_sigmoid(torch.tensor(1.0))), 4)
    0.9770
    """
    return torch.sigmoid(GATE_STEEPNESS * x)


def clipped_rectifier(x: Tensor) -> Tensor:
    """IMAGINET's unit activation, ``min(max(x, 0), 5)``.

    Examples
    --------
    >>> clipped_rectifier(torch.tensor([-1.0, 2.0, 7.0])).tolist()
    [0.0, 2.0, 5.0]
    """
    return torch.clamp(x, 0.0, CLIP)


class SteepGRU(nn.Module):
    """A GRU with steep sigmoid gates and a clipped-rectifier candidate, batch first.

    Called like ``nn.GRU``: ``forward(x, h0=None) -> (output, h_n)`` with ``x`` of shape
    ``(batch, time, input_size)``, ``output`` ``(batch, time, hidden_size)`` (the last
    layer's states) and ``h_n`` ``(num_layers, batch, hidden_size)``. The attributes
    ``actstore_recurrent``, ``gate_activation``, ``candidate_activation`` and
    ``gate_convention`` tell the gate extractor how to unroll it.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> gru = SteepGRU(3, 5, num_layers=2)
    >>> output, h_n = gru(torch.randn(2, 4, 3))
    >>> tuple(output.shape), tuple(h_n.shape), bool((output >= 0).all() and (output <= 5).all())
    ((2, 4, 5), (2, 2, 5), True)
    >>> sorted(name for name, _ in gru.named_parameters())[:2]
    ['bias_hh_l0', 'bias_hh_l1']
    """

    actstore_recurrent = "gru"
    gate_convention: Literal["cho", "torch"] = "cho"
    bidirectional = False
    batch_first = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.gate_activation: Callable[[Tensor], Tensor] = steep_sigmoid
        self.candidate_activation: Callable[[Tensor], Tensor] = clipped_rectifier
        for k in range(num_layers):
            width = input_size if k == 0 else hidden_size
            self.register_parameter(
                f"weight_ih_l{k}", nn.Parameter(torch.empty(3 * hidden_size, width))
            )
            self.register_parameter(
                f"weight_hh_l{k}", nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
            )
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(3 * hidden_size)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(3 * hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.GRU``'s initialisation: every parameter uniform in ±1/√hidden_size."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def layer_weights(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Layer ``k``'s ``weight_ih, weight_hh, bias_ih, bias_hh``."""
        return (
            getattr(self, f"weight_ih_l{k}"),
            getattr(self, f"weight_hh_l{k}"),
            getattr(self, f"bias_ih_l{k}"),
            getattr(self, f"bias_hh_l{k}"),
        )

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run every layer over ``x``; see the class docstring for the shapes."""
        batch, steps = x.shape[0], x.shape[1]
        if h0 is None:
            h0 = x.new_zeros(self.num_layers, batch, self.hidden_size)
        layer_input, finals = x, []
        for k in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(k)
            projected = functional.linear(layer_input, w_ih, b_ih)  # every step at once
            h = h0[k]
            states = []
            for t in range(steps):
                x_r, x_z, x_n = projected[:, t].chunk(3, dim=1)
                h_r, h_z, h_n = functional.linear(h, w_hh, b_hh).chunk(3, dim=1)
                r = self.gate_activation(x_r + h_r)
                z = self.gate_activation(x_z + h_z)
                n = self.candidate_activation(x_n + r * h_n)
                h = (1 - z) * h + z * n if self.gate_convention == "cho" else (1 - z) * n + z * h
                states.append(h)
            layer_input = (
                torch.stack(states, dim=1) if states else x.new_zeros(batch, 0, self.hidden_size)
            )
            finals.append(h)
        return layer_input, torch.stack(finals)


class ImaginetOutput(NamedTuple):
    """What :class:`Imaginet` computes for a batch: next-word logits ``(batch, time,
    vocab)`` from the textual pathway, image vectors ``(batch, image_dim)`` from the
    visual pathway's state after each sentence's last word."""

    word_logits: Tensor
    image: Tensor


class Imaginet(nn.Module):
    """IMAGINET: shared embeddings, a ``visual`` and a ``textual`` :class:`SteepGRU`.

    ``model(ids)`` takes right-padded ids ``(batch, time)`` (padding id ``pad``) and
    returns an :class:`ImaginetOutput`. The image vector is ``clip(V·h^V_τ, 0, 5)``
    (the paper's equation 8; ``image_activation="linear"`` leaves out the clip, for
    features that may be negative); the next word's logits are ``L·h^T_t``.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> model = Imaginet(n_vocab=10, image_dim=4, embedding_dim=8, hidden_size=6)
    >>> ids = torch.tensor([[3, 4, 0]])
    >>> bool(torch.allclose(model(ids).image, model(ids[:, :2]).image))  # padding is ignored
    True
    """

    architecture = "imaginet"

    def __init__(
        self,
        n_vocab: int,
        image_dim: int,
        *,
        embedding_dim: int = 1024,
        hidden_size: int = 1024,
        num_layers: int = 1,
        pad: int = 0,
        image_activation: ImageActivation = "clip",
    ) -> None:
        super().__init__()
        if image_activation not in IMAGE_ACTIVATIONS:
            raise ValueError(f"image_activation must be one of {list(IMAGE_ACTIVATIONS)}")
        self.pad = pad
        self.image_activation = image_activation
        self.embedding = nn.Embedding(n_vocab, embedding_dim, padding_idx=pad)
        self.visual = SteepGRU(embedding_dim, hidden_size, num_layers)
        self.textual = SteepGRU(embedding_dim, hidden_size, num_layers)
        self.to_image = nn.Linear(hidden_size, image_dim)
        self.to_word = nn.Linear(hidden_size, n_vocab)

    def hyperparameters(self) -> dict[str, Any]:
        """What rebuilds this model beside its vocabulary (``config.json``'s ``model``)."""
        return {
            "embedding_dim": self.embedding.embedding_dim,
            "hidden_size": self.visual.hidden_size,
            "num_layers": self.visual.num_layers,
            "image_dim": self.to_image.out_features,
            "image_activation": self.image_activation,
        }

    def forward(self, ids: Tensor) -> ImaginetOutput:
        """Both pathways over ``ids``; see the class docstring."""
        embedded = self.embedding(ids)
        return ImaginetOutput(self.words(embedded), self.image(embedded, ids))

    def words(self, embedded: Tensor) -> Tensor:
        """The textual pathway: next-word logits from embedded ids."""
        states, _ = self.textual(embedded)
        logits: Tensor = self.to_word(states)
        return logits

    def image(self, embedded: Tensor, ids: Tensor) -> Tensor:
        """The visual pathway: the image vector from each sentence's final state."""
        states, _ = self.visual(embedded)
        last = ((ids != self.pad).sum(dim=1) - 1).clamp(min=0)
        final = states[torch.arange(ids.shape[0], device=ids.device), last]
        image: Tensor = self.to_image(final)
        return clipped_rectifier(image) if self.image_activation == "clip" else image
