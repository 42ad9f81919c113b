"""Extraction speed: MiniLM over EWT dev, three variants over the same sentences in one run.

(a) bare forward passes with the same batches as (b), nothing stored;
(b) ``actstore extract`` of all 7 sites (alignment, pooling, float16 conversion,
    background writing, commit) into a fresh store;
(c) the common baseline (as NeuroX does): one sentence per forward pass, every layer
    pooled to words and saved as one file per sentence.

Goals: (b)/(a) <= 1.15 and (c)/(b) >= 5. Also reports store bytes against raw float32.
The model is loaded once, outside the timings.

Run: ``.venv/bin/python benchmarks/bench_extract.py [--device cpu|cuda] [--corpus FILE]``.
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
from extractors import models
from extractors.align import align
from extractors.transformer import (
    ExtractOptions,
    Runner,
    batches,
    extract,
    load_words,
    pick_device,
)


def bare_forward(store_path: Path, loaded: tuple, device: str, budget: int) -> None:  # type: ignore[type-arg]
    tokenizer, model = loaded
    with actstore.open(store_path) as store:
        words, bounds = load_words(store)
    prefix, suffix = models.special_ids(tokenizer)
    alignment = align(words, bounds, tokenizer, models.max_length(tokenizer, model), prefix, suffix)
    lengths = np.fromiter((len(ids) for ids in alignment.segment_ids), np.int64)
    layers = list(range(model.config.num_hidden_layers + 1))
    runner = Runner(model, layers, "mean", device, 0, "float16")
    chunk_rows = actstore.arrays.default_chunk_rows(
        len(words.row), model.config.hidden_size, "float16"
    )
    for lo in range(0, len(words.row), chunk_rows):
        segments = np.unique(alignment.segment[lo : lo + chunk_rows])
        for batch in batches(lengths, segments, budget):
            runner.forward([alignment.segment_ids[s] for s in batch.tolist()])
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def one_sentence_per_pass(store_path: Path, loaded: tuple, device: str, out: Path) -> None:  # type: ignore[type-arg]
    tokenizer, model = loaded
    model = model.to(device)
    with actstore.open(store_path) as store:
        sentences = store.sql("SELECT row, text FROM sentences ORDER BY row").itertuples(
            index=False
        )
    out.mkdir(exist_ok=True)
    for row, text in sentences:
        encoded = tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
        offsets = encoded.pop("offset_mapping")[0]
        with torch.inference_mode():
            hidden = model(**encoded.to(device), output_hidden_states=True).hidden_states
        states = torch.stack(hidden)[:, 0].float().cpu().numpy()
        word_of = np.cumsum([a > 0 and text[a - 1] == " " for a, _ in offsets.tolist()])
        n_words = int(word_of[-1]) + 1
        pooled = np.stack([states[:, word_of == w].mean(axis=1) for w in range(n_words)], axis=1)
        np.save(out / f"sentence-{row:06d}.npy", pooled)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--corpus", type=Path, default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    corpus = args.corpus or corpus_path("en_ewt", "dev")
    loaded = models.load(models.resolve_model("minilm"))
    budget = 16384 if device.startswith("cuda") else 1024
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        with actstore.create(template) as store:
            actstore.ingest_conllu(store, [corpus])
        runs = iter(range(100))
        stores: list[Path] = []

        def run_extract() -> None:
            path = Path(tmp) / f"run{next(runs)}"
            shutil.copytree(template, path, ignore=shutil.ignore_patterns(".lock"))
            extract(path, ExtractOptions(model="minilm", device=device), loaded=loaded)
            stores.append(path)

        best = compare(
            {
                "(a) bare forward": lambda: bare_forward(template, loaded, device, budget),
                "(b) actstore extract": run_extract,
                "(c) one sentence per pass": lambda: one_sentence_per_pass(
                    template, loaded, device, Path(tmp) / "files"
                ),
            },
            repeat=3,
        )
        with actstore.open(stores[-1]) as store:
            info = store.info()
            n_rows = store.n_rows("tokens")
        array_bytes = info["bytes"]["arrays"]
        raw = n_rows * 384 * 7 * 4
    print(
        f"MiniLM-L6 over {corpus.name}: {n_rows:,} words, device {device}; best of 3, interleaved"
    )
    for name, seconds in best.items():
        print(f"  {name:<28} {seconds:8.2f} s  {n_rows / seconds:10,.0f} words/s")
    a, b, c = best.values()
    print(f"(b)/(a) = {b / a:.3f} (goal <= 1.15): {'met' if b / a <= 1.15 else 'MISSED'}")
    print(f"(c)/(b) = {c / b:.2f} (goal >= 5): {'met' if c / b >= 5 else 'MISSED'}")
    print(
        f"store arrays: {array_bytes / 2**20:.1f} MiB for 7 sites; raw float32 "
        f"{raw / 2**20:.1f} MiB; ratio {array_bytes / raw:.3f}"
    )


if __name__ == "__main__":
    main()
