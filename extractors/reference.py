"""The papers' reference models and their checkpoints.

Three architectures, each called as ``model(ids)`` on right-padded ids ``(batch,
time)``, batch first:

- ``lstm-lm``, :class:`WordLSTMLM`: a word-level LSTM language model, 64-dimensional
  embeddings and hidden state by default as in the LSTM probing paper (layers, sizes
  and dropout configurable); each step predicts the next word, the last one ``</s>``.
- ``char-lm``, :class:`CharLSTMLM`: the same over characters (the words joined by one
  space).
- ``imaginet``, :class:`~extractors.imaginet.Imaginet`: two steep GRUs over shared
  embeddings, 1024 units as in the paper.

A checkpoint is a folder of three files: ``config.json`` (architecture, level,
lowercase, ``batch_first``, the model's hyperparameters under ``model`` and how it was
trained under ``training``), ``vocab.json`` (:class:`~extractors.vocab.Vocabulary`)
and ``model.safetensors``. :func:`save_checkpoint` writes it whole or not at all;
:func:`load_checkpoint` reads it back, refusing in one line what is not one. See
``docs/RECURRENT.md``.

Examples
--------
>>> import torch
>>> vocab = Vocabulary.build([["a", "b", "a"]], level="word", min_count=1)
>>> _ = torch.manual_seed(0)
>>> model = build_model("lstm-lm", len(vocab), hidden_size=8, embedding_dim=8)
>>> save_checkpoint(tmp / "lm", model, vocab, {"training": {"seed": 0}})
>>> loaded = load_checkpoint(tmp / "lm")
>>> loaded.architecture, loaded.config["model"]["hidden_size"], loaded.model.training
('lstm-lm', 8, False)
>>> ids = torch.tensor([vocab.encode(["a", "b"])])
>>> bool(torch.equal(loaded.model(ids), model.eval()(ids)))
True
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from actstore.errors import ModelError
from actstore.names import did_you_mean
from extractors.imaginet import Imaginet
from extractors.imaginet import SteepGRU as SteepGRU  # re-exported: the reference models
from extractors.vocab import Level, Vocabulary

CONFIG, VOCAB, WEIGHTS = "config.json", "vocab.json", "model.safetensors"
FILES = (CONFIG, VOCAB, WEIGHTS)
FORMAT = 1


class LSTMLanguageModel(nn.Module):
    """An LSTM language model: embeddings, ``lstm`` (``nn.LSTM``, batch first), a
    linear layer to the next token's logits; ``model(ids)`` gives ``(batch, time,
    vocab)`` logits. Dropout (if any) acts on the embeddings, between LSTM layers and
    on the states before the output layer."""

    architecture = ""
    level: Level = "word"

    def __init__(
        self,
        n_vocab: int,
        *,
        embedding_dim: int = 64,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        pad: int = 0,
    ) -> None:
        super().__init__()
        self.pad = pad
        self.embedding = nn.Embedding(n_vocab, embedding_dim, padding_idx=pad)
        self.dropout = nn.Dropout(dropout)
        between = dropout if num_layers > 1 else 0.0
        self.lstm = nn.LSTM(
            embedding_dim, hidden_size, num_layers, batch_first=True, dropout=between
        )
        self.output = nn.Linear(hidden_size, n_vocab)

    def hyperparameters(self) -> dict[str, Any]:
        """What rebuilds this model beside its vocabulary (``config.json``'s ``model``)."""
        return {
            "embedding_dim": self.embedding.embedding_dim,
            "hidden_size": self.lstm.hidden_size,
            "num_layers": self.lstm.num_layers,
            "dropout": self.dropout.p,
        }

    def forward(self, ids: Tensor) -> Tensor:
        """Next-token logits for every step of ``ids``."""
        states, _ = self.lstm(self.dropout(self.embedding(ids)))
        logits: Tensor = self.output(self.dropout(states))
        return logits


class WordLSTMLM(LSTMLanguageModel):
    """The word-level LSTM language model (``lstm-lm``).

    Examples
    --------
    >>> model = WordLSTMLM(100)
    >>> tuple(model(torch.tensor([[5, 6, 7]])).shape), model.lstm.hidden_size
    ((1, 3, 100), 64)
    """

    architecture = "lstm-lm"
    level: Level = "word"


class CharLSTMLM(LSTMLanguageModel):
    """The character-level LSTM language model (``char-lm``).

    Examples
    --------
    >>> CharLSTMLM(60, hidden_size=32).hyperparameters()["hidden_size"]
    32
    """

    architecture = "char-lm"
    level: Level = "char"


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "lstm-lm": WordLSTMLM,
    "char-lm": CharLSTMLM,
    "imaginet": Imaginet,
}
LEVELS: dict[str, Level] = {"lstm-lm": "word", "char-lm": "char", "imaginet": "word"}


def check_architecture(name: str, where: str = "architecture") -> str:
    """``name`` if it is a reference architecture; else one line listing them.

    Examples
    --------
    >>> check_architecture("lstm_lm")
    Traceback (most recent call last):
    ...
    actstore.errors.ModelError: architecture: unknown architecture 'lstm_lm' (did you mean ...
    """
    if name not in ARCHITECTURES:
        hint = did_you_mean(str(name), ARCHITECTURES)
        raise ModelError(
            f"{where}: unknown architecture {name!r}{f' ({hint})' if hint else ''}; "
            f"architectures: {', '.join(ARCHITECTURES)}"
        )
    return name


def build_model(
    architecture: str, n_vocab: int, *, pad: int = 0, **hyperparameters: Any
) -> nn.Module:
    """A fresh (randomly initialised) reference model; hyperparameters not given take
    the architecture's defaults.

    Examples
    --------
    >>> build_model("imaginet", 50, image_dim=8, hidden_size=16).hyperparameters()["embedding_dim"]
    1024
    >>> build_model("lstm-lm", 50, layers=2)
    Traceback (most recent call last):
    ...
    actstore.errors.ModelError: lstm-lm takes no hyperparameter 'layers'; it takes dropout, ...
    """
    cls = ARCHITECTURES[check_architecture(architecture)]
    known = _hyperparameter_names(architecture)
    for name in hyperparameters:
        if name not in known:
            raise ModelError(
                f"{architecture} takes no hyperparameter {name!r}; it takes {', '.join(known)}"
            )
    if architecture == "imaginet" and "image_dim" not in hyperparameters:
        raise ModelError("imaginet needs image_dim, the length of the image vectors")
    try:
        return cls(n_vocab, pad=pad, **hyperparameters)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{architecture}: cannot build the model: {exc}") from None


def _hyperparameter_names(architecture: str) -> list[str]:
    import inspect

    signature = inspect.signature(ARCHITECTURES[architecture].__init__)
    return sorted(p for p in signature.parameters if p not in ("self", "n_vocab", "pad"))


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its vocabulary, its configuration.

    Examples
    --------
    >>> vocab = Vocabulary.build([list("ab")], level="char", min_count=1)
    >>> save_checkpoint(tmp / "c", build_model("char-lm", len(vocab)), vocab, {})
    >>> load_checkpoint(tmp / "c").level
    'char'
    """

    model: nn.Module
    vocab: Vocabulary
    config: dict[str, Any]

    @property
    def architecture(self) -> str:
        """``lstm-lm``, ``char-lm`` or ``imaginet``."""
        return str(self.config["architecture"])

    @property
    def level(self) -> Level:
        """``word`` or ``char``: what one step of the model reads."""
        return self.vocab.level


def checkpoint_config(model: nn.Module, vocab: Vocabulary, extra: dict[str, Any]) -> dict[str, Any]:
    """``config.json`` for ``model``: what the model and vocabulary say, plus ``extra``
    (such as ``training``); a key of ``extra`` that contradicts them is refused.

    Examples
    --------
    >>> vocab = Vocabulary.build([["a"]], level="word", min_count=1)
    >>> config = checkpoint_config(WordLSTMLM(len(vocab)), vocab, {"training": {"seed": 1}})
    >>> config["architecture"], config["level"], config["batch_first"], config["training"]
    ('lstm-lm', 'word', True, {'seed': 1})
    """
    if not isinstance(model, (LSTMLanguageModel, Imaginet)):
        raise ModelError(
            f"{type(model).__name__} is not a reference model; models: {', '.join(ARCHITECTURES)}"
        )
    architecture = model.architecture
    if LEVELS[architecture] != vocab.level:
        raise ModelError(
            f"{architecture} reads {LEVELS[architecture]}s, the vocabulary holds {vocab.level}s"
        )
    config: dict[str, Any] = {
        "format": FORMAT,
        "architecture": architecture,
        "level": vocab.level,
        "lowercase": vocab.lowercase,
        "batch_first": True,
        "model": model.hyperparameters(),
    }
    for key, value in extra.items():
        if key in config and config[key] != value:
            raise ModelError(f"config {key!r} is {config[key]!r} for this model, not {value!r}")
        config[key] = value
    return config


def save_checkpoint(
    folder: str | Path, model: nn.Module, vocab: Vocabulary, config: dict[str, Any]
) -> None:
    """Write ``model`` with its vocabulary and configuration to ``folder``, atomically:
    the files go to a temporary folder beside it, renamed into place when complete (a
    checkpoint already there is replaced; any other folder is refused).

    ``config`` adds to what the model and vocabulary say (:func:`checkpoint_config`),
    typically ``{"training": {...}}``.

    Examples
    --------
    >>> vocab = Vocabulary.build([["a"]], level="word", min_count=1)
    >>> save_checkpoint(tmp / "m", WordLSTMLM(len(vocab)), vocab, {})
    >>> sorted(p.name for p in (tmp / "m").iterdir())
    ['config.json', 'model.safetensors', 'vocab.json']
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    full = checkpoint_config(model, vocab, config)
    if folder.exists() and not is_checkpoint(folder) and any(folder.iterdir()):
        raise ModelError(f"{folder} exists and is not a checkpoint folder; choose another")
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(partial / WEIGHTS), metadata={"format": "pt"})
        for name, data in ((CONFIG, full), (VOCAB, vocab.to_json())):
            (partial / name).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        for name in FILES:
            with open(partial / name, "rb") as handle:
                os.fsync(handle.fileno())
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(folder, old)
            os.rename(partial, folder)
            shutil.rmtree(old)
        else:
            os.rename(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def is_checkpoint(folder: str | Path) -> bool:
    """Whether ``folder`` holds a checkpoint's three files (their contents unchecked).

    Examples
    --------
    >>> is_checkpoint(tmp)
    False
    """
    return all((Path(folder) / name).is_file() for name in FILES)


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """The checkpoint in ``folder``, its model in eval mode on ``device``.

    Raises :class:`~actstore.errors.ModelError` (one line) for a folder that is not a
    checkpoint, an unknown architecture, a vocabulary that does not fit the model, or
    weights missing, extra or of the wrong shape.

    Examples
    --------
    >>> load_checkpoint(tmp)
    Traceback (most recent call last):
    ...
    actstore.errors.ModelError: ... is not a checkpoint folder: no config.json (a checkpoint ...
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder} is not a checkpoint folder: no such folder")
    for name in FILES:
        if not (folder / name).is_file():
            raise ModelError(
                f"{folder} is not a checkpoint folder: no {name} (a checkpoint holds "
                f"{', '.join(FILES)})"
            )
    config = _read_json(folder / CONFIG)
    if not isinstance(config, dict) or "architecture" not in config:
        raise ModelError(f"{folder / CONFIG}: not a checkpoint configuration (no 'architecture')")
    architecture = check_architecture(config["architecture"], str(folder / CONFIG))
    vocab = Vocabulary.from_json(_read_json(folder / VOCAB), str(folder / VOCAB))
    if LEVELS[architecture] != vocab.level or config.get("level", vocab.level) != vocab.level:
        raise ModelError(
            f"{folder / VOCAB}: a {vocab.level}-level vocabulary, but {architecture} reads "
            f"{LEVELS[architecture]}s"
        )
    hyper = config.get("model", {})
    if not isinstance(hyper, dict):
        raise ModelError(f"{folder / CONFIG}: 'model' must be an object of hyperparameters")
    try:
        model = build_model(architecture, len(vocab), pad=vocab.pad, **hyper)
    except ModelError as exc:
        raise ModelError(f"{folder / CONFIG}: {exc}") from None
    model.load_state_dict(_read_weights(folder / WEIGHTS, model.state_dict()))
    model.eval()
    return Checkpoint(model.to(device), vocab, config)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None


def _read_weights(path: Path, expected: dict[str, Tensor]) -> dict[str, Tensor]:
    """The tensors of ``path``, checked against the model's names and shapes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a safetensors file ({exc})") from None
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    wrong = [
        f"{k} {tuple(weights[k].shape)} (the model has {tuple(v.shape)})"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
    if extra:
        problems.append(f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else ""))
    if wrong:
        problems.append(f"wrong shape {', '.join(wrong[:2])}" + (" ..." if len(wrong) > 2 else ""))
    if problems:
        raise ModelError(f"{path}: weights do not fit the configured model: {'; '.join(problems)}")
    return weights
