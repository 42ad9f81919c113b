"""Sentence-level sites of a transformer: one row per sentence of the ``sentences`` table.

For every word-level component ``C`` (``layer.6``, ``blocks.3.mlp_out``, see
:mod:`extractors.hooks`) there are:

- ``sentence.mean.C``: the mean of the sentence's word vectors, each word pooled from
  its pieces by ``--align`` exactly as the word site ``C`` holds it (before rounding
  to the stored dtype), every word counted once;
- ``sentence.first.C`` / ``sentence.last.C``: the sentence's first / last model piece
  (special tokens excluded);
- ``sentence.cls.C``: the first special token the tokenizer puts before a sentence
  (``[CLS]`` for BERT, a BOS token for tokenizers that add one); not offered where the
  tokenizer adds none (SmolLM2).

A sentence longer than the model's input (``--max-length``) is run in the windows of
:mod:`extractors.align`: the mean takes each word from the window the word sites take
it from; ``first`` and ``cls`` come from the first window, ``last`` from the last one
(provenance ``windows`` says so). The row of a sentence depends on it alone, so the
batches can mix sentences freely; all windows of a sentence go in one batch.

Examples
--------
>>> POOLS
('mean', 'first', 'last', 'cls')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

import actstore
from extractors import models
from extractors.base import Block, SiteSpec
from extractors.runner import Runner
from extractors.transformer import TransformerExtractor, _pad_id, batches
from extractors.verbs import ExtractOptions

POOLS = ("mean", "first", "last", "cls")
WINDOWS = (
    "mean: each word from the window the word sites take it from; first and cls: the "
    "first window; last: the last window"
)


class SentenceExtractor(TransformerExtractor):
    """Sentence vectors of a transformer: means of word vectors, first, last and [CLS].

    Takes what :class:`~extractors.transformer.TransformerExtractor` takes (``loaded``
    may be a word extractor to share its model with).

    Examples
    --------
    >>> words = TransformerExtractor(ExtractOptions(model="minilm"))  # doctest: +SKIP
    >>> sentences = SentenceExtractor(ExtractOptions(model="minilm"), loaded=words)
    ... # doctest: +SKIP
    >>> [s.name for s in sentences.sites()][:2]  # doctest: +SKIP
    ['minilm/sentence.mean.layer.0', 'minilm/sentence.mean.layer.1']
    """

    table = "sentences"
    row_unit = "sentences"

    def __init__(
        self,
        options: ExtractOptions,
        *,
        loaded: tuple[Any, Any] | TransformerExtractor | None = None,
    ) -> None:
        super().__init__(options, loaded=loaded)
        self.prefix, self.suffix = models.special_ids(self.tokenizer)
        self.pools = POOLS if self.prefix else POOLS[:3]
        self._plan: list[tuple[str, int]] = []

    def sites(self) -> list[SiteSpec]:
        """``<model>/sentence.<pool>.<component>`` for every pool and word component."""
        out = []
        cls = self.tokenizer.convert_ids_to_tokens(self.prefix[0]) if self.prefix else None
        for pool in self.pools:
            for word in super().sites():
                extra: dict[str, Any] = {"align": self.options.align} if pool == "mean" else {}
                if pool == "cls":
                    extra["token"] = cls
                out.append(
                    SiteSpec(
                        f"{self.model_name}/sentence.{pool}.{word.component}",
                        word.n_units,
                        {"pool": pool, **word.provenance, **extra},
                    )
                )
        return out

    def prepare(self, store: actstore.Store, sites: Sequence[SiteSpec], device: Any) -> None:
        """Align every word to model pieces (not stored: word runs do), move the model."""
        self._align(store, device)
        taps: list[Any] = []
        self._plan = []
        for site in sites:
            pool, _, component = site.component.removeprefix("sentence.").partition(".")
            tap = self.components[component].tap
            if tap not in taps:
                taps.append(tap)
            self._plan.append((pool, taps.index(tap)))
        self.runner = Runner(
            self.model, taps, self.options.align, device, _pad_id(self.tokenizer),
            self.options.dtype,
        )  # fmt: skip

    def batches(self, lo: int, hi: int) -> list[tuple[np.ndarray, list[int]]]:
        """Per batch: its sentences and their segments (all windows of each)."""
        first = self._aligned().sentence_segment
        n_inputs = first[lo + 1 : hi + 1] - first[lo:hi]
        lengths = self._lengths[first[lo:hi]]  # a sentence's windows are all as long
        out = []
        for batch in batches(lengths, np.arange(hi - lo), self._budget, n_inputs):
            sentences = batch + lo
            segments = np.concatenate([np.arange(first[s], first[s + 1]) for s in sentences])
            out.append((sentences, segments.tolist()))
        return out

    def compute(self, batch: tuple[np.ndarray, list[int]]) -> Block:
        """Run one batch of sentences; pool each chosen site's rows."""
        alignment = self._aligned()
        sentences, segments = batch
        hidden = self.runner.forward([alignment.segment_ids[g] for g in segments])
        seg_first = alignment.sentence_segment[sentences]
        n_inputs = alignment.sentence_segment[sentences + 1] - seg_first
        row_first = np.concatenate([[0], np.cumsum(n_inputs)[:-1]])  # batch row of window 0
        row_last = row_first + n_inputs - 1
        last_length = np.asarray([len(alignment.segment_ids[g]) for g in seg_first + n_inputs - 1])
        where = {
            "first": (row_first, np.full(len(sentences), len(self.prefix))),
            "last": (row_last, last_length - len(self.suffix) - 1),
            "cls": (row_first, np.zeros(len(sentences), np.int64)),
        }
        done: dict[tuple[str, int], torch.Tensor] = {}
        for pool in dict.fromkeys(p for p, _ in self._plan):
            wanted = sorted({k for p, k in self._plan if p == pool})
            parts = [hidden[k] for k in wanted]
            if pool == "mean":
                pooled = self._means(parts, sentences, row_first, seg_first)
            else:
                rows, positions = where[pool]
                pooled = self.runner.pool(parts, rows, positions, positions, rule="first")
            done.update(zip(((pool, k) for k in wanted), pooled, strict=True))
        ready, host = self.runner.to_host([done[key] for key in self._plan])
        return Block(sentences.astype(np.int64), host, ready)

    def _means(
        self,
        hidden: list[torch.Tensor],
        sentences: np.ndarray,
        row_first: np.ndarray,
        seg_first: np.ndarray,
    ) -> list[torch.Tensor]:
        """Per tensor: the mean of each sentence's word vectors (pooled in float32 as
        the word sites pool them), as the site dtype."""
        alignment = self._aligned()
        lo, hi = self.bounds[sentences, 0], self.bounds[sentences, 1]
        n_words = hi - lo
        words = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
        owner = np.repeat(np.arange(len(sentences)), n_words)
        rows = row_first[owner] + alignment.segment[words] - seg_first[owner]
        vectors = self.runner.pool(
            hidden, rows, alignment.first[words], alignment.last[words], dtype=torch.float32
        )
        # words into a (sentences, most words, units) block summed along its middle
        # axis: a fixed order on every device (no scatter-add atomics)
        most = max(1, int(n_words.max()))
        starts = np.repeat(np.cumsum(n_words) - n_words, n_words)
        slot = owner * most + np.arange(len(words)) - starts
        device = vectors[0].device
        index = torch.from_numpy(slot).to(device)
        scale = torch.from_numpy(1.0 / np.maximum(n_words, 1)).float().to(device)[:, None]
        out = []
        with torch.inference_mode():
            for v in vectors:
                block = torch.zeros((len(sentences) * most, v.shape[1]), device=device)
                block.index_copy_(0, index, v)
                summed = block.reshape(len(sentences), most, v.shape[1]).sum(dim=1)
                out.append((summed * scale).to(self.runner.out_dtype))
        return out

    def provenance(self) -> dict[str, Any]:
        """The word extractor's provenance without ``align`` (only ``mean`` sites use
        it, and record it themselves), with how windows are used."""
        provenance = super().provenance()
        del provenance["align"]
        return {**provenance, "windows": WINDOWS}

    def describe(self, stats: Mapping[str, int]) -> tuple[str, str]:
        """``, P model tokens`` and ``; W sentences needed windows``."""
        return f", {stats['pieces']:,} model tokens", (
            f"; {stats['n_windowed']} sentences needed windows"
        )
