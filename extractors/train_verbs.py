"""The ``train`` verb, declared light: no numpy or torch at import.

``actstore`` finds it through the entry point ``train = "extractors.train_verbs:TRAIN"``
and imports :mod:`extractors.train` only when the verb runs. :class:`TrainTarget` says
what to train and where it goes, :class:`TrainOptions` how; the library takes the same
two (:func:`extractors.train.train`). See ``docs/RECURRENT.md``.

Examples
--------
>>> TRAIN.name, [p.__name__ for p in TRAIN.params]
('train', ['TrainTarget', 'TrainOptions'])
>>> TRAIN.build(architecture="lstm-lm", store="s", out="lm", epochs=3)[1].epochs
3
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from actstore.devices import check_device
from actstore.errors import ParameterError
from actstore.verbs import Verb, option

# the names of extractors.reference.ARCHITECTURES, kept here so that --help needs no torch
ARCHITECTURES = ("lstm-lm", "char-lm", "imaginet")
ALL_SPLITS = "*"


@dataclass(frozen=True)
class TrainTarget:
    """What ``actstore train`` trains, on which store, into which folder."""

    architecture: str = option(positional=True, help="lstm-lm, char-lm or imaginet")
    store: Path = option(positional=True, help="store whose sentences train the model")
    out: Path = option(
        short="-o", metavar="DIR", help="checkpoint folder for the best epoch; DIR.training "
        "beside it keeps what resumes the run (rerun the same command after a kill)"
    )  # fmt: skip
    quiet: bool = option(False, short="-q", help="no progress bar, epoch lines or summary")

    def check(self) -> None:
        """Refuse an architecture there is not.

        Examples
        --------
        >>> TrainTarget("lstm", Path("s"), Path("o")).check()
        Traceback (most recent call last):
        ...
        actstore.errors.ParameterError: architecture must be lstm-lm, char-lm or imaginet, got ...
        """
        if self.architecture not in ARCHITECTURES:
            raise ParameterError(
                "architecture",
                f"must be {', '.join(ARCHITECTURES[:-1])} or {ARCHITECTURES[-1]}, "
                f"got {self.architecture!r}",
            )


@dataclass(frozen=True)
class TrainOptions:
    """How a reference model is trained; see ``docs/RECURRENT.md``.

    Sizes left unset take the architecture's defaults (64 for the LSTM language models
    as in the LSTM probing paper, 1024 for IMAGINET as in its paper). The dev sentences
    are ``--dev-split``/``--dev-where`` if given, else the split ``dev`` when it shares
    no sentence with the training ones, else every tenth training sentence.

    Examples
    --------
    >>> TrainOptions(alpha=1.5).check("imaginet")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: alpha must be in [0, 1], got 1.5
    """

    split: str = option("train", help="split of the training sentences ('*': any split)")
    where: str | None = option(
        None, help="SQL condition over tokens (and sentences' sent_id, text, n_words): "
        "train on the sentences holding a matching word"
    )  # fmt: skip
    dev_split: str | None = option(None, help="split of the dev sentences (default: dev)")
    dev_where: str | None = option(None, help="SQL condition choosing the dev sentences")
    epochs: int = option(10, help="most epochs (a rerun with more continues the run)")
    patience: int = option(2, help="stop after this many epochs without a better dev loss")
    batch_size: int = option(32, help="sentences per batch")
    lr: float = option(1e-3, help="Adam's learning rate")
    seed: int = option(0, help="seed of the initial weights, order of batches and dropout")
    device: str = option("auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    threads: int | None = option(
        None, help="torch's CPU threads (default: torch's choice; 1 is fastest for small "
        "models on a busy machine)"
    )  # fmt: skip
    embedding_dim: int | None = option(None, help="embedding size (64; imaginet 1024)")
    hidden_size: int | None = option(None, help="recurrent units per layer (64; imaginet 1024)")
    layers: int = option(1, help="recurrent layers")
    dropout: float = option(0.0, help="dropout of the language models")
    min_count: int = option(2, help="rarer words (characters) become <unk>")
    max_vocab: int | None = option(None, help="most vocabulary entries, specials included")
    cased: bool = option(False, help="keep case (default: lowercase words and characters)")
    images: Path | None = option(
        None, metavar="FILE", help="imaginet: image vectors, a Parquet file (sentence_id or "
        "sent_id, vector) or a .npy matrix with --image-ids"
    )  # fmt: skip
    image_ids: Path | None = option(
        None, metavar="FILE", help="the .npy matrix's sentences, one a line under a header "
        "line sentence_id or sent_id (default: the .npy file's name with .txt)"
    )  # fmt: skip
    alpha: float = option(0.1, help="imaginet: weight of the textual loss (0 VISUAL, 1 TEXTUAL)")
    image_activation: Literal["clip", "linear"] = option(
        "clip", help="imaginet: clip predicted image vectors to [0, 5] (the paper) or not"
    )
    overwrite: bool = option(False, help="start afresh, replacing DIR and DIR.training")

    def check(self, architecture: str) -> None:
        """Refuse values no training can take (each error names its parameter)."""
        positive = ("epochs", "patience", "batch_size", "layers", "min_count")
        for name in (*positive, "embedding_dim", "hidden_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ParameterError(name, f"must be at least 1, got {value}")
        if not self.lr > 0:
            raise ParameterError("lr", f"must be positive, got {self.lr}")
        if self.seed < 0:
            raise ParameterError("seed", f"must be >= 0, got {self.seed}")
        if not 0 <= self.dropout < 1:
            raise ParameterError("dropout", f"must be in [0, 1), got {self.dropout}")
        if not 0 <= self.alpha <= 1:
            raise ParameterError("alpha", f"must be in [0, 1], got {self.alpha}")
        if self.max_vocab is not None and self.max_vocab < 4:
            raise ParameterError("max_vocab", f"must be at least 4, got {self.max_vocab}")
        check_device(self.device, "device")
        if architecture == "imaginet":
            if self.images is None and self.alpha < 1:
                raise ParameterError(
                    "images", "is needed by imaginet (a file of image vectors), unless alpha is 1"
                )
            if self.image_ids is not None and (self.images is None or self.images.suffix != ".npy"):
                raise ParameterError("image_ids", "goes with a .npy file of --images")
        elif self.images is not None or self.image_ids is not None:
            raise ParameterError("images", f"are for imaginet, not {architecture}")


TRAIN = Verb(
    "train",
    "train a reference model (word or character LSTM language model, IMAGINET) on the "
    "store's sentences",
    "actstore train lstm-lm ewt.actstore --out runs/lm --split train --epochs 10",
    (TrainTarget, TrainOptions),
    "extractors.train:train",
)
