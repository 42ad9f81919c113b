"""Gates of recurrent models, per word: one :class:`Extractor` for any torch LSTM/GRU.

Sites are ``<model>/layer.{k}.{gate}``: LSTM ``i, f, g, o, c, h``, GRU ``r, z, n, h``
(``layer.{k}.reverse.{gate}`` for the reverse direction; a model with several
recurrent modules puts the module's path first: ``imaginet/visual.layer.0.z``). The
model (:mod:`extractors.recurrent_load`) is called as ``model(ids)`` on padded
batches of whole sentences; each recurrent module's input is unrolled with its own
weights as the model runs (:mod:`extractors.recurrent_tap`, :mod:`extractors.unroll`),
and the model stops once every recurrent module with a chosen site has been read.

A word-level model takes one step per word (of the ``tokens`` table's ``form``). A
character-level model reads the sentence's words joined by one space (a multiword
token appears as its words, ``do n't``, not as its surface form ``don't``), and a word
takes the step of its last character (``--align last``, the default), its first, or
the mean over its characters (``--align mean``).

Each sentence is computed as if alone, whatever batch it is in: padding never enters
a real step, in either direction. A chunk's sentences are sorted by length and cut
into batches of at most ``--batch-tokens`` padded steps, so a resumed or sharded run
computes the same batches and writes the same bytes.

Examples
--------
>>> site_name("lm", "", 0, 1, "f"), site_name("imaginet", "visual", 0, 0, "z")
('lm/layer.0.reverse.f', 'imaginet/visual.layer.0.z')
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import actstore
from actstore.errors import ModelError, ParameterError
from extractors.base import Block, Extractor, SiteSpec
from extractors.driver import ExtractReport, run
from extractors.recurrent_load import RecurrentModel, load_model
from extractors.recurrent_tap import StopModel, tap
from extractors.runner import pooling_weights
from extractors.transformer import batches
from extractors.unroll import DIRECTIONS, GATES, Recurrent, Unrolled, find_recurrent
from extractors.verbs import ExtractOptions

__all__ = ["RecurrentExtractor", "extract", "site_name"]

ALIGNMENT = {
    "word": "one step per word (the tokens table's form)",
    "last": "a word's last character; the sentence's words joined by one space",
    "first": "a word's first character; the sentence's words joined by one space",
    "mean": "the mean over a word's characters; the sentence's words joined by one space",
}
BUDGET = {"cpu": 4096, "cuda": 65536}  # padded steps per batch


def site_name(model: str, path: str, layer: int, direction: int, gate: str) -> str:
    """The site of one gate: ``<model>/[<path>.]layer.<k>[.reverse].<gate>``.

    Examples
    --------
    >>> site_name("lm", "", 1, 0, "c")
    'lm/layer.1.c'
    """
    module = f"{path}." if path else ""
    reverse = ".reverse" if direction else ""
    return f"{model}/{module}layer.{layer}{reverse}.{gate}"


@dataclass(frozen=True)
class _Gate:
    """Where a site's values come from."""

    recurrent: Recurrent
    layer: int
    direction: int
    gate: str


class RecurrentExtractor(Extractor):
    """Per-word gates of every recurrent module of a model (see the module docstring).

    ``loaded`` passes a model already loaded for ``options``.

    Examples
    --------
    >>> from extractors.vocab import Vocabulary
    >>> vocab = Vocabulary(["<pad>", "<unk>", "</s>", "a"], level="word", lowercase=True)
    >>> model = torch.nn.Sequential(torch.nn.Embedding(4, 2), torch.nn.GRU(2, 3))
    >>> loaded = RecurrentModel("toy", model, vocab, "factory", "m:f", ())
    >>> extractor = RecurrentExtractor(ExtractOptions(model="m:f", weights=Path("w"),
    ...     vocab=Path("v"), device="cpu"), loaded=loaded)
    >>> [s.name for s in extractor.sites()]
    ['toy/layer.0.r', 'toy/layer.0.z', 'toy/layer.0.n', 'toy/layer.0.h']
    """

    name = "recurrent"
    table = "tokens"
    row_unit = "words"
    devices = ("cpu", "cuda")

    def __init__(self, options: ExtractOptions, *, loaded: RecurrentModel | None = None) -> None:
        options.check()
        if options.max_length is not None:
            raise ParameterError("max_length", "is for transformers: a recurrent model reads "
                                 "whole sentences")  # fmt: skip
        self.options = options
        self.loaded = loaded if loaded is not None else load_model(options)
        self.model = self.loaded.model
        self.recurrents = find_recurrent(self.model)
        self.model_name = options.name or self.loaded.name
        level = self.loaded.vocab.level
        self.align = "word" if level == "word" else options.align
        if self.align == "auto":
            self.align = "last"
        from actstore.devices import resolve_device

        kind = resolve_device(options.device).type
        self.compute_label = f"{kind} float32"
        self._gates: dict[str, _Gate] = {}
        for recurrent in self.recurrents:
            path = "" if len(self.recurrents) == 1 else recurrent.path
            for layer in range(recurrent.num_layers):
                for direction in range(recurrent.directions):
                    for gate in GATES[recurrent.kind]:
                        name = site_name(self.model_name, path, layer, direction, gate)
                        self._gates[name] = _Gate(recurrent, layer, direction, gate)
        self._plan: list[_Gate] = []
        self.n_steps = 0

    def sites(self) -> list[SiteSpec]:
        """Every gate of every layer, direction and recurrent module, in module order."""
        return [SiteSpec(name, g.recurrent.units(g.gate), self._site_provenance(name, g))
                for name, g in self._gates.items()]  # fmt: skip

    def _site_provenance(self, name: str, where: _Gate) -> dict[str, Any]:
        recurrent = where.recurrent
        out: dict[str, Any] = {
            "module": recurrent.path,
            "module_class": type(recurrent.module).__name__,
            "kind": recurrent.kind,
            "layer": where.layer,
            "direction": DIRECTIONS[where.direction],
            "gate": where.gate,
            "hidden_size": recurrent.hidden_size,
            "proj_size": recurrent.proj_size,
            "gate_activation": _function_name(recurrent.gate_activation),
            "candidate_activation": _function_name(recurrent.candidate_activation),
            "compute": self.compute_label,
        }
        if recurrent.kind == "gru":
            out["gate_convention"] = recurrent.convention
            if where.gate == "h":
                out["update_gate_site"] = name[: -len("h")] + "z"
        return out

    def prepare(self, store: actstore.Store, sites: Sequence[SiteSpec], device: Any) -> None:
        """Encode every sentence as the model reads it; move the model to ``device``."""
        self._plan = [self._gates[s.name] for s in sites]
        self._taps = list(dict.fromkeys(g.recurrent for g in self._plan))
        self.device = device
        self.model.to(device).eval()
        self._budget = self.options.batch_tokens or BUDGET.get(device.type, BUDGET["cpu"])
        self._out = torch.float16 if self.options.dtype == "float16" else torch.float32
        forms = store.columns(["form"], "tokens").column("form").to_pylist()
        sentences = store.columns(["first_row", "n_words"], "sentences")
        first = sentences.column("first_row").to_numpy().astype(np.int64)
        n_words = sentences.column("n_words").to_numpy().astype(np.int64)
        self.bounds = np.stack([first, first + n_words], axis=1)
        self.sentence_of_row = np.repeat(np.arange(len(first)), n_words)
        self.ids: list[np.ndarray] = []
        self.step_first = np.zeros(len(forms), np.int64)
        self.step_last = np.zeros(len(forms), np.int64)
        vocab = self.loaded.vocab
        for lo, hi in self.bounds.tolist():
            words = forms[lo:hi]
            ids, ends = vocab.encode_sentence(words)
            self.ids.append(np.asarray(ids, np.int64))
            last = np.asarray(ends, np.int64)
            self.step_last[lo:hi] = last
            widths = np.fromiter((max(len(w), 1) for w in words), np.int64, len(words))
            self.step_first[lo:hi] = last if vocab.level == "word" else last - widths + 1
        self.lengths = np.fromiter((len(i) for i in self.ids), np.int64, len(self.ids))
        self.n_unknown = sum(int((i == vocab.unk).sum()) for i in self.ids)
        if self.lengths.size and self.lengths.min() < 1:
            empty = int(np.argmin(self.lengths))
            raise ModelError(f"sentence {empty} encodes to no model step")

    def batches(self, lo: int, hi: int) -> list[tuple[np.ndarray, int, int]]:
        """The sentences holding rows ``lo..hi-1``, by length, cut by the step budget."""
        first, last = self.sentence_of_row[lo], self.sentence_of_row[hi - 1]
        segments = np.arange(first, last + 1)
        return [(batch, lo, hi) for batch in batches(self.lengths, segments, self._budget)]

    def compute(self, batch: tuple[np.ndarray, int, int]) -> Block:
        """Run one batch of whole sentences; each chosen site's rows inside ``lo..hi``."""
        sentences, lo, hi = batch
        lengths = self.lengths[sentences]
        ids = np.full((len(sentences), int(lengths.max())), self.loaded.vocab.pad, np.int64)
        for b, s in enumerate(sentences.tolist()):
            ids[b, : lengths[b]] = self.ids[s]
        self.n_steps += int(lengths.sum())
        seen = self.run_model(torch.from_numpy(ids), torch.from_numpy(lengths))
        rows, column = [], []
        for b, s in enumerate(sentences.tolist()):
            start, stop = self.bounds[s]
            inside = np.arange(max(start, lo), min(stop, hi))
            rows.append(inside)
            column.append(np.full(len(inside), b))
        row = np.concatenate(rows)
        where = np.concatenate(column)
        first, last = self.step_first[row], self.step_last[row]
        values = []
        with torch.inference_mode():
            for g in self._plan:
                states = seen[g.recurrent.path].states[g.layer, g.direction][g.gate]
                pooled = pool(states, where, first, last, self.align)
                values.append(pooled.to(self._out).cpu())
        return Block(row, values)

    def run_model(self, ids: torch.Tensor, lengths: torch.Tensor) -> dict[str, Unrolled]:
        """``model(ids)`` on padded ids ``(batch, time)`` until every tapped module has
        been unrolled; the unrolled states by module path, checked against the ids."""
        batch, steps = ids.shape
        given = ids if self.loaded.batch_first else ids.t().contiguous()
        given = given.to(self.device)
        with (
            torch.inference_mode(),
            tap(self._taps, lengths, stop=True) as seen,
            contextlib.suppress(StopModel),
        ):
            self.model(given)
        for recurrent in self._taps:
            unrolled = seen.get(recurrent.path)
            where = f"recurrent module {recurrent.path or 'model'}"
            if unrolled is None:
                raise ModelError(f"{where} did not run when the model was called as model(ids)")
            shape = tuple(unrolled.states[0, 0]["h"].shape[:2])
            if shape == (steps, batch) and not torch.equal(unrolled.lengths.cpu(), lengths.cpu()):
                raise ModelError(
                    f"{where} read sequences of lengths {unrolled.lengths.tolist()[:8]} for "
                    f"sentences of lengths {lengths.tolist()[:8]}: the model reorders or cuts "
                    "its batch (sorting it before packing?); actstore needs model(ids) to keep "
                    "the batch's order and lengths (pack with enforce_sorted=False)"
                )
            if shape != (steps, batch):
                raise ModelError(
                    f"{where} read (time, batch) = {shape} for ids of (time, batch) = "
                    f"{(steps, batch)}: actstore needs one step per word or character"
                    + ("" if self.loaded.batch_first else " (ids passed time-major)")
                )
        return seen

    def provenance(self) -> dict[str, Any]:
        """Model, architecture, weights and vocabulary hashes, alignment."""
        return {
            **self.loaded.provenance(),
            "align": self.align,
            "alignment": ALIGNMENT[self.align],
        }

    def stats(self) -> dict[str, int]:
        """Model steps run (sentences straddling chunks count twice), unknown steps."""
        return {"steps": self.n_steps, "unknown": getattr(self, "n_unknown", 0)}

    def describe(self, stats: Mapping[str, int]) -> tuple[str, str]:
        """``, S model steps`` and ``; U steps are <unk>``."""
        tail = f"; {stats['unknown']:,} steps of the corpus are <unk>" if stats["unknown"] else ""
        return f", {stats['steps']:,} model steps", tail


def pool(
    states: torch.Tensor, batch: np.ndarray, first: np.ndarray, last: np.ndarray, align: str
) -> torch.Tensor:
    """Row *j*: ``states[t, batch[j]]`` at ``t = last[j]`` (``word``, ``last``), ``first[j]``
    (``first``), or the mean over ``first[j]..last[j]`` (``mean``), as float32.

    Examples
    --------
    >>> states = torch.arange(12.0).reshape(3, 2, 2)          # (time, batch, units)
    >>> pool(states, np.array([1, 0]), np.array([0, 1]), np.array([2, 2]), "mean").tolist()
    [[6.0, 7.0], [6.0, 7.0]]
    """
    steps, n_batch, units = states.shape
    device = states.device
    if align != "mean":
        at = first if align == "first" else last
        flat = torch.from_numpy(at * n_batch + batch).to(device)
        return states.reshape(steps * n_batch, units).index_select(0, flat).float()
    weights, keep = pooling_weights(batch, first, last, n_batch, steps, "mean")
    w = torch.from_numpy(weights).to(device)
    most = weights.shape[1]
    summed = torch.bmm(w, states.float().transpose(0, 1)).reshape(n_batch * most, units)
    return summed.index_select(0, torch.from_numpy(keep).to(device))


def _function_name(function: Any) -> str:
    """``torch.sigmoid``, ``extractors.imaginet.steep_sigmoid``: what an activation is."""
    name = getattr(function, "__name__", None)
    if name is not None and getattr(torch, name, None) is function:
        return f"torch.{name}"
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None) or type(function).__name__
    return f"{module}.{qualname}" if module else str(qualname)


def extract(
    store_path: str | Path, options: ExtractOptions, *, loaded: RecurrentModel | None = None
) -> ExtractReport:
    """Extract a recurrent model's gate sites into the store at ``store_path``.

    Examples
    --------
    >>> store.close()
    >>> options = ExtractOptions(model="runs/lm", sites="layer.0.f")  # doctest: +SKIP
    >>> extract(store_path, options).sites  # doctest: +SKIP
    ['lm/layer.0.f']
    """
    return run(store_path, RecurrentExtractor(options, loaded=loaded), options)
