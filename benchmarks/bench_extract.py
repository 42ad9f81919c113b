"""Extraction speed: MiniLM over EWT dev, three variants over the same sentences in one run.

(a) bare forward passes with the same batches as (b), nothing stored;
(b) ``actstore extract`` of all 7 sites (alignment, pooling, float16 conversion,
    background writing, commit) into a fresh store;
(c) the common baseline (as NeuroX does): one sentence per forward pass, every layer
    pooled to words and saved as one file per sentence.
(d) the whole command, ``actstore extract`` in a fresh process (imports, model load,
    hashing, alignment, commit): wall time and peak RSS, once.

Goals: (b)/(a) <= 1.15, (c)/(b) >= 5 and (d) peak RSS <= 600 MiB. Also reports store
bytes against raw float32. The model is loaded once, outside the timings of (a)-(c).

Run: ``.venv/bin/python benchmarks/bench_extract.py [--device cpu|cuda] [--corpus FILE]
[--no-cli]``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from timing import compare

import actstore
from actstore.data import corpus_path
from actstore.devices import resolve_device
from extractors import models
from extractors.align import align
from extractors.runner import Runner
from extractors.transformer import ExtractOptions, batches, extract, load_words


def bare_forward(
    store_path: Path,
    loaded: tuple,  # type: ignore[type-arg]
    device: torch.device,
    budget: int,
    chunk_rows: int,
) -> None:
    """The model alone on the batches (b) runs: the floor no extraction can beat."""
    tokenizer, model = loaded
    with actstore.open(store_path) as store:
        words, bounds = load_words(store)
    prefix, suffix = models.special_ids(tokenizer)
    alignment = align(words, bounds, tokenizer, models.max_length(tokenizer, model), prefix, suffix)
    lengths = np.fromiter((len(ids) for ids in alignment.segment_ids), np.int64)
    layers = list(range(model.config.num_hidden_layers + 1))
    runner = Runner(model, layers, "mean", device, 0, "float16")
    for lo in range(0, len(words.row), chunk_rows):
        segments = np.unique(alignment.segment[lo : lo + chunk_rows])
        for batch in batches(lengths, segments, budget):
            runner.forward([alignment.segment_ids[s] for s in batch.tolist()])
    if device.type == "cuda":
        torch.cuda.synchronize()


def one_sentence_per_pass(store_path: Path, loaded: tuple, device: torch.device, out: Path) -> None:  # type: ignore[type-arg]
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
    parser.add_argument("--no-cli", action="store_true", help="skip (d), the fresh process")
    args = parser.parse_args()
    device = resolve_device(args.device)
    corpus = args.corpus or corpus_path("en_ewt", "dev")
    loaded = models.load(models.resolve_model("minilm"))
    budget = 16384 if device.type == "cuda" else 1024
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        with actstore.create(template) as store:
            actstore.ingest_conllu(store, [corpus])
        runs = iter(range(100))
        stores: list[Path] = []
        cli = None if args.no_cli else whole_command(template, Path(tmp) / "cli", device)

        def run_extract() -> None:
            path = Path(tmp) / f"run{next(runs)}"
            shutil.copytree(template, path, ignore=shutil.ignore_patterns(".lock"))
            extract(path, ExtractOptions(model="minilm", device=str(device)), loaded=loaded)
            stores.append(path)

        run_extract()  # warm-up; its chunks are the ones (a) batches over
        with actstore.open(stores[-1]) as store:
            chunk_rows = store.site("minilm/layer.0").chunk_rows

        best = compare(
            {
                "(a) bare forward": lambda: bare_forward(
                    template, loaded, device, budget, chunk_rows
                ),
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
    if cli is not None:
        wall, peak = cli
        print(
            f"(d) actstore extract, fresh process: {wall:.2f} s wall, (d)/(b) = {wall / b:.2f}, "
            f"(d)/(a) = {wall / a:.2f}; peak RSS {peak:.0f} MiB (goal <= 600): "
            f"{'met' if peak <= 600 else 'MISSED'}"
        )


def whole_command(template: Path, path: Path, device: torch.device) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``actstore extract`` run as a user runs it."""
    shutil.copytree(template, path, ignore=shutil.ignore_patterns(".lock"))
    command = [sys.executable, "-m", "actstore.cli", "extract", str(path), "-q"]
    started = time.perf_counter()
    subprocess.run([*command, "--device", str(device)], check=True)
    wall = time.perf_counter() - started
    shutil.rmtree(path)
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


if __name__ == "__main__":
    main()
