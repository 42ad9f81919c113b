"""Finding a recurrent model to extract: a checkpoint folder, or a factory with a state
dict and a vocabulary.

- A checkpoint folder (``config.json`` naming an ``architecture``, ``vocab.json``,
  ``model.safetensors``), as ``actstore train`` writes it, is read by
  :func:`extractors.reference.load_checkpoint`.
- A factory ``package.module:function`` (importable from the current directory too)
  returns an ``nn.Module``; ``weights`` is its state dict (``.safetensors``, or a
  ``.pt``/``.pth``/``.bin`` file holding a dict of tensors, read with
  ``weights_only``) and ``vocab`` a vocabulary JSON as a checkpoint holds it
  (:class:`extractors.vocab.Vocabulary`: ``tokens`` starting with ``<pad>``,
  ``<unk>``, ``</s>``, ``level``, ``lowercase``). The model is called as
  ``model(ids)``, ids ``(batch, time)`` (``(time, batch)`` with ``time_major``).

Either way the model must hold a recurrent module (:func:`extractors.unroll.find_recurrent`)
and, if it has embeddings, one with a row per vocabulary entry.

Examples
--------
>>> _ = torch.manual_seed(0)
>>> model = nn.Sequential(nn.Embedding(5, 2), nn.LSTM(2, 3, batch_first=True))
>>> check_vocabulary(model, 4, "vocab.json")
Traceback (most recent call last):
...
actstore.errors.ModelError: vocabulary mismatch: vocab.json has 4 entries but the model's ...
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from actstore.errors import ModelError
from extractors.models import sha256_files
from extractors.verbs import ExtractOptions, is_factory
from extractors.vocab import Vocabulary

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class RecurrentModel:
    """A loaded recurrent model and what provenance says about it.

    ``name`` is the site prefix (the checkpoint folder's name, or the weights file's
    stem for a factory); ``architecture`` the checkpoint's, or ``factory``.
    """

    name: str
    model: nn.Module
    vocab: Vocabulary
    architecture: str
    source: str
    weight_files: tuple[Path, ...]
    batch_first: bool = True
    random_init: int | None = None

    def provenance(self) -> dict[str, Any]:
        """Model, architecture, source, weights and vocabulary hashes.

        Examples
        --------
        >>> vocab = Vocabulary(["<pad>", "<unk>", "</s>", "a"], level="word", lowercase=True)
        >>> loaded = RecurrentModel("lm", nn.GRU(2, 2), vocab, "factory", "m:f", ())
        >>> sorted(loaded.provenance())[:4]
        ['architecture', 'batch_first', 'level', 'lowercase']
        """
        return {
            "model": self.name,
            "architecture": self.architecture,
            "model_path": self.source,
            "model_class": type(self.model).__name__,
            "weights_sha256": sha256_files(list(self.weight_files)),
            "random_init": self.random_init,
            "vocab_size": len(self.vocab),
            "vocab_sha256": vocab_sha256(self.vocab),
            "level": self.vocab.level,
            "lowercase": self.vocab.lowercase,
            "batch_first": self.batch_first,
        }


def vocab_sha256(vocab: Vocabulary) -> str:
    """SHA-256 of the vocabulary as JSON (tokens in id order, level, case folding).

    Examples
    --------
    >>> vocab = Vocabulary(["<pad>", "<unk>", "</s>"], level="char", lowercase=False)
    >>> len(vocab_sha256(vocab))
    64
    """
    text = json.dumps(vocab.to_json(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_model(options: ExtractOptions) -> RecurrentModel:
    """The model ``options.model`` names (a factory or a checkpoint folder), checked,
    re-initialised first if ``options.random_init`` is set."""
    if is_factory(options.model):
        if options.weights is None or options.vocab is None:
            raise ModelError(f"the factory model {options.model} needs --weights and --vocab")
        loaded = load_factory(options.model, options.weights, options.vocab, options.time_major)
    else:
        loaded = load_folder(Path(options.model))
    if options.random_init is not None:
        model = reinitialise(loaded.model, options.random_init)
        name = f"{loaded.name}-random{options.random_init}"
        loaded = replace(loaded, model=model, name=name, random_init=options.random_init)
    return loaded


def load_folder(folder: Path) -> RecurrentModel:
    """A checkpoint folder, through :func:`extractors.reference.load_checkpoint`."""
    from extractors.reference import load_checkpoint

    checkpoint = load_checkpoint(folder)
    check_vocabulary(checkpoint.model, len(checkpoint.vocab), str(folder / "vocab.json"))
    batch_first = checkpoint.config.get("batch_first", True)
    if not isinstance(batch_first, bool):
        raise ModelError(f"{folder / 'config.json'}: batch_first must be true or false")
    return RecurrentModel(
        name=site_prefix(folder.resolve().name),
        model=checkpoint.model.eval(),
        vocab=checkpoint.vocab,
        architecture=checkpoint.architecture,
        source=str(folder),
        weight_files=(folder / "model.safetensors",),
        batch_first=batch_first,
    )


def load_factory(target: str, weights: Path, vocab_file: Path, time_major: bool) -> RecurrentModel:
    """``target`` (``package.module:function``) called with no arguments, ``weights``
    loaded into it strictly, ``vocab_file`` read as a :class:`Vocabulary`."""
    model = call_factory(target)
    state = read_state_dict(weights)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModelError(f"{weights}: weights do not fit {target}(): {detail[:300]}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {', '.join(result.missing_keys[:3])}")
    if result.unexpected_keys:
        problems.append(f"unexpected {', '.join(result.unexpected_keys[:3])}")
    if problems:
        raise ModelError(f"{weights}: weights do not fit {target}(): {'; '.join(problems)}")
    vocab = read_vocabulary(vocab_file)
    check_vocabulary(model, len(vocab), str(vocab_file))
    return RecurrentModel(
        name=site_prefix(weights.name.split(".")[0]),
        model=model.eval(),
        vocab=vocab,
        architecture="factory",
        source=target,
        weight_files=(weights,),
        batch_first=not time_major,
    )


def call_factory(target: str) -> nn.Module:
    """The module ``package.module:function()`` returns (the current directory is
    searched too, as ``python -m`` would).

    Examples
    --------
    >>> call_factory("collections:OrderedDict")
    Traceback (most recent call last):
    ...
    actstore.errors.ModelError: collections:OrderedDict returned OrderedDict, not a torch nn.Module
    """
    module_name, _, function_name = target.partition(":")
    added = os.getcwd() not in sys.path
    if added:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import error of the user's code: say which and why
        raise ModelError(f"cannot import {module_name} for {target}: {exc}") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise ModelError(f"{module_name} has no function {function_name} (from {target})")
    try:
        model = factory()
    except Exception as exc:
        raise ModelError(f"{target}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{target} returned {type(model).__name__}, not a torch nn.Module")
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file of tensors (``weights_only``).

    Examples
    --------
    >>> torch.save({"w": torch.zeros(2)}, tmp / "w.pt")
    >>> read_state_dict(tmp / "w.pt")["w"].tolist()
    [0.0, 0.0]
    >>> read_state_dict(tmp / "none.pt")
    Traceback (most recent call last):
    ...
    actstore.errors.ModelError: .../none.pt: no such weights file
    """
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and pickle raise many kinds
        raise ModelError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return state


def read_vocabulary(path: Path) -> Vocabulary:
    """The vocabulary JSON at ``path``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ModelError(f"{path}: no such vocabulary file") from None
    except ValueError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    return Vocabulary.from_json(data, str(path))


def check_vocabulary(model: nn.Module, size: int, where: str) -> None:
    """Refuse a vocabulary whose size no embedding of ``model`` has (a model without
    ``nn.Embedding`` is not checked)."""
    embeddings = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    if embeddings and all(m.num_embeddings != size for _, m in embeddings):
        name, module = embeddings[0]
        raise ModelError(
            f"vocabulary mismatch: {where} has {size} entries but the model's embedding "
            f"{name or 'model'} has {module.num_embeddings} rows"
        )


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with fresh weights: every submodule's own ``reset_parameters``, seeded,
    in module order (the global random state is left as it was).

    Examples
    --------
    >>> a = reinitialise(nn.GRU(2, 3), 0).weight_hh_l0
    >>> bool(torch.equal(a, reinitialise(nn.GRU(2, 3), 0).weight_hh_l0))
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return model.eval()


def site_prefix(text: str) -> str:
    """A model name usable as a site prefix (letters, digits, ``_.-``).

    Examples
    --------
    >>> site_prefix("my lm (v2)")
    'my-lm-v2'
    """
    cleaned = _UNSAFE.sub("-", text).strip("-.")
    return cleaned or "model"
