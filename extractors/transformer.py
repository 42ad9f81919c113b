"""Extracting word-aligned hidden states of Hugging Face transformers into a store.

Sites are ``<model>/layer.0`` (the embedding output) to ``<model>/layer.N`` (the last
layer's output; for decoder models the final norm is applied there, as Hugging Face
reports it). Work is organised by chunk: for each chunk of rows still missing, the
sentences that overlap it are sorted by length, batched under a token budget, run
once, pooled to words and handed to a bounded background writer that fills only that
chunk's rows. The same chunk always gets the same batches, so a resumed or sharded
run writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import actstore
from actstore.errors import SchemaError
from extractors import models
from extractors.align import Alignment, Words, align
from extractors.progress import Progress

log = logging.getLogger("actstore.extract")
ALIGN_RULES = ("mean", "first", "last")
DTYPES = ("float16", "bfloat16", "float32")


@dataclass
class ExtractOptions:
    """What ``actstore extract`` takes; see ``docs/EXTRACTION.md``."""

    model: str = "minilm"
    sites: str = "*"
    align: str = "mean"
    dtype: str = "float16"
    device: str = "auto"
    batch_tokens: int | None = None  # default: 1024 on CPU (cache-sized), 16384 on CUDA
    shard: tuple[int, int] = (0, 1)
    overwrite: bool = False
    max_length: int | None = None
    chunk_rows: int | None = None
    writer_queue: int = 8

    def check(self) -> None:
        if self.align not in ALIGN_RULES:
            raise SchemaError(f"--align must be one of {list(ALIGN_RULES)}, got {self.align!r}")
        if self.dtype not in DTYPES:
            raise SchemaError(f"--dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise SchemaError(f"--device must be auto, cpu or cuda[:N], got {self.device!r}")
        index, count = self.shard
        if not 0 <= index < count:
            raise SchemaError(f"--shard I/N needs 0 <= I < N, got {index}/{count}")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise SchemaError(f"--batch-tokens must be positive, got {self.batch_tokens}")
        if self.overwrite and count > 1:
            raise SchemaError("--overwrite cannot be combined with --shard; overwrite first")


@dataclass
class ExtractReport:
    sites: list[str]
    rows: int
    pieces: int
    seconds: float
    chunks_done: int
    n_windowed: int
    device: str


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise SchemaError(f"--shard must look like I/N (e.g. 0/2), got {text!r}") from None
    return index, count


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SchemaError("--device cuda asked for, but no CUDA device is available")
    return device


def select_layers(prefix: str, n_layers: int, pattern: str) -> dict[str, int]:
    """Site name -> hidden-state index for sites matching a glob (on name or component)."""
    names = {f"{prefix}/layer.{i}": i for i in range(n_layers + 1)}
    chosen = {
        n: i
        for n, i in names.items()
        if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n.split("/", 1)[1], pattern)
    }
    if not chosen:
        raise SchemaError(f"--sites {pattern!r} matches none of {', '.join(names)}")
    return chosen


def corpus_sha256(store: actstore.Store) -> str:
    """Hash of the ingested sources, in order: the corpus a site was extracted from."""
    digest = hashlib.sha256()
    for source in store.manifest["sources"]:
        digest.update(source["sha256"].encode())
    return digest.hexdigest()


def load_words(store: actstore.Store) -> tuple[Words, np.ndarray]:
    if not store.n_rows("tokens"):
        raise SchemaError(f"{store.path} has no tokens yet: run `actstore ingest` first")
    table = store.sql(
        "SELECT row, sentence_id, position, form, mwt_start, mwt_form, space_after "
        "FROM tokens ORDER BY row",
        arrow=True,
    )
    words = Words.from_arrow(table)
    sentences = store.sql("SELECT first_row, n_words FROM sentences ORDER BY row", arrow=True)
    first = sentences.column("first_row").to_numpy()
    bounds = np.stack([first, first + sentences.column("n_words").to_numpy()], axis=1)
    return words, bounds


def batches(lengths: np.ndarray, segments: np.ndarray, budget: int) -> list[np.ndarray]:
    """Segments sorted by length and cut into batches of at most ``budget`` padded tokens."""
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


class BackgroundWriter:
    """A thread that writes pooled blocks while the model computes the next batch."""

    def __init__(self, writers: list[actstore.SiteWriter], maxsize: int) -> None:
        self.writers = writers
        self.queue: queue.Queue[tuple[Any, Any, np.ndarray] | None] = queue.Queue(maxsize)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="actstore-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue
            event, values, rows = item
            try:
                if event is not None:
                    event.synchronize()
                for writer, site_values in zip(self.writers, values.numpy(), strict=True):
                    writer.write_rows(rows, site_values)
            except BaseException as exc:  # reported to the main thread
                self.error = exc

    def put(self, event: Any, values: Any, rows: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((event, values, rows))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


class Runner:
    """One model on one device: batches in, word vectors of the chosen layers out."""

    def __init__(
        self, model: Any, layers: list[int], rule: str, device: str, pad_id: int, out_dtype: str
    ) -> None:
        import torch

        self.torch = torch
        self.model = getattr(model, "base_model", model).to(device)
        self.layers = layers
        self.rule = rule
        self.device = device
        self.pad_id = pad_id
        self.cuda = device.startswith("cuda")
        # float16 sites are converted on the device; bfloat16 ones by the writer from float32
        self.out_dtype = torch.float16 if out_dtype == "float16" else torch.float32

    def forward(self, segment_ids: Sequence[list[int]]) -> list[Any]:
        """Hidden states of the chosen layers, each (batch, time, units)."""
        torch = self.torch
        longest = max(len(ids) for ids in segment_ids)
        ids = np.full((len(segment_ids), longest), self.pad_id, dtype=np.int64)
        for b, seg in enumerate(segment_ids):
            ids[b, : len(seg)] = seg
        input_ids = torch.from_numpy(ids)
        mask = torch.from_numpy(
            (np.arange(longest) < np.array([len(x) for x in segment_ids])[:, None]).astype(np.int64)
        )
        if self.cuda:
            input_ids = input_ids.pin_memory().to(self.device, non_blocking=True)
            mask = mask.pin_memory().to(self.device, non_blocking=True)
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda),
        ):
            out = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        return [out.hidden_states[i] for i in self.layers]

    def pool(
        self, hidden: list[Any], batch: np.ndarray, first: np.ndarray, last: np.ndarray
    ) -> Any:
        """Word vectors (layers, words, units) from piece ranges ``[first, last]`` of batch
        rows ``batch`` (one entry per word, words grouped by batch row).

        A block-diagonal pooling matrix (one block per batch row) keeps this exact for
        first/last, cheap, and deterministic on every device (no atomics).
        """
        torch = self.torch
        n_batch, n_time, n_units = hidden[0].shape
        starts = np.searchsorted(batch, np.arange(n_batch))
        slot = np.arange(len(batch)) - starts[batch]
        most = int(slot.max()) + 1
        t = np.arange(n_time)
        if self.rule == "mean":
            inside = (t >= first[:, None]) & (t <= last[:, None])
            rows = inside / (last - first + 1)[:, None]
        else:
            rows = t == (first if self.rule == "first" else last)[:, None]
        weights = np.zeros((n_batch * most, n_time), np.float32)
        keep = batch * most + slot
        weights[keep] = rows
        w = torch.from_numpy(weights.reshape(n_batch, most, n_time)).to(
            self.device, non_blocking=self.cuda
        )
        index = torch.from_numpy(keep).to(self.device, non_blocking=self.cuda)
        with torch.inference_mode():
            pooled = [
                torch.matmul(w, h.float()).reshape(n_batch * most, n_units).index_select(0, index)
                for h in hidden
            ]
            return torch.stack(pooled).to(self.out_dtype)

    def to_host(self, values: Any) -> tuple[Any, Any]:
        """Copy to (pinned) host memory without blocking; the event marks completion."""
        if not self.cuda:
            return None, values
        host = self.torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        host.copy_(values, non_blocking=True)
        event = self.torch.cuda.Event()  # type: ignore[no-untyped-call]
        event.record()
        return event, host


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
    >>> extract("ewt.actstore", ExtractOptions(model="minilm", sites="layer.*"))  # doctest: +SKIP
    """
    options.check()
    started = time.perf_counter()
    spec = models.resolve_model(options.model)
    tokenizer, model = loaded or models.load(spec)
    device = pick_device(options.device)
    n_layers = int(model.config.num_hidden_layers)
    chosen = select_layers(spec.name, n_layers, options.sites)
    limit = options.max_length or models.max_length(tokenizer, model)
    prefix, suffix = models.special_ids(tokenizer)
    index, count = options.shard
    with actstore.open(store_path, mode="a", shared=count > 1) as store:
        words, bounds = load_words(store)
        alignment = align(words, bounds, tokenizer, limit, prefix, suffix)
        provenance = _provenance(spec, tokenizer, model, options, device, limit, alignment, store)
        writers = [
            store.create_site(
                name,
                n_units=int(model.config.hidden_size),
                dtype=options.dtype,
                chunk_rows=options.chunk_rows,
                provenance={**provenance, "hidden_state": layer},
                overwrite=options.overwrite,
            )
            for name, layer in chosen.items()
        ]
        # the alignment of this model's latest extraction (cheap: rewritten every run)
        store.write_result(
            f"align_{spec.name.replace('-', '_').replace('.', '_')}", alignment.table(words)
        )
        pending = sorted(set().union(*(w.pending_chunks() for w in writers)))
        n_chunks = writers[0].n_chunks
        mine = [c for c in pending if c * count // n_chunks == index]
        lengths = np.fromiter((len(ids) for ids in alignment.segment_ids), np.int64)
        budget = options.batch_tokens or (16384 if device.startswith("cuda") else 1024)
        runner = Runner(
            model, list(chosen.values()), options.align, device, _pad_id(tokenizer), options.dtype
        )
        progress = Progress(total=sum(_chunk_rows(writers[0], c) for c in mine), unit="words")
        background = BackgroundWriter(writers, options.writer_queue)
        try:
            for chunk in mine:
                _extract_chunk(runner, background, writers[0], chunk, alignment, lengths, budget)
                progress.advance(_chunk_rows(writers[0], chunk))
        finally:
            background.close()
            progress.close()
        for writer in writers:
            writer.commit()
    return ExtractReport(
        sites=list(chosen),
        rows=len(words.row),
        pieces=alignment.n_pieces,
        seconds=time.perf_counter() - started,
        chunks_done=len(mine),
        n_windowed=alignment.n_windowed,
        device=device,
    )


def _chunk_rows(writer: actstore.SiteWriter, chunk: int) -> int:
    start, stop = writer.chunk_range(chunk)
    return stop - start


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if isinstance(candidate, int):
            return candidate
    return 0


def _extract_chunk(
    runner: Runner,
    background: BackgroundWriter,
    writer: actstore.SiteWriter,
    chunk: int,
    alignment: Alignment,
    lengths: np.ndarray,
    budget: int,
) -> None:
    """All rows of one chunk: the segments holding them, in length-sorted batches."""
    lo, hi = writer.chunk_range(chunk)
    segments = np.unique(alignment.segment[lo:hi])
    rows_of = _rows_by_segment(alignment.segment, lo, hi)
    for batch in batches(lengths, segments, budget):
        hidden = runner.forward([alignment.segment_ids[s] for s in batch.tolist()])
        rows = [rows_of[seg] for seg in batch.tolist()]
        row_index = np.concatenate(rows)
        batch_row = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
        pooled = runner.pool(
            hidden, batch_row, alignment.first[row_index], alignment.last[row_index]
        )
        event, host = runner.to_host(pooled)
        background.put(event, host, row_index)


def _rows_by_segment(segment: np.ndarray, lo: int, hi: int) -> dict[int, np.ndarray]:
    rows = np.arange(lo, hi)
    seg = segment[lo:hi]
    order = np.argsort(seg, kind="stable")
    keys, starts = np.unique(seg[order], return_index=True)
    groups = np.split(rows[order], starts[1:])
    return dict(zip(keys.tolist(), groups, strict=True))


def _provenance(
    spec: models.ModelSpec,
    tokenizer: Any,
    model: Any,
    options: ExtractOptions,
    device: str,
    limit: int,
    alignment: Alignment,
    store: actstore.Store,
) -> dict[str, Any]:
    return {
        "extractor": "transformer",
        "model": spec.name,
        "model_path": str(spec.folder / (spec.gguf_file or "")),
        "model_class": type(model).__name__,
        "weights_sha256": models.sha256_files(spec.weight_files),
        "tokenizer": f"{type(tokenizer).__name__} {tokenizer.name_or_path}",
        "vocab_size": len(tokenizer),
        "align": options.align,
        "dtype": options.dtype,
        "compute": "cuda autocast bfloat16" if device.startswith("cuda") else "cpu float32",
        "max_length": limit,
        "n_windowed_sentences": alignment.n_windowed,
        "corpus_sha256": corpus_sha256(store),
        "actstore_version": actstore.__version__,
    }
