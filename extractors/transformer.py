"""Word-aligned hidden states of Hugging Face transformers: one :class:`Extractor`.

Sites are ``<model>/layer.0`` (the embedding output) to ``<model>/layer.N`` (the last
layer's output; for decoder models the final norm is applied there, as Hugging Face
reports it). For each chunk of rows still missing, the sentences (or windows of
long sentences, :mod:`extractors.align`) that hold its words are sorted by length,
cut into batches under a token budget, run once and pooled to words; the generic
driver (:mod:`extractors.driver`) does the rest. A chunk's batches depend on the
chunk alone, so a resumed or sharded run writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import actstore
from actstore.errors import ParameterError
from extractors import models
from extractors.align import ALIGNMENT_RULE, QUALITY_FLAGS, Alignment, Words, align
from extractors.base import Block, Extractor, SiteSpec
from extractors.driver import ExtractReport, run
from extractors.runner import Runner
from extractors.verbs import ExtractOptions

__all__ = ["ExtractOptions", "ExtractReport", "TransformerExtractor", "batches", "extract"]

WORD_COLUMNS = ["row", "sentence_id", "position", "form", "mwt_start", "mwt_form", "space_after"]


def load_words(store: actstore.Store) -> tuple[Words, np.ndarray]:
    """The tokens columns alignment needs, and each sentence's ``[first_row, stop)``.

    Examples
    --------
    >>> words, bounds = load_words(store)
    >>> len(words.row), bounds[:2].tolist()
    (698, [[0, 7], [7, 26]])
    """
    words = Words.from_arrow(store.columns(WORD_COLUMNS, "tokens"))
    sentences = store.columns(["first_row", "n_words"], "sentences")
    first = sentences.column("first_row").to_numpy()
    bounds = np.stack([first, first + sentences.column("n_words").to_numpy()], axis=1)
    return words, bounds


def batches(lengths: np.ndarray, segments: np.ndarray, budget: int) -> list[np.ndarray]:
    """Segments sorted by length and cut into batches of at most ``budget`` padded tokens.

    Examples
    --------
    >>> [b.tolist() for b in batches(np.array([5, 2, 3, 2]), np.arange(4), 6)]
    [[1, 3], [2], [0]]
    """
    order = segments[np.lexsort((segments, lengths[segments]))]
    out, start = [], 0
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        if end - start > 1 and longest * (end - start) > budget:
            out.append(order[start : end - 1])
            start = end - 1
    if start < len(order):
        out.append(order[start:])
    return out


class TransformerExtractor(Extractor):
    """Hidden states of a Hugging Face transformer, pooled from pieces to UD words.

    ``loaded`` passes a ``(tokenizer, model)`` already loaded for ``options.model``.
    The weight files are hashed on a thread while the rest gets ready.

    Examples
    --------
    >>> extractor = TransformerExtractor(ExtractOptions(model="minilm"))  # doctest: +SKIP
    >>> [s.name for s in extractor.sites()][:2]  # doctest: +SKIP
    ['minilm/layer.0', 'minilm/layer.1']
    """

    name = "transformer"
    table = "tokens"
    row_unit = "words"
    devices = ("cpu", "cuda")

    def __init__(self, options: ExtractOptions, *, loaded: tuple[Any, Any] | None = None) -> None:
        options.check()
        self.options = options
        self.spec = models.resolve_model(options.model)
        self._hashes: dict[str, str] = {}
        self._hasher = threading.Thread(target=self._hash_weights, daemon=True)
        self._hasher.start()
        self.tokenizer, self.model = loaded or models.load(self.spec)
        self.model_name = self.spec.name
        if options.random_init is not None:
            self.model = models.reinitialise(self.model, options.random_init)
            self.model_name = f"{self.spec.name}-random{options.random_init}"
        limit = models.max_length(self.tokenizer, self.model)
        self.max_length = options.max_length or limit
        specials = sum(len(ids) for ids in models.special_ids(self.tokenizer))
        if not specials + 2 <= self.max_length <= limit:
            raise ParameterError(
                "max_length",
                f"must lie in {specials + 2}..{limit} for {self.spec.name} (room for its "
                f"{specials} special tokens and two pieces; at most the model's limit), "
                f"got {self.max_length}",
            )
        self.alignment: Alignment | None = None
        self._layers: list[int] = []

    @property
    def align_table(self) -> str:
        """The results table holding this model's word alignment: ``align_<model>``."""
        return "align_" + self.spec.name.replace("-", "_").replace(".", "_")

    def _hash_weights(self) -> None:
        self._hashes = models.sha256_files(self.spec.weight_files)

    def sites(self) -> list[SiteSpec]:
        """``<model>/layer.0`` (embeddings) to ``<model>/layer.N``."""
        n_units = int(self.model.config.hidden_size)
        return [
            SiteSpec(f"{self.model_name}/layer.{i}", n_units, {"hidden_state": i})
            for i in range(int(self.model.config.num_hidden_layers) + 1)
        ]

    def prepare(self, store: actstore.Store, sites: Sequence[SiteSpec], device: Any) -> None:
        """Align every word to model pieces, store the alignment, move the model."""
        words, bounds = load_words(store)
        prefix, suffix = models.special_ids(self.tokenizer)
        unknown = getattr(self.tokenizer, "unk_token_id", None)
        substitute = _pad_id(self.tokenizer) if unknown is None else unknown
        self.alignment = align(
            words, bounds, self.tokenizer, self.max_length, prefix, suffix,
            unknown_id=unknown, substitute_id=substitute,
        )  # fmt: skip
        # the alignment of this model's latest extraction (cheap: rewritten every run)
        store.write_result(
            self.align_table,
            self.alignment.table(words),
            provenance={"extractor": self.name, "model": self.spec.name},
            replace=True,
        )
        del words
        self._lengths = np.fromiter((len(i) for i in self.alignment.segment_ids), np.int64)
        self._budget = self.options.batch_tokens or (16384 if device.type == "cuda" else 1024)
        self._layers = [int(s.provenance["hidden_state"]) for s in sites]
        self.runner = Runner(
            self.model, self._layers, self.options.align, device, _pad_id(self.tokenizer),
            self.options.dtype,
        )  # fmt: skip

    def batches(self, lo: int, hi: int) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
        """Per batch: its segments, the chunk rows it fills, and each row's batch row."""
        alignment = self._aligned()
        segments = np.unique(alignment.segment[lo:hi])
        rows_of = _rows_by_segment(alignment.segment, lo, hi)
        out = []
        for batch in batches(self._lengths, segments, self._budget):
            rows = [rows_of[seg] for seg in batch.tolist()]
            batch_row = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
            out.append((batch.tolist(), np.concatenate(rows), batch_row))
        return out

    def compute(self, batch: tuple[list[int], np.ndarray, np.ndarray]) -> Block:
        """Run one batch, pool its pieces to words of the chosen layers."""
        alignment = self._aligned()
        segments, row_index, batch_row = batch
        hidden = self.runner.forward([alignment.segment_ids[s] for s in segments])
        pooled = self.runner.pool(
            hidden, batch_row, alignment.first[row_index], alignment.last[row_index]
        )
        ready, host = self.runner.to_host(pooled)
        return Block(row_index, host, ready)

    def provenance(self) -> dict[str, Any]:
        """Model, weights hash, tokenizer, alignment rule, input limit, windows."""
        self._hasher.join()
        return {
            "model": self.spec.name,
            "random_init": self.options.random_init,  # a seed: weights re-initialised, not trained
            "model_path": str(self.spec.folder / (self.spec.gguf_file or "")),
            "model_class": type(self.model).__name__,
            "weights_sha256": self._hashes,
            "tokenizer": f"{type(self.tokenizer).__name__} {self.tokenizer.name_or_path}",
            "vocab_size": len(self.tokenizer),
            "align": self.options.align,
            "alignment_rule": ALIGNMENT_RULE,
            "max_length": self.max_length,
            "n_windowed_sentences": self._aligned().n_windowed,
            "flagged_words": self._aligned().counts(),
        }

    def stats(self) -> dict[str, int]:
        """Model tokens, sentences that needed windows, words of each quality flag."""
        alignment = self._aligned()
        return {
            "pieces": alignment.n_pieces,
            "n_windowed": alignment.n_windowed,
            **alignment.counts(),
        }

    def describe(self, stats: Mapping[str, int]) -> tuple[str, str]:
        """``, P model tokens`` and ``; W sentences needed windows`` and the flagged words."""
        flagged = ", ".join(f"{stats[f]:,} {f}" for f in QUALITY_FLAGS if stats.get(f))
        return (
            f", {stats['pieces']:,} model tokens",
            f"; {stats['n_windowed']} sentences needed windows"
            + (f"; words flagged in {self.align_table}: {flagged}" if flagged else ""),
        )

    def _aligned(self) -> Alignment:
        if self.alignment is None:
            raise RuntimeError("prepare() first")
        return self.alignment


def extract(
    store_path: str | Path,
    options: ExtractOptions,
    *,
    loaded: tuple[Any, Any] | None = None,
) -> ExtractReport:
    """Extract word-aligned hidden states of a transformer into the store at ``store_path``.

    ``loaded`` passes a ``(tokenizer, model)`` already loaded for ``options.model``.

    Examples
    --------
    >>> store.close()
    >>> options = ExtractOptions(sites="layer.6", device="cpu")
    >>> report = extract(store_path, options)  # doctest: +SKIP
    >>> report.sites, report.rows, report.stats["pieces"]  # doctest: +SKIP
    (['minilm/layer.6'], 698, 775)
    """
    return run(store_path, TransformerExtractor(options, loaded=loaded), options)


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if isinstance(candidate, int):
            return candidate
    return 0


def _rows_by_segment(segment: np.ndarray, lo: int, hi: int) -> dict[int, np.ndarray]:
    rows = np.arange(lo, hi)
    seg = segment[lo:hi]
    order = np.argsort(seg, kind="stable")
    keys, starts = np.unique(seg[order], return_index=True)
    groups = np.split(rows[order], starts[1:])
    return dict(zip(keys.tolist(), groups, strict=True))
