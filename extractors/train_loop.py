"""One epoch of training and the dev loss, for :mod:`extractors.train`.

Batches of similar length (:func:`~extractors.train_data.plan_batches`, shuffled by
the seed and the epoch), Adam steps with gradients clipped to norm 5, the losses of
:func:`batch_loss` summed over the epoch. Dropout draws from torch's generator seeded
by the seed and the epoch, so a resumed run draws what an uninterrupted one would.

Examples
--------
>>> combined({"textual": 6.0, "tokens": 3.0}, 1.0)
2.0
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from actstore.progress import bar
from extractors.imaginet import Imaginet
from extractors.train_data import IGNORE, lm_batch, plan_batches
from extractors.train_verbs import TrainOptions
from extractors.vocab import Vocabulary

GRAD_CLIP = 5.0


@dataclass
class Data:
    """The encoded training and dev sentences (and image vectors), ready to batch."""

    vocab: Vocabulary
    train: list[np.ndarray]
    dev: list[np.ndarray]
    train_images: np.ndarray | None
    dev_images: np.ndarray | None
    provenance: dict[str, Any]
    digest: str


def batch_loss(
    model: nn.Module, ids: Tensor, targets: Tensor, images: Tensor | None, alpha: float
) -> tuple[Tensor, dict[str, float]]:
    """The loss of one batch to minimise, and its sums for reporting: ``textual``
    (cross-entropy summed over ``tokens``), ``visual`` (squared error summed over
    ``values``)."""
    sums: dict[str, float] = {}
    loss = ids.new_zeros((), dtype=torch.float32)
    if isinstance(model, Imaginet):
        embedded = model.embedding(ids)
        if alpha < 1 and images is not None:
            error = functional.mse_loss(model.image(embedded, ids), images, reduction="sum")
            sums.update(visual=float(error.detach()), values=float(images.numel()))
            loss = loss + (1 - alpha) * error / images.numel()
        logits = model.words(embedded) if alpha > 0 else None
    else:
        logits = model(ids)
    if logits is not None:
        total = functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
            reduction="sum",
        )  # fmt: skip
        count = int((targets != IGNORE).sum())
        sums.update(textual=float(total.detach()), tokens=float(count))
        loss = loss + alpha * total / count
    return loss, sums


def combined(sums: dict[str, float], alpha: float) -> float:
    """``alpha·L_T + (1-alpha)·L_V`` from summed errors (see :func:`batch_loss`).

    Examples
    --------
    >>> combined({"textual": 10.0, "tokens": 5.0, "visual": 4.0, "values": 8.0}, 0.5)
    1.25
    """
    loss = 0.0
    if sums.get("tokens"):
        loss += alpha * sums["textual"] / sums["tokens"]
    if sums.get("values"):
        loss += (1 - alpha) * sums["visual"] / sums["values"]
    return loss


def _batches(
    data: Data, dev: bool, batch_size: int, rng: np.random.Generator | None, device: torch.device
) -> Iterator[tuple[Tensor, Tensor, Tensor | None, int]]:
    sequences = data.dev if dev else data.train
    images = data.dev_images if dev else data.train_images
    lengths = np.asarray([len(s) for s in sequences])
    for chosen in plan_batches(lengths, batch_size, rng):
        ids, targets = lm_batch([sequences[i] for i in chosen], data.vocab.pad, data.vocab.eos)
        vectors = None if images is None else torch.from_numpy(images[chosen]).to(device)
        yield ids.to(device), targets.to(device), vectors, int(lengths[chosen].sum())


def run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Data,
    options: TrainOptions,
    epoch: int,
    device: torch.device,
    quiet: bool = False,
) -> dict[str, Any]:
    """One epoch of training then the dev loss: the epoch's row of the history."""
    alpha = 1.0 if not isinstance(model, Imaginet) else options.alpha
    rng = np.random.default_rng([options.seed, epoch])
    torch.manual_seed(options.seed * 100_003 + epoch)  # dropout's draws, the same on resuming
    model.train()
    totals: dict[str, float] = {}
    n_tokens = sum(len(s) for s in data.train)
    start = time.perf_counter()
    desc = f"epoch {epoch}/{options.epochs}"
    with bar(
        n_tokens, unit="tok", desc=desc, unit_scale=True, enabled=False if quiet else None
    ) as shown:
        for ids, targets, images, tokens in _batches(data, False, options.batch_size, rng, device):
            loss, sums = batch_loss(model, ids, targets, images, alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            for key, value in sums.items():
                totals[key] = totals.get(key, 0.0) + value
            shown.update(tokens)
            shown.set_postfix_str(f"loss {combined(totals, alpha):.3f}", refresh=False)
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch,
        "train_loss": combined(totals, alpha),
        "dev_loss": evaluate(model, data, options.batch_size, alpha, device),
        "tokens_per_second": n_tokens / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
    }


def evaluate(
    model: nn.Module, data: Data, batch_size: int, alpha: float, device: torch.device
) -> float:
    """The dev loss: summed over every dev sentence, then averaged as in training."""
    model.eval()
    totals: dict[str, float] = {}
    with torch.no_grad():
        for ids, targets, images, _ in _batches(data, True, batch_size, None, device):
            for key, value in batch_loss(model, ids, targets, images, alpha)[1].items():
                totals[key] = totals.get(key, 0.0) + value
    return combined(totals, alpha)
