"""Word-aligned activations of Hugging Face transformers: one :class:`Extractor`.

Sites are ``<model>/layer.0`` (the embedding output) to ``<model>/layer.N`` (the last
layer's output; for decoder models the final norm is applied there, as Hugging Face
reports it) and, for architectures with a table in :mod:`extractors.hooks`, each
block's components read by forward hooks (``<model>/blocks.3.attn_out``). For each
chunk of rows still missing, the sentences (or windows of long sentences,
:mod:`extractors.align`) that hold its words are sorted by length, cut into batches
under a token budget, run once and pooled to words; the generic driver
(:mod:`extractors.driver`) does the rest. A chunk's batches depend on the chunk alone,
so a resumed or sharded run writes the same bytes as an uninterrupted one.

:func:`extract` also runs the sentence-level sites of :mod:`extractors.sentence`
(``<model>/sentence.mean.layer.6``) when ``sites`` asks for them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import actstore
from actstore.errors import ParameterError
from actstore.sql import condition
from extractors import hooks, models
from extractors.align import ALIGNMENT_RULE, QUALITY_FLAGS, Alignment, Words, align
from extractors.base import Block, Extractor, SiteSpec
from extractors.choice import choose, combine
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


def batches(
    lengths: np.ndarray, segments: np.ndarray, budget: int, inputs: np.ndarray | None = None
) -> list[np.ndarray]:
    """Segments sorted by length and cut into batches of at most ``budget`` padded tokens.

    ``inputs`` (indexed like ``lengths``, default 1) counts the model inputs an item
    stands for (a sentence of several windows, say).

    Examples
    --------
    >>> [b.tolist() for b in batches(np.array([5, 2, 3, 2]), np.arange(4), 6)]
    [[1, 3], [2], [0]]
    >>> [b.tolist() for b in batches(np.array([2, 2]), np.arange(2), 6, np.array([2, 2]))]
    [[0], [1]]
    """
    order = segments[np.lexsort((segments, lengths[segments]))]
    count = np.ones(len(lengths), np.int64) if inputs is None else inputs
    out, start, rows = [], 0, 0
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        rows += int(count[order[end - 1]])
        if end - start > 1 and longest * rows > budget:
            out.append(order[start : end - 1])
            start, rows = end - 1, int(count[order[end - 1]])
    if start < len(order):
        out.append(order[start:])
    return out


class _Weights:
    """The weight files' SHA-256s, hashed on a thread while the rest gets ready."""

    def __init__(self, files: list[Path]) -> None:
        self._hashes: dict[str, str] = {}
        self._thread = threading.Thread(target=self._hash, args=(files,), daemon=True)
        self._thread.start()

    def _hash(self, files: list[Path]) -> None:
        self._hashes = models.sha256_files(files)

    def sha256(self) -> dict[str, str]:
        self._thread.join()
        return self._hashes


class TransformerExtractor(Extractor):
    """Hidden states and hooked components of a Hugging Face transformer, pooled from
    pieces to UD words.

    ``loaded`` passes a ``(tokenizer, model)`` already loaded for ``options.model``, or
    another extractor of the same model whose model and weight hashes it shares. The
    weight files are hashed on a thread while the rest gets ready.

    Examples
    --------
    >>> extractor = TransformerExtractor(ExtractOptions(model="minilm"))  # doctest: +SKIP
    >>> [s.name for s in extractor.sites()][5:9]  # doctest: +SKIP
    ['minilm/layer.5', 'minilm/layer.6', 'minilm/blocks.0.resid_pre', 'minilm/blocks.0.attn_out']
    """

    name = "transformer"
    table = "tokens"
    row_unit = "words"
    devices = ("cpu", "cuda")

    def __init__(
        self,
        options: ExtractOptions,
        *,
        loaded: tuple[Any, Any] | TransformerExtractor | None = None,
    ) -> None:
        options.check()
        self.options = options
        self.spec: models.ModelSpec
        self._weights: _Weights
        self.tokenizer: Any
        self.model: Any
        self.model_name: str
        self.components: dict[str, hooks.Component]
        if isinstance(loaded, TransformerExtractor):
            self.spec, self._weights = loaded.spec, loaded._weights
            self.tokenizer, self.model = loaded.tokenizer, loaded.model
            self.model_name, self.components = loaded.model_name, loaded.components
        else:
            self.spec = models.resolve_model(options.model)
            self._weights = _Weights(self.spec.weight_files)
            self.tokenizer, self.model = loaded or models.load(self.spec)
            self.model_name = self.spec.name
            if options.random_init is not None:
                self.model = models.reinitialise(self.model, options.random_init)
                self.model_name = f"{self.spec.name}-random{options.random_init}"
            self.components = {c.name: c for c in hooks.components(self.model)}
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
        self.bounds = np.zeros((0, 2), np.int64)  # each sentence's [first_row, stop)

    @property
    def align_table(self) -> str:
        """The results table holding this model's word alignment: ``align_<model>``."""
        return "align_" + self.spec.name.replace("-", "_").replace(".", "_")

    def sites(self) -> list[SiteSpec]:
        """``<model>/layer.0`` (embeddings) to ``<model>/layer.N``, then each block's
        components (``<model>/blocks.0.resid_pre`` ...) where the architecture has a
        table in :mod:`extractors.hooks`; every one a row per word."""
        return [
            SiteSpec(f"{self.model_name}/{c.name}", c.n_units, c.provenance)
            for c in self.components.values()
        ]

    def prepare(self, store: actstore.Store, sites: Sequence[SiteSpec], device: Any) -> None:
        """Align every word to model pieces, store the alignment, move the model."""
        words = self._align(store, device)
        # the alignment of this model's latest extraction (cheap: rewritten every run)
        store.write_result(
            self.align_table,
            self._aligned().table(words),
            provenance={"extractor": self.name, "model": self.spec.name},
            replace=True,
        )
        taps = [self.components[s.component].tap for s in sites]
        self.runner = Runner(
            self.model, taps, self.options.align, device, _pad_id(self.tokenizer),
            self.options.dtype,
        )  # fmt: skip

    def _align(self, store: actstore.Store, device: Any) -> Words:
        """Align every word of ``store`` to model pieces; the words aligned."""
        words, bounds = load_words(store)
        prefix, suffix = models.special_ids(self.tokenizer)
        unknown = getattr(self.tokenizer, "unk_token_id", None)
        substitute = _pad_id(self.tokenizer) if unknown is None else unknown
        self.alignment = align(
            words, bounds, self.tokenizer, self.max_length, prefix, suffix,
            unknown_id=unknown, substitute_id=substitute,
        )  # fmt: skip
        self.bounds = bounds
        self._lengths = np.fromiter((len(i) for i in self.alignment.segment_ids), np.int64)
        self._budget = self.options.batch_tokens or (16384 if device.type == "cuda" else 1024)
        return words

    def batches(self, lo: int, hi: int) -> list[Any]:
        """Per batch: its segments, the chunk rows it fills, and each row's batch row
        (subclasses batch otherwise)."""
        alignment = self._aligned()
        segments = np.unique(alignment.segment[lo:hi])
        rows_of = _rows_by_segment(alignment.segment, lo, hi)
        out = []
        for batch in batches(self._lengths, segments, self._budget):
            rows = [rows_of[seg] for seg in batch.tolist()]
            batch_row = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
            out.append((batch.tolist(), np.concatenate(rows), batch_row))
        return out

    def compute(self, batch: Any) -> Block:
        """Run one batch of :meth:`batches`, pool its pieces to words of the chosen
        components."""
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
        return {
            "model": self.spec.name,
            "random_init": self.options.random_init,  # a seed: weights re-initialised, not trained
            "model_path": str(self.spec.folder / (self.spec.gguf_file or "")),
            "model_class": type(self.model).__name__,
            "weights_sha256": self._weights.sha256(),
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
    loaded: tuple[Any, Any] | TransformerExtractor | None = None,
) -> ExtractReport:
    """Extract a transformer's word sites, sentence sites or both into the store at
    ``store_path``, as ``options.sites`` chooses (:func:`extractors.choice.choose`):
    one driver run per table, their reports combined.

    ``loaded`` passes a ``(tokenizer, model)`` already loaded for ``options.model`` (or
    an extractor of it, to share). Where both kinds run, ``options.where`` is a
    condition on ``tokens`` and the sentence sites cover the sentences holding a
    matching word; where only sentence sites run, it is a condition on ``sentences``.

    Examples
    --------
    >>> store.close()
    >>> options = ExtractOptions(sites="layer.6", device="cpu")
    >>> report = extract(store_path, options)  # doctest: +SKIP
    >>> report.sites, report.rows, report.stats["pieces"]  # doctest: +SKIP
    (['minilm/layer.6'], 698, 775)
    """
    from extractors.sentence import SentenceExtractor

    words = TransformerExtractor(options, loaded=loaded)
    extractors = [words, SentenceExtractor(options, loaded=words)]
    chosen = choose(extractors, options.sites)
    reports = []
    for extractor, names in zip(extractors, chosen, strict=True):
        if not names:
            continue
        where = options.where
        if where is not None and extractor is not words and chosen[0]:
            where = f"sentence_id IN (SELECT sentence_id FROM tokens WHERE ({condition(where)}))"
        mine = replace(options, sites=",".join(names), where=where)
        reports.append(run(store_path, extractor, mine))
    return combine(reports)


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
