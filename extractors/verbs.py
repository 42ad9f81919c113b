"""The ``extract`` verb, declared light: no numpy, torch or transformers at import.

``actstore`` finds it through the entry point ``extract = "extractors.verbs:EXTRACT"``
and imports :mod:`extractors.commands` only when the verb runs. Its parameters are
:class:`ExtractTarget` (the store, ``-q``) and :class:`ExtractOptions`, which is also
what the library takes (:func:`extractors.transformer.extract`), so every default is
written once.

Examples
--------
>>> EXTRACT.name, [p.__name__ for p in EXTRACT.params]
('extract', ['ExtractTarget', 'ExtractOptions'])
>>> EXTRACT.build(store="ewt.actstore", align="first")[1].align
'first'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from actstore.errors import ParameterError
from actstore.names import DTYPES, Dtype
from actstore.verbs import StoreLocation, Verb, option

_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
AlignRule = Literal["mean", "first", "last"]
ALIGN_RULES: tuple[AlignRule, ...] = ("mean", "first", "last")
AlignChoice = Literal["auto", "mean", "first", "last"]
ALIGN_CHOICES: tuple[AlignChoice, ...] = ("auto", *ALIGN_RULES)
_FACTORY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def is_factory(model: str) -> bool:
    """Whether ``model`` names a model factory, ``package.module:function``.

    Examples
    --------
    >>> is_factory("mypackage.models:build_lm"), is_factory("runs/lm")
    (True, False)
    """
    return bool(_FACTORY.fullmatch(model))


IMAGE_MODELS = ("effnet-lite0", "efficientnet-lite0")


def is_image_model(model: str, vocab: Path | None = None) -> bool:
    """Whether ``model`` runs over the ``images`` table (:mod:`extractors.cnn`): a
    packaged image model, or a factory given no ``--vocab`` (a recurrent model's
    factory comes with its vocabulary).

    Examples
    --------
    >>> is_image_model("effnet-lite0"), is_image_model("pkg.nets:resnet")
    (True, True)
    >>> is_image_model("pkg.nets:lm", Path("vocab.json")), is_image_model("minilm")
    (False, False)
    """
    return model in IMAGE_MODELS or (is_factory(model) and vocab is None)


def is_recurrent_model(model: str) -> bool:
    """Whether ``model`` is for the recurrent extractor (:mod:`extractors.recurrent`): a
    factory (:func:`is_factory`) or a checkpoint folder, whose ``config.json`` names its
    ``architecture`` (Hugging Face folders name ``architectures``).

    Examples
    --------
    >>> is_recurrent_model("minilm"), is_recurrent_model("mypackage.models:build_lm")
    (False, True)
    """
    if is_factory(model):
        return True  # an image model's factory too: see is_image_model
    config = Path(model) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "architecture" in data


@dataclass(frozen=True)
class ExtractTarget:
    """Which store ``actstore extract`` fills, and whether it prints its summary."""

    store: StoreLocation = option(
        positional=True, help="store directory or URL (s3://...), with its corpus ingested"
    )
    quiet: bool = option(False, short="-q", help="print no summary line")
    list_sites: bool = option(
        False, help="list the sites the model offers (with their shapes) and extract nothing"
    )


@dataclass(frozen=True)
class ExtractOptions:
    """What an extraction takes; see ``docs/EXTRACTION.md``.

    ``batch_tokens`` defaults to 1024 on CPU (cache-sized) and 16384 on CUDA for
    transformers, 4096 and 65536 for recurrent models; ``max_length`` to the model's
    limit; ``chunk_rows`` to chunks of about 8 MiB. ``shard`` is ``"I/N"``: this
    process fills the I-th of N contiguous ranges of pending chunks; ``workers`` runs N
    such processes itself (:mod:`extractors.workers`), starting one that dies again up
    to ``retries`` times. ``align="auto"`` is ``mean``
    for a transformer (set when the options are made) and left for the recurrent
    extractor to resolve (``last`` for a character-level model).

    Examples
    --------
    >>> ExtractOptions(sites="layer.6", shard="1/2").shard_index
    (1, 2)
    >>> ExtractOptions().align, ExtractOptions(model="lm.models:build").align
    ('mean', 'auto')
    >>> ExtractOptions(align="max").check()
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: align must be one of ['auto', 'mean', ...], got 'max'
    >>> ExtractOptions(workers=2, shard="1/2").check()
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: workers cannot be combined with shard 1/2: it runs every shard
    """

    model: str = option(
        "minilm", help="minilm, smollm2, a Hugging Face folder, a .gguf file, a recurrent "
        "model's checkpoint folder, or a factory package.module:function (with --weights, "
        "--vocab); over images: effnet-lite0, or a factory of a torch image model without "
        "--vocab (--weights optional)"
    )  # fmt: skip
    sites: str = option("*", help="comma-separated globs of sites to write, e.g. 'layer.*'")
    align: AlignChoice = option(
        "auto", help="how a word pools its pieces (transformers) or characters (character-"
        "level recurrent models); auto: mean for transformers, last for characters"
    )  # fmt: skip
    dtype: Dtype = option("float16", help="stored dtype")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")
    batch_tokens: int | None = option(
        None, help="padded tokens (recurrent: steps) per batch; CPU 1024, CUDA 16384 for "
        "transformers; 4096 and 65536 for recurrent models"
    )  # fmt: skip
    shard: str = option("0/1", metavar="I/N", help="fill only shard I of N (run N processes)")
    workers: int = option(
        1, metavar="N", help="run N processes at once, one shard each (one GPU each where "
        "several are visible; on CPU each with its share of the cores)"
    )  # fmt: skip
    retries: int = option(
        1, metavar="K", help="with --workers: start a shard that died again up to K times"
    )
    max_length: int | None = option(None, help="longest model input; longer sentences are windowed")
    pool: str = option(
        "avg", help="image models: how a site's (C, H, W) maps become its units: avg, max, "
        "flatten or none (maps kept), for all sites or per site, e.g. block.15=none,avg"
    )  # fmt: skip
    batch_images: int | None = option(None, help="image models: images per batch (CPU 8, CUDA 256)")
    chunk_rows: int | None = option(None, help="rows per stored chunk (default: about 8 MiB)")
    overwrite: bool = option(False, help="replace sites declared with other settings")
    where: str | None = option(
        None, help="SQL condition: compute only the sentences holding a matching row "
        "(the sites record the rows they cover; a later run extends them)"
    )  # fmt: skip
    name: str | None = option(
        None, help="model name in the site names (default: the model's), e.g. minilm-first "
        "beside minilm: keeps sites made with other settings apart"
    )  # fmt: skip
    random_init: int | None = option(
        None, metavar="SEED", help="re-initialise the model's weights (seeded) first: a "
        "baseline of the same architecture, written as <model>-random<SEED>/layer.N"
    )  # fmt: skip
    weights: Path | None = option(
        None, help="factory models: the state dict to load (.safetensors, .pt, .pth, .bin)"
    )
    vocab: Path | None = option(
        None, help="factory models: the vocabulary JSON (tokens, pad, unk, level, lowercase)"
    )
    time_major: bool = option(
        False, help="factory models: call model(ids) with ids of shape (time, batch)"
    )
    # not a command-line option: bytes of finished blocks waiting for the writer thread
    writer_bytes: int = field(default=16 << 20)

    def __post_init__(self) -> None:
        if self.align == "auto" and not is_recurrent_model(self.model):
            object.__setattr__(self, "align", "mean")  # what transformers always did

    @property
    def shard_index(self) -> tuple[int, int]:
        """``shard`` as ``(I, N)``."""
        try:
            index, count = (int(x) for x in self.shard.split("/"))
        except ValueError:
            raise ParameterError(
                "shard", f"must look like I/N (e.g. 0/2), got {self.shard!r}"
            ) from None
        return index, count

    def check(self) -> None:
        """Refuse values no extraction can take (each error names its parameter)."""
        from actstore.devices import check_device

        if self.align not in ALIGN_CHOICES:
            raise ParameterError(
                "align", f"must be one of {list(ALIGN_CHOICES)}, got {self.align!r}"
            )
        factory = is_factory(self.model)
        for name in ("weights", "vocab", "time_major"):
            if getattr(self, name) not in (None, False) and not factory:
                raise ParameterError(
                    name, f"goes with a factory model (package.module:function), not {self.model}"
                )
        if factory and self.vocab is not None and self.weights is None:
            raise ParameterError("weights", f"is needed with the recurrent model {self.model}")
        if self.dtype not in DTYPES:
            raise ParameterError("dtype", f"must be one of {list(DTYPES)}, got {self.dtype!r}")
        check_device(self.device, "device")
        index, count = self.shard_index
        if not 0 <= index < count:
            raise ParameterError("shard", f"I/N needs 0 <= I < N, got {index}/{count}")
        for name in ("batch_tokens", "max_length", "chunk_rows", "batch_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ParameterError(name, f"must be positive, got {value}")
        if self.random_init is not None and self.random_init < 0:
            raise ParameterError("random_init", f"takes a seed >= 0, got {self.random_init}")
        if self.name is not None and not _MODEL_NAME.fullmatch(self.name):
            raise ParameterError(
                "name", f"must be letters, digits, '_', '.', '-' (no '/'), got {self.name!r}"
            )
        if self.overwrite and count > 1:
            raise ParameterError("overwrite", "cannot be combined with shard; overwrite first")
        self._check_workers(count)

    def _check_workers(self, count: int) -> None:
        if self.workers < 1:
            raise ParameterError("workers", f"must be at least 1, got {self.workers}")
        if self.retries < 0:
            raise ParameterError("retries", f"must be 0 or more, got {self.retries}")
        if self.workers > 1 and count > 1:
            raise ParameterError(
                "workers", f"cannot be combined with shard {self.shard}: it runs every shard"
            )
        if self.workers > 1 and self.overwrite:
            raise ParameterError("workers", "cannot be combined with overwrite; overwrite first")


EXTRACT = Verb(
    "extract",
    "run a model over the store's rows and store its activations as sites",
    'actstore extract ewt.actstore --model minilm --sites "layer.*" --align mean\n'
    '  actstore extract ewt.actstore --model runs/lm --sites "layer.*.[fh]"',
    (ExtractTarget, ExtractOptions),
    "extractors.commands:extract",
)
