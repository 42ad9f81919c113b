"""``actstore train``: fit a reference model on a store's sentences, one epoch at a time.

Each epoch shuffles the training sentences (seeded by the seed and the epoch), takes
Adam steps on batches of similar length (gradients clipped to norm 5), then scores the
dev sentences. A better dev loss saves the model as the checkpoint ``DIR``; every
epoch saves the run's state (weights, optimiser, history) to ``DIR.training``, so a
killed run rerun with the same command continues after its last finished epoch and
ends with the same weights, bit for bit (on the same device and thread count), as one
that never stopped. A run stops after ``epochs`` or when the dev loss has not improved
for ``patience`` epochs. See ``docs/RECURRENT.md``.

The losses: language models, the mean cross-entropy of each next token (the last word
or character of a sentence predicts ``</s>``); IMAGINET, ``alpha·L_T + (1-alpha)·L_V``
with ``L_T`` that cross-entropy on the textual pathway and ``L_V`` the mean squared
error of the visual pathway's image vector.

Examples
--------
>>> from extractors.train_verbs import TrainOptions, TrainTarget
>>> store.close()
>>> report = train(TrainTarget("lstm-lm", store_path, tmp / "lm", quiet=True),
...                TrainOptions(split="*", epochs=1, hidden_size=8, embedding_dim=8))
>>> report.epochs_run, load_checkpoint(tmp / "lm").config["training"]["epochs"]
(1, 1)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import actstore
from actstore.devices import resolve_device
from actstore.errors import ParameterError
from actstore.store import Store
from extractors.reference import build_model, load_checkpoint, save_checkpoint
from extractors.train_data import Images, dev_sentences, select_sentences, sentence_words
from extractors.train_loop import GRAD_CLIP, Data, run_epoch
from extractors.train_verbs import TrainOptions, TrainTarget
from extractors.vocab import Vocabulary

__all__ = ["TrainReport", "load_checkpoint", "train"]

STATE = "state.pt"
DEFAULT_SIZES = {"lstm-lm": 64, "char-lm": 64, "imaginet": 1024}


@dataclass
class TrainReport:
    """What a run did; :meth:`summary` is the line ``actstore train`` prints.

    Examples
    --------
    >>> TrainReport("lstm-lm", Path("lm"), 3, 2, 4.5, 10, 2000, "cpu").summary()
    'lstm-lm: 3 epochs, best 2 (dev loss 4.5000, perplexity 90.02) on 2,000 sentences ...'
    """

    architecture: str
    out: Path
    epochs_run: int
    best_epoch: int
    dev_loss: float
    new_epochs: int
    n_train: int
    device: str
    alpha: float = 1.0  # the weight of the next-token loss (1 for the language models)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dev_perplexity(self) -> float | None:
        """``exp(dev loss)`` when the loss is the next-token cross-entropy alone."""
        return math.exp(self.dev_loss) if self.alpha == 1 else None

    def summary(self) -> str:
        """One line for the command line."""
        ppl = f", perplexity {self.dev_perplexity:.2f}" if self.dev_perplexity else ""
        done = "nothing to do: " if self.new_epochs == 0 else ""
        return (
            f"{done}{self.architecture}: {self.epochs_run} epochs, best {self.best_epoch} "
            f"(dev loss {self.dev_loss:.4f}{ppl}) on {self.n_train:,} sentences on "
            f"{self.device}; checkpoint {self.out}"
        )


def state_folder(out: Path) -> Path:
    """Where a run into ``out`` keeps its state: ``out.training`` beside it."""
    return out.with_name(out.name + ".training")


def train(target: TrainTarget, options: TrainOptions) -> TrainReport:
    """Train ``target.architecture`` on ``target.store``'s sentences into ``target.out``.

    Resumes a run whose state lies in ``DIR.training`` if the settings match (``epochs``,
    ``patience``, ``device`` and ``threads`` may change; a run stopped early goes on
    with a larger ``patience``); ``overwrite`` starts afresh.
    """
    target.check()
    options.check(target.architecture)
    device = resolve_device(options.device)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    out, states = Path(target.out), state_folder(Path(target.out))
    if options.overwrite:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(states, ignore_errors=True)
    state = _read_state(states / STATE)
    if state is None and out.exists() and any(out.iterdir()):
        raise ParameterError(
            "out", f"{out} already holds files and no run to resume; --overwrite replaces them"
        )
    with actstore.open(target.store) as store:
        vocab = Vocabulary.from_json(state["vocab"]) if state else None
        data = prepare(store, target.architecture, options, vocab)
    settings = _settings(target.architecture, options, data)
    if state is not None:
        _check_same(settings, state["settings"], states)
    torch.manual_seed(options.seed)
    model = build_model(
        target.architecture, len(data.vocab), pad=data.vocab.pad, **settings["model"]
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "loss": math.inf}
    best_weights: dict[str, Tensor] | None = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, best = state["history"], state["best"]
        best_weights = state["best_model"] or _weights(model)  # None: the last epoch's
        _say(target, f"resuming {states} after epoch {len(history)}")
    stopped = len(history) - best["epoch"] >= options.patience  # (a larger one goes on)
    first = len(history) + 1
    for epoch in range(first, options.epochs + 1):
        if stopped:
            break
        row = run_epoch(model, optimizer, data, options, epoch, device, quiet=target.quiet)
        history.append(row)
        if row["dev_loss"] < best["loss"]:
            best, best_weights = {"epoch": epoch, "loss": row["dev_loss"]}, _weights(model)
            _export(out, model, data, options, settings, history, best, stopped=False)
        stopped = epoch - best["epoch"] >= options.patience
        kept = None if best["epoch"] == epoch else best_weights
        _save_state(states, model, optimizer, data, settings, history, best, kept, stopped)
        _say(target, _epoch_line(settings["alpha"], row, options.epochs, best))
    new_epochs = max(0, len(history) - first + 1)
    if best_weights is None:
        raise ParameterError("epochs", "no epoch finished, so there is no checkpoint")
    model.load_state_dict(best_weights)
    _export(out, model, data, options, settings, history, best, stopped)
    report = TrainReport(
        target.architecture, out, len(history), best["epoch"], best["loss"], new_epochs,
        len(data.train), str(device), settings["alpha"], history,
    )  # fmt: skip
    if not target.quiet:
        print(report.summary())
    return report


def prepare(
    store: Store, architecture: str, options: TrainOptions, vocab: Vocabulary | None
) -> Data:
    """The sentences ``options`` choose, encoded with ``vocab`` (built from the training
    sentences' words when None), with their image vectors for IMAGINET."""
    from extractors.reference import LEVELS

    chosen = select_sentences(store, options.split, options.where)
    train_ids, dev_ids, dev_how = dev_sentences(store, chosen, options.dev_split, options.dev_where)
    train_words = sentence_words(store, train_ids)
    dev_words = sentence_words(store, dev_ids)
    if vocab is None:
        vocab = Vocabulary.build(
            train_words,
            level=LEVELS[architecture],
            lowercase=not options.cased,
            min_count=options.min_count,
            max_size=options.max_vocab,
        )
    encode = vocab.encode_sentence
    train = [np.asarray(encode(w)[0], np.int64) for w in train_words]
    dev = [np.asarray(encode(w)[0], np.int64) for w in dev_words]
    train_images = dev_images = None
    if options.images is not None:  # read (and checked) with alpha 1 too: image_dim
        images = Images.read(options.images, options.image_ids, store)
        train_images = images.vectors_for(train_ids, "training")
        dev_images = images.vectors_for(dev_ids, "dev")
    corpora = store.columns(["corpus"], table="sentences").column("corpus").to_pylist()
    digest = hashlib.sha256()
    for part in (train_ids, dev_ids, *train, *dev, train_images, dev_images):
        if part is not None:
            digest.update(np.ascontiguousarray(part).tobytes())
    provenance = {
        "store": store.location,
        "corpus": sorted({str(corpora[i]) for i in train_ids}),
        "split": options.split,
        "where": options.where,
        "dev": dev_how,
        "n_train_sentences": len(train),
        "n_dev_sentences": len(dev),
        "train_tokens": int(sum(len(s) for s in train)),
    }
    return Data(vocab, train, dev, train_images, dev_images, provenance, digest.hexdigest())


def _settings(architecture: str, options: TrainOptions, data: Data) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    size = DEFAULT_SIZES[architecture]
    model: dict[str, Any] = {
        "embedding_dim": options.embedding_dim or size,
        "hidden_size": options.hidden_size or size,
        "num_layers": options.layers,
    }
    if architecture == "imaginet":
        dim = data.train_images.shape[1] if data.train_images is not None else 1
        model.update(image_dim=int(dim), image_activation=options.image_activation)
    else:
        model["dropout"] = options.dropout
    return {
        "architecture": architecture,
        "model": model,
        "data": data.digest,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "seed": options.seed,
        "alpha": options.alpha if architecture == "imaginet" else 1.0,
    }


def _check_same(now: dict[str, Any], then: dict[str, Any], states: Path) -> None:
    if now == then:
        return
    changed = [f"{k}: {then.get(k)} -> {now.get(k)}" for k in sorted(now) if now[k] != then.get(k)]
    changed = [c if not c.startswith("data:") else "the training or dev sentences" for c in changed]
    raise ParameterError(
        "out",
        f"{states} holds a run with other settings ({'; '.join(changed)}); rerun it as it "
        "was, choose another --out, or --overwrite",
    )


def _weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _save_state(
    states: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Data,
    settings: dict[str, Any],
    history: list[dict[str, Any]],
    best: dict[str, Any],
    best_weights: dict[str, Tensor] | None,
    stopped: bool,
) -> None:
    """The run after an epoch, written to a temporary file then renamed into place
    (``best_weights`` None: the best epoch is this one)."""
    state = {
        "settings": settings,
        "vocab": data.vocab.to_json(),
        "history": history,
        "best": best,
        "best_model": best_weights,
        "stopped": stopped,
        "model": _weights(model),
        "optimizer": optimizer.state_dict(),
    }
    states.mkdir(parents=True, exist_ok=True)
    partial = states / f"{STATE}.partial-{os.getpid()}"
    torch.save(state, partial)
    os.replace(partial, states / STATE)


def _read_state(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: say so, in one line
        raise ParameterError(
            "out", f"{path}: cannot read the saved run ({exc}); --overwrite starts afresh"
        ) from None
    return state


def _export(
    out: Path,
    model: nn.Module,
    data: Data,
    options: TrainOptions,
    settings: dict[str, Any],
    history: list[dict[str, Any]],
    best: dict[str, Any],
    stopped: bool,
) -> None:
    """Save ``model`` as the checkpoint ``out``, with how it was trained."""
    training = {
        **data.provenance,
        "epochs": best["epoch"],
        "epochs_run": len(history),
        "max_epochs": options.epochs,
        "stopped_early": stopped,
        "patience": options.patience,
        "dev_loss": best["loss"],
        **({"dev_perplexity": math.exp(best["loss"])} if settings["alpha"] == 1 else {}),
        "seed": options.seed,
        "lr": options.lr,
        "batch_size": options.batch_size,
        "optimizer": "adam",
        "grad_clip": GRAD_CLIP,
        "min_count": options.min_count,
        "max_vocab": options.max_vocab,
        "history": history,
        "actstore_version": actstore.__version__,
        "torch_version": torch.__version__,
    }
    if settings["architecture"] == "imaginet":
        training.update(alpha=options.alpha, images=str(options.images) if options.images else None)
    json.dumps(training)  # fails here, not half-way through writing, if not serialisable
    save_checkpoint(out, model, data.vocab, {"training": training})


def _epoch_line(alpha: float, row: dict[str, Any], epochs: int, best: dict[str, Any]) -> str:
    ppl = f" (perplexity {math.exp(row['dev_loss']):.2f})" if alpha == 1 else ""
    mark = ", best so far" if best["epoch"] == row["epoch"] else ""
    return (
        f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f}, dev loss "
        f"{row['dev_loss']:.4f}{ppl}, {row['tokens_per_second']:,.0f} tokens/s{mark}"
    )


def _say(target: TrainTarget, line: str) -> None:
    if not target.quiet:
        print(line, file=sys.stderr, flush=True)
