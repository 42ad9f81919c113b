"""CNN layers over the ``images`` table: one :class:`Extractor`, and the predictions.

Each chosen site is the output of a named module, read by a forward hook, pooled per
site (``--pool``): ``avg`` (global average over H and W, the default), ``max``,
``flatten`` (``C*H*W`` units, C order) or ``none`` (the feature maps kept: the site's
rows are ``(C, H, W)``, read back as ``(row, channel, y, x)``). Images are decoded,
checked against the content hash ingested with them, resized and cropped on worker
threads while the model runs on earlier batches. On CUDA the forward runs under
bfloat16 autocast, channels-last (on CPU too: it is faster there for convolutions).

The model's output is always stored as ``<model>/logits``; after a run that completes
it, the top-5 classes per image go into the result table ``predictions_<model>``
(:func:`write_predictions`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import actstore
from actstore.errors import ParameterError, SchemaError
from extractors.base import Block, Extractor, SiteSpec
from extractors.driver import ExtractReport
from extractors.image_models import LOGITS, ImageModel, load_image_model, output_shapes
from extractors.verbs import IMAGE_MODELS, ExtractOptions

POOLS = ("avg", "max", "flatten", "none")
# images per batch: on CPU small batches keep a CNN's activations in cache (a bare
# EfficientNet-Lite0 forward on 2 cores: 93 images/s at 4, 95 at 8, 35 at 32; see
# benchmarks/bench_cnn.py)
CPU_BATCH, CUDA_BATCH = 8, 256
# batches decoded ahead of the one the model runs, by device type: on CPU the decoding
# threads would take the cores torch computes on (measured 1.31x the bare forward with 2
# ahead, 1.02x with none: each batch is decoded by all threads just before it runs)
PREFETCH = {"cpu": 0, "cuda": 2}
BLOCK_ROWS = 8192  # images whose logits are read at once for the predictions


def parse_pool(text: str) -> list[tuple[str, str]]:
    """``--pool``: a mode for every site (``max``), or ``GLOB=MODE`` items with an
    optional bare default, e.g. ``block.15=none,stem=max,avg``; -> ``[(glob, mode)]``,
    the default last as ``("*", mode)``.

    Examples
    --------
    >>> parse_pool("block.15=none,max")
    [('block.15', 'none'), ('*', 'max')]
    >>> parse_pool("mean")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: pool must name avg, max, flatten or none..., got 'mean'
    """
    rules, default = [], "avg"
    for item in (part.strip() for part in text.split(",")):
        glob, eq, mode = item.rpartition("=")
        if mode not in POOLS or (eq and not glob):
            raise ParameterError(
                "pool", f"must name avg, max, flatten or none, as MODE or SITE=MODE items "
                f"(e.g. block.15=none,avg), got {item!r}"
            )  # fmt: skip
        if eq:
            rules.append((glob, mode))
        else:
            default = mode
    return [*rules, ("*", default)]


def pool_of(component: str, rules: Sequence[tuple[str, str]]) -> str:
    """The pooling the first matching rule gives ``component``."""
    return next(mode for glob, mode in rules if fnmatch.fnmatchcase(component, glob))


def _check_rules(rules: Sequence[tuple[str, str]], specs: Sequence[SiteSpec]) -> None:
    """Refuse a ``GLOB=MODE`` rule that matches no site with feature maps (a typo, or
    a site that gives ``(N, units)`` and takes no pooling)."""
    maps = [s.component for s in specs if s.provenance["pooling"] is not None]
    for glob, mode in rules[:-1]:
        if not any(fnmatch.fnmatchcase(c, glob) for c in maps):
            flat = [s.component for s in specs if fnmatch.fnmatchcase(s.component, glob)]
            why = f"{', '.join(flat)} give (N, units): no maps to pool" if flat else "a typo?"
            raise ParameterError(
                "pool", f"{glob}={mode} matches none of the sites with (C, H, W) maps "
                f"({why}); sites with maps: {', '.join(maps)}"
            )  # fmt: skip


class CNNExtractor(Extractor):
    """Hooked module outputs of an image model, one row per image; see the module doc."""

    name = "cnn"
    table = "images"
    row_unit = "images"
    devices = ("cpu", "cuda")

    def __init__(self, options: ExtractOptions, model: ImageModel | None = None) -> None:
        self.options = options
        self.model = model or load_image_model(options.model, options.weights)
        self.rules = parse_pool(options.pool)
        self._specs: list[SiteSpec] | None = None
        self._paths: list[Path] = []
        self._hashes: list[str] = []
        self._pool: ThreadPoolExecutor | None = None
        self._chosen: list[SiteSpec] = []
        self.device: Any = None

    def sites(self) -> list[SiteSpec]:
        if self._specs is None:
            shapes = output_shapes(self.model, list(self.model.sites.values()))
            preprocess = self.model.preprocess.provenance()
            self._specs = []
            for component, path in self.model.sites.items():
                if path not in shapes:
                    continue
                shape = shapes[path]
                mode = pool_of(component, self.rules) if len(shape) == 3 else None
                units = shape[0] if mode in ("avg", "max") else int(np.prod(shape))
                provenance = {
                    "module": path or "(model output)",
                    "hook": "output",
                    "output_shape": list(shape),
                    "pooling": mode,
                    "preprocess": preprocess,
                }
                self._specs.append(
                    SiteSpec(
                        f"{self.model.name}/{component}", units, provenance,
                        unit_shape=shape if mode == "none" else None,
                    )
                )  # fmt: skip
            _check_rules(self.rules, self._specs)
        return self._specs

    def provenance(self) -> dict[str, Any]:
        return dict(self.model.provenance)

    def prepare(self, store: actstore.Store, sites: Sequence[SiteSpec], device: Any) -> None:
        import torch

        from actstore.images import image_path

        store.require_columns(["path", "sha256"], "images")
        columns = store.columns(["path", "sha256"], "images")
        root = store.local_path("extraction from images")  # images are local files
        self._paths = [image_path(root, p) for p in columns.column("path").to_pylist()]
        self._hashes = columns.column("sha256").to_pylist()
        self._chosen = list(sites)
        self.device = device
        self.model.module.to(device).to(memory_format=torch.channels_last)
        self._pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))

    def batches(self, lo: int, hi: int) -> Iterator[tuple[np.ndarray, list[Future[Any]]]]:
        """Batches of images; each one's decoding starts ``PREFETCH`` batches early."""
        cuda = self.device is not None and self.device.type == "cuda"
        size = self.options.batch_images or (CUDA_BATCH if cuda else CPU_BATCH)
        ahead = PREFETCH["cuda" if cuda else "cpu"]
        spans = [np.arange(a, min(a + size, hi)) for a in range(lo, hi, size)]
        queued: deque[list[Future[Any]]] = deque()
        for i, rows in enumerate(spans):
            while len(queued) <= ahead and i + len(queued) < len(spans):
                queued.append([self._load(int(r)) for r in spans[i + len(queued)]])
            yield rows, queued.popleft()

    def _load(self, row: int) -> Future[Any]:
        assert self._pool is not None, "prepare() first"
        return self._pool.submit(self._decode, row)

    def _decode(self, row: int) -> np.ndarray:
        from actstore.image_files import load_rgb

        with load_rgb(self._paths[row], self._hashes[row], row=row) as image:
            return self.model.preprocess(image)

    def compute(self, batch: tuple[np.ndarray, list[Future[Any]]]) -> Block:
        import torch

        from extractors.hooks import Tap, capture
        from extractors.runner import to_host

        rows, loading = batch
        pixels = torch.from_numpy(np.stack([f.result() for f in loading]))
        cuda = self.device.type == "cuda"
        if cuda:
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        taps = [Tap(path=self.model.sites[s.component]) for s in self._chosen]
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else None
        with (
            torch.inference_mode(),
            autocast or contextlib.nullcontext(),
            capture(self.model.module, taps) as seen,
        ):
            self.model.module(pixels)
            values = [
                _pooled(seen[tap], s.provenance["pooling"]).float()
                for tap, s in zip(taps, self._chosen, strict=True)
            ]
        ready, host = to_host(values, cuda)
        return Block(rows, host, ready)

    def close(self) -> None:
        """Stop the decoding threads."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _pooled(out: Any, mode: str | None) -> Any:
    """One module output ``(N, C, H, W)`` (or ``(N, units)``) as ``(N, units)``."""
    if mode == "avg":
        return out.float().mean(dim=(2, 3))
    if mode == "max":
        return out.amax(dim=(2, 3))
    return out.contiguous().reshape(out.shape[0], -1)  # flatten, none: C order, (C, H, W)


def write_predictions(
    store_path: Path, model: ImageModel, name: str | None = None, k: int = 5
) -> str | None:
    """Top-``k`` classes of every image, from the stored logits of the model's sites
    (named ``name``, default the model's), as the result table ``predictions_<name>``
    (row, rank, class, class_name, probability); its name, or None while the logits
    site is incomplete (a shard still running). ``class_name`` is NULL when the model
    names no classes for its width of output (see :func:`~extractors.image_models.class_names`).
    """
    prefix = name or model.name
    site = f"{prefix}/{LOGITS}"
    result = "predictions_" + prefix.replace("-", "_").replace(".", "_")
    with actstore.open(store_path, mode="a") as store:
        info = store.site(site)
        if info.status != "complete":
            return None
        known = len(model.classes) == info.n_units
        classes = np.asarray(model.classes if known else [None] * info.n_units, dtype=object)
        k = min(k, info.n_units)
        reader = store.site_reader(site, dtype="float32")
        parts = [
            _top(reader.take(np.arange(lo, min(lo + BLOCK_ROWS, info.n_rows))), lo, k)
            for lo in range(0, info.n_rows, BLOCK_ROWS)
        ]
        rows, top, probability = (np.concatenate(x) for x in zip(*parts, strict=True))
        import pyarrow as pa

        table = {
            "row": np.repeat(rows, k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(rows)),
            "class": top.ravel().astype(np.int32),
            "class_name": pa.array(classes[top.ravel()], pa.string()),
            "probability": probability.ravel(),
        }
        store.write_result(
            result,
            pa.table(table),
            provenance={"analysis": "predictions", "site": site, "k": k, **info.provenance},
            replace=True,
        )
    return result


def _top(logits: np.ndarray, first_row: int, k: int) -> tuple[np.ndarray, ...]:
    """Rows, top-``k`` classes and their softmax probabilities (float64) of a block."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    probability = np.exp(shifted)
    probability /= probability.sum(axis=1, keepdims=True)
    top = np.argsort(-probability, axis=1, kind="stable")[:, :k]
    rows = np.arange(first_row, first_row + len(logits))
    return rows, top, np.take_along_axis(probability, top, axis=1)


def extract(
    store_path: str | Path, options: ExtractOptions, *, loaded: CNNExtractor | None = None
) -> ExtractReport:
    """Run an image model over the store's ``images`` as ``options`` say, then write
    its predictions. ``logits`` is always among the sites; a factory model's default
    sites (``--sites "*"``) are its top-level modules.

    Examples
    --------
    >>> report = extract(images_store, ExtractOptions(model="effnet-lite0"))  # doctest: +SKIP
    """
    from extractors.driver import run

    extractor = loaded or CNNExtractor(options)
    with actstore.open(store_path) as store:
        if "images" not in store.tables:
            raise SchemaError(
                f"{store_path} has no images table: `actstore ingest {store_path} images "
                f"FOLDER` first ({options.model} is an image model; a recurrent model's "
                "factory needs --vocab and --weights)"
            )
    sites = options.sites
    if sites == "*" and options.model not in IMAGE_MODELS:
        sites = ",".join(name for name, _ in extractor.model.module.named_children())
    chosen = [g.strip() for g in sites.split(",")]
    if not any(fnmatch.fnmatchcase(LOGITS, g) or g.endswith(f"/{LOGITS}") for g in chosen):
        sites = f"{sites},{LOGITS}"
    report = run(store_path, extractor, replace(options, sites=sites))
    written = write_predictions(Path(store_path), extractor.model, options.name)
    if written is not None:
        report.tail += f"; top-5 predictions in {written}"
    return report
