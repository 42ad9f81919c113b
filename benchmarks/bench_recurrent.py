"""Gate extraction speed: a 2-layer 256-unit word LSTM language model over EWT dev.

Five variants over the same batches (the extractor's own: each chunk's sentences by
length, cut at ``--batch-tokens`` padded steps), the model loaded once:

(a) the fused forward alone: ``model(ids)`` (embeddings, ``nn.LSTM``, the output layer);
(a') the fused recurrent part alone: embeddings and ``nn.LSTM``, no output layer (the
     extractor stops after the last recurrent module, so this is its fair floor);
(b) gate extraction: :meth:`RecurrentExtractor.compute` on every batch (all 12 sites
    ``i, f, g, o, c, h`` of both layers unrolled, gathered per word, float16);
(c) the physical limit: the same multiply-adds as plain matrix products over all steps
    at once (input and recurrent projections of both layers, no recurrence).

(d) the whole extraction, ``extract`` into a fresh store (driver, writer thread, commit).

Goal: (b)/(a') <= 2. Run: ``.venv/bin/python benchmarks/bench_recurrent.py [--device
cpu|cuda] [--corpus FILE] [--batch-tokens N] [--threads N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import compare

import actstore
from actstore.data import corpus_path
from actstore.devices import resolve_device
from extractors.recurrent import RecurrentExtractor, extract
from extractors.recurrent_load import RecurrentModel
from extractors.verbs import ExtractOptions
from extractors.vocab import Vocabulary

HIDDEN, LAYERS = 256, 2


class WordLM(torch.nn.Module):
    """Embeddings, a 2-layer LSTM, next-word logits: the benchmark's model."""

    def __init__(self, n_vocab: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(n_vocab, HIDDEN, padding_idx=0)
        self.lstm = torch.nn.LSTM(HIDDEN, HIDDEN, LAYERS, batch_first=True)
        self.output = torch.nn.Linear(HIDDEN, n_vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(self.embedding(ids))
        logits: torch.Tensor = self.output(states)
        return logits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--batch-tokens", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: its own)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    corpus = args.corpus or corpus_path("en_ewt", "dev")
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        with actstore.create(template) as store:
            actstore.ingest_conllu(store, [corpus])
            forms = store.columns(["form"]).column("form").to_pylist()
        vocab = Vocabulary.build([forms], level="word", min_count=2)
        torch.manual_seed(0)
        model = WordLM(len(vocab)).eval()
        loaded = RecurrentModel("lm", model, vocab, "factory", "bench:WordLM", ())
        options = ExtractOptions(
            model="bench:lm", weights=Path("-"), vocab=Path("-"), device=str(device),
            batch_tokens=args.batch_tokens,
        )  # fmt: skip
        runs = iter(range(100))
        reports = []

        def whole() -> None:
            path = Path(tmp) / f"run{next(runs)}"
            shutil.copytree(template, path, ignore=shutil.ignore_patterns(".lock"))
            reports.append(extract(path, options, loaded=loaded))

        whole()  # warm-up; its chunks are the ones the other variants batch over
        with actstore.open(Path(tmp) / "run0") as store:
            chunk_rows = store.site("lm/layer.0.h").chunk_rows
            n_rows = store.n_rows("tokens")
        extractor = RecurrentExtractor(options, loaded=loaded)
        with actstore.open(template, mode="a") as store:
            extractor.prepare(store, extractor.sites(), device)
        batches = [
            b
            for lo in range(0, n_rows, chunk_rows)
            for b in extractor.batches(lo, min(lo + chunk_rows, n_rows))
        ]
        padded = [pad(extractor, b[0]) for b in batches]
        n_steps = sum(int(extractor.lengths[b[0]].sum()) for b in batches)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        def fused(full: bool) -> None:
            with torch.inference_mode():
                for ids in padded:
                    if full:
                        model(ids)
                    else:
                        model.lstm(model.embedding(ids))
            sync()

        def gates() -> None:
            for batch in batches:
                extractor.compute(batch)
            sync()

        x = torch.randn(n_steps, HIDDEN, device=device)
        weights = [torch.randn(4 * HIDDEN, HIDDEN, device=device) for _ in range(2 * LAYERS)]

        def gemm() -> None:
            with torch.inference_mode():
                for w in weights:
                    torch.mm(x, w.t())
            sync()

        best = compare(
            {
                "(a) fused forward, model(ids)": lambda: fused(True),
                "(a') fused embeddings + LSTM": lambda: fused(False),
                "(b) gate extraction, compute": gates,
                "(c) plain GEMMs, same FLOPs": gemm,
                "(d) extract into a fresh store": whole,
            },
            repeat=args.repeat,
        )
    print(
        f"2-layer {HIDDEN}-unit word LSTM LM (vocab {len(vocab):,}) over {corpus.name}: "
        f"{n_rows:,} words, {len(batches)} batches ({n_steps:,} model steps: sentences "
        f"straddling chunks twice), device {device}, {torch.get_num_threads()} threads; "
        f"best of {args.repeat}, interleaved"
    )
    for name, seconds in best.items():
        print(f"  {name:<32} {seconds:8.3f} s  {n_rows / seconds:10,.0f} words/s")
    a, a_lstm, b, c, d = best.values()
    print(f"(b)/(a') = {b / a_lstm:.2f} (goal <= 2): {'met' if b / a_lstm <= 2 else 'MISSED'}")
    print(f"(b)/(a) = {b / a:.2f}; (b)/(c) = {b / c:.1f} (the physical limit)")
    print(
        f"(d) = {len(reports[-1].sites)} sites, float16, writer thread, commit: "
        f"(d)/(b) = {d / b:.2f}"
    )


def pad(extractor: RecurrentExtractor, sentences: np.ndarray) -> torch.Tensor:
    """The padded ids the extractor builds for a batch of sentences."""
    lengths = extractor.lengths[sentences]
    ids = np.zeros((len(sentences), int(lengths.max())), np.int64)
    for b, s in enumerate(sentences.tolist()):
        ids[b, : lengths[b]] = extractor.ids[s]
    return torch.from_numpy(ids).to(extractor.device)


if __name__ == "__main__":
    main()
