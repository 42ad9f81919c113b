"""Canonical names for the parts of a transformer, and the forward hooks that read them.

As in TransformerLens, each architecture has one table mapping a component name to
the module whose forward input or output it is (:data:`ARCHITECTURES`); the names are
TransformerLens's hook names without ``hook_`` (``blocks.3.attn_out`` for
``blocks.3.hook_attn_out``, ``blocks.3.mlp.post`` for ``blocks.3.mlp.hook_post``).
Every model also has ``layer.0`` .. ``layer.N``, Hugging Face's ``hidden_states``.
Hooks are registered only for the components asked for, and only while one forward
pass runs (:func:`capture`). ``docs/EXTRACTION.md`` defines each component precisely.

Examples
--------
>>> sorted(ARCHITECTURES), BLOCK_COMPONENTS[:2]
(['bert', 'llama'], ('resid_pre', 'attn_out'))
>>> ARCHITECTURES["llama"]["mlp_out"]
Hook(module='layers.{i}.mlp.down_proj', side='output', width='hidden')
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from actstore.errors import ModelError

# in the order of the forward pass within a block
BLOCK_COMPONENTS = ("resid_pre", "attn_out", "resid_mid", "mlp.post", "mlp_out", "resid_post")


@dataclass(frozen=True)
class Hook:
    """One row of an architecture's table: the module (``{i}`` is the block index,
    the path is inside the base model), which side of its forward call the component
    is, and whether it is ``hidden_size`` or ``intermediate_size`` wide."""

    module: str
    side: Literal["input", "output"]
    width: Literal["hidden", "intermediate"] = "hidden"


ARCHITECTURES: dict[str, dict[str, Hook]] = {
    # post-LN: x' = LayerNorm(x + sublayer(x)); the sublayer outputs are the dense
    # projections before the residual add and the LayerNorm (dropout is off in eval)
    "bert": {
        "resid_pre": Hook("encoder.layer.{i}", "input"),
        "attn_out": Hook("encoder.layer.{i}.attention.output.dense", "output"),
        "resid_mid": Hook("encoder.layer.{i}.attention.output", "output"),
        "mlp.post": Hook("encoder.layer.{i}.intermediate", "output", "intermediate"),
        "mlp_out": Hook("encoder.layer.{i}.output.dense", "output"),
        "resid_post": Hook("encoder.layer.{i}", "output"),
    },
    # pre-RMSNorm: x' = x + sublayer(norm(x))
    "llama": {
        "resid_pre": Hook("layers.{i}", "input"),
        "attn_out": Hook("layers.{i}.self_attn.o_proj", "output"),
        "resid_mid": Hook("layers.{i}.post_attention_layernorm", "input"),
        "mlp.post": Hook("layers.{i}.mlp.down_proj", "input", "intermediate"),
        "mlp_out": Hook("layers.{i}.mlp.down_proj", "output"),
        "resid_post": Hook("layers.{i}", "output"),
    },
}


@dataclass(frozen=True)
class Tap:
    """Where a component is read during a forward pass: hidden state ``hidden_state``
    (when not None), or the forward ``side`` of the module at ``path`` in the model
    that runs (the base model).

    Examples
    --------
    >>> Tap(hidden_state=3), Tap(path="layers.0.mlp.down_proj", side="input").hidden_state
    (Tap(hidden_state=3, path='', side='output'), None)
    """

    hidden_state: int | None = None
    path: str = ""
    side: Literal["input", "output"] = "output"


@dataclass(frozen=True)
class Component:
    """A component a site can hold: its name, where it is read, width, provenance."""

    name: str
    tap: Tap
    n_units: int
    provenance: Mapping[str, Any] = field(default_factory=dict)


def architecture(model: Any) -> str | None:
    """The key of the model's table in :data:`ARCHITECTURES`, if it has one.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> architecture(NS(config=NS(model_type="bert"))), architecture(NS(config=NS()))
    ('bert', None)
    """
    kind = getattr(model.config, "model_type", None)
    return kind if kind in ARCHITECTURES else None


def components(model: Any) -> list[Component]:
    """Every component of ``model`` (loaded, with its head if any): ``layer.0`` ..
    ``layer.N``, then, where its architecture has a table, each block's components.

    The provenance of ``layer.k`` is ``{"hidden_state": k}``; of a block component,
    the module's dotted path in the loaded model and the side of its call hooked.

    Examples
    --------
    >>> from extractors import models  # doctest: +SKIP
    >>> tokenizer, model = models.load(models.resolve_model("minilm"))  # doctest: +SKIP
    >>> [(c.name, c.n_units) for c in components(model)][6:9]  # doctest: +SKIP
    [('layer.6', 384), ('blocks.0.resid_pre', 384), ('blocks.0.attn_out', 384)]
    >>> components(model)[9].provenance  # doctest: +SKIP
    {'module': 'encoder.layer.0.attention.output', 'hook': 'forward output'}
    """
    config = model.config
    n_blocks = int(config.num_hidden_layers)
    hidden = int(config.hidden_size)
    out = [
        Component(f"layer.{k}", Tap(hidden_state=k), hidden, {"hidden_state": k})
        for k in range(n_blocks + 1)
    ]
    kind = architecture(model)
    if kind is None:
        return out
    base = getattr(model, "base_model", model)
    prefix = _prefix(model, base)
    widths = {"hidden": hidden, "intermediate": int(config.intermediate_size)}
    for i in range(n_blocks):
        for name in BLOCK_COMPONENTS:
            hook = ARCHITECTURES[kind][name]
            path = hook.module.format(i=i)
            try:
                base.get_submodule(path)
            except AttributeError:
                raise ModelError(
                    f"{type(model).__name__} ({kind}) has no module {prefix}{path}: "
                    f"its {name} cannot be hooked; extractors/hooks.py names the modules"
                ) from None
            provenance = {"module": prefix + path, "hook": f"forward {hook.side}"}
            out.append(
                Component(
                    f"blocks.{i}.{name}", Tap(path=path, side=hook.side), widths[hook.width],
                    provenance,
                )
            )  # fmt: skip
    return out


def _prefix(model: Any, base: Any) -> str:
    """The base model's dotted path in the loaded model, with a trailing dot ('' if it
    is the loaded model)."""
    if base is model:
        return ""
    for name, module in model.named_children():
        if module is base:
            return f"{name}."
    return ""


@contextlib.contextmanager
def capture(model: Any, taps: Sequence[Tap]) -> Iterator[dict[Tap, Any]]:
    """Forward hooks on the modules of ``taps`` (hidden states need none) while the
    ``with`` body runs; the dict maps each tap to the tensor its module last saw.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
    >>> taps = [Tap(path="0", side="input"), Tap(path="1")]
    >>> with capture(model, taps) as seen:
    ...     out = model(torch.ones(1, 2))
    >>> seen[taps[0]].tolist(), bool((seen[taps[1]] == out).all())
    ([[1.0, 1.0]], True)
    >>> len(model[0]._forward_pre_hooks)  # gone once the block ends
    0
    """
    seen: dict[Tap, Any] = {}
    handles = []
    try:
        for tap in taps:
            if tap.hidden_state is not None:
                continue
            module = model.get_submodule(tap.path)
            if tap.side == "output":
                handles.append(module.register_forward_hook(_keep_output(seen, tap)))
            else:
                handles.append(
                    module.register_forward_pre_hook(_keep_input(seen, tap), with_kwargs=True)
                )
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _keep_output(seen: dict[Tap, Any], tap: Tap) -> Callable[[Any, Any, Any], None]:
    def hook(module: Any, args: Any, output: Any) -> None:
        seen[tap] = output[0] if isinstance(output, tuple) else output

    return hook


def _keep_input(seen: dict[Tap, Any], tap: Tap) -> Callable[[Any, Any, Any], None]:
    def hook(module: Any, args: Any, kwargs: Any) -> None:
        seen[tap] = args[0] if args else kwargs["hidden_states"]

    return hook
