"""The read path against the hardware: scans, row selections and correlation passes.

Everything is measured in one run on one synthetic float16 site (a store whose
``tokens`` table has sentences of 3-29 words and a ``depth`` column), best of 3 with
the variants taking turns, so machine noise hits all alike. The limits are measured on
the same chunk files in the same run:

- **raw**: every chunk file read into one reused buffer per thread (1 and 2 threads;
  the faster counts), the page-cache limit no reader can beat;
- **raw + decode**: the same, plus torch's float16 -> float32 ``copy_`` into a reused
  float32 buffer (what any float32 analysis must at least do).

Goals (ratios in one run): ``store.acts`` of the stored dtype within 2x raw, float32
``store.acts`` within 2x raw + decode; a random 5% of rows in at most 15% of the full
float32 scan, all rows of 5% of the sentences in at most 8%; the Pearson pass within
1.25x raw + decode, Pearson and exact Spearman together within 4x.

``--memory`` instead runs the Pearson pass in a fresh process on stores of 1x and 16x
``N_ROWS // 16`` rows and compares their peak RSS (goal: 16x within 1.25x of 1x).

Run: ``.venv/bin/python benchmarks/bench_read.py [N_ROWS] [N_UNITS] [--memory]``
(defaults 1,000,000 x 384; the issue's second size is 250,000 x 4,096).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from dask.delayed import delayed
from timing import compare, peak_rss_mib

import actstore
from actstore.writer import SiteWriter
from queries.correlate import unit_correlations
from queries.engine import compute

SITE = "synthetic/layer.0"


def build(path: Path, n_rows: int, n_units: int, chunk_rows: int | None = None) -> None:
    """A store with ``n_rows`` tokens in sentences of 3-29 words and one float16 site
    (in chunks of ``chunk_rows`` rows; None: the default)."""
    rng = np.random.default_rng(0)
    depth = rng.integers(1, 12, n_rows).astype(np.int32)
    lengths = rng.integers(3, 30, n_rows // 3 + 1)
    sentence = np.repeat(np.arange(lengths.size), lengths)[:n_rows]
    with actstore.create(path) as store:
        with store.transaction():
            columns = {"row": np.arange(n_rows), "sentence_id": sentence, "depth": depth}
            store.append_table("tokens", pa.table(columns))
        fill_site(store.create_site(SITE, n_units=n_units, chunk_rows=chunk_rows), depth, rng)


def fill_site(writer: SiteWriter, depth: np.ndarray, rng: np.random.Generator) -> None:
    """Write and commit a synthetic site: blocks of 65,536 rows of one random base,
    scaled per block (so blocks differ), ``depth`` added to unit 0 (so it correlates)."""
    base = rng.standard_normal((65536, writer.n_units), dtype=np.float32)
    for start, stop in writer.pending_ranges():
        for a in range(start, stop, 65536):
            b = min(a + 65536, stop)
            block = base[: b - a] * np.float32(1 + (a // 65536) % 7 / 10)
            block[:, 0] += depth[a:b]
            writer.write(a, block)  # the writer stores it in the site's dtype
    writer.commit()


def chunk_files(store: actstore.Store) -> list[Path]:
    info = store.site(SITE)
    return [store.path / info.path / "c" / str(c) / "0" for c in range(info.n_chunks)]


def raw_reader(files: list[Path], n_units: int, threads: int, decode: bool) -> Callable[[], None]:
    """Read every file into a reused buffer per thread (and decode it into another)."""
    size = os.path.getsize(files[0])

    def part(names: list[Path]) -> None:
        buffer = np.empty(size, np.uint8)
        source = torch.from_numpy(buffer.view(np.float16).reshape(-1, n_units))
        decoded = torch.empty(source.shape, dtype=torch.float32)
        for name in names:
            with open(name, "rb", buffering=0) as file:
                file.readinto(buffer.data)
            if decode:
                decoded.copy_(source)

    def run() -> None:
        torch.set_num_threads(1)
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(part, [files[i::threads] for i in range(threads)]))

    return run


def scan(store: actstore.Store, rows: np.ndarray | None, dtype: str | None) -> Callable[[], None]:
    """Compute every block of ``store.acts`` (each block read and decoded, then dropped)."""

    def run() -> None:
        blocks = store.acts(SITE, rows, dtype=dtype).data.to_delayed().ravel().tolist()
        compute(*[delayed(len)(b) for b in blocks])

    return run


def selections(store: actstore.Store) -> tuple[np.ndarray, np.ndarray]:
    """A random 5% of rows, and every row of a random 5% of the sentences."""
    rng = np.random.default_rng(1)
    n = store.n_rows()
    scattered = np.sort(rng.choice(n, n // 20, replace=False))
    sentence = store.columns(["sentence_id"]).column("sentence_id").to_numpy()
    chosen = rng.random(int(sentence.max()) + 1) < 0.05
    return scattered, np.flatnonzero(chosen[sentence])


def speed(n_rows: int, n_units: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("ACTSTORE_BENCH_DIR")) as tmp:
        build(Path(tmp) / "s", n_rows, n_units)
        store = actstore.open(Path(tmp) / "s")
        files = chunk_files(store)
        scattered, sentences = selections(store)
        best = compare(
            {
                "raw, 1 thread": raw_reader(files, n_units, 1, decode=False),
                "raw, 2 threads": raw_reader(files, n_units, 2, decode=False),
                "raw + decode, 1 thread": raw_reader(files, n_units, 1, decode=True),
                "raw + decode, 2 threads": raw_reader(files, n_units, 2, decode=True),
                "acts, float16": scan(store, None, None),
                "acts, float32": scan(store, None, "float32"),
                "5% rows at random": scan(store, scattered, "float32"),
                "5% of sentences": scan(store, sentences, "float32"),
                "pearson": lambda: unit_correlations(store, SITE, "depth", spearman=False),
                "pearson + spearman": lambda: unit_correlations(store, SITE, "depth"),
            }
        )
        store.close()
    gib = n_rows * n_units * 2 / 2**30
    raw = min(best["raw, 1 thread"], best["raw, 2 threads"])
    decoded = min(best["raw + decode, 1 thread"], best["raw + decode, 2 threads"])
    full = best["acts, float32"]
    print(f"{n_rows:,} rows x {n_units} units float16 ({gib:.2f} GiB), {len(files)} chunks")
    print(f"  {'pass':<24} {'time':>8} {'GiB/s':>7} {'x raw':>6} {'x raw+dec':>9}")
    for name, seconds in best.items():
        print(
            f"  {name:<24} {seconds:7.3f}s {gib / seconds:7.2f} {seconds / raw:6.2f}"
            f" {seconds / decoded:9.2f}"
        )
    goals = [
        ("acts float16 / raw", best["acts, float16"] / raw, 2.0),
        ("acts float32 / raw + decode", full / decoded, 2.0),
        ("5% rows at random / full float32 scan", best["5% rows at random"] / full, 0.15),
        ("5% of sentences / full float32 scan", best["5% of sentences"] / full, 0.08),
        ("pearson / raw + decode", best["pearson"] / decoded, 1.25),
        ("pearson + spearman / raw + decode", best["pearson + spearman"] / decoded, 4.0),
    ]
    for name, ratio, goal in goals:
        print(f"{name} = {ratio:.2f} (goal <= {goal}): {'met' if ratio <= goal else 'MISSED'}")
    print(f"peak RSS {peak_rss_mib():,.0f} MiB")


def pearson_peak(path: str) -> None:
    """Child process: one Pearson pass over the store at ``path``; print its peak RSS."""
    with actstore.open(path) as store:
        unit_correlations(store, SITE, "depth", spearman=False)
    print(json.dumps({"peak_mib": peak_rss_mib()}))


def memory(n_rows: int, n_units: int) -> None:
    peaks = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("ACTSTORE_BENCH_DIR")) as tmp:
        for factor in (1, 16):
            rows = n_rows // 16 * factor
            path = Path(tmp) / f"x{factor}"
            build(path, rows, n_units)
            child = [sys.executable, __file__, "--pearson-peak", str(path)]
            out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            peaks[factor] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
            print(f"  {rows:>11,} rows x {n_units}: Pearson pass peak RSS {peaks[factor]:,.0f} MiB")
    ratio = peaks[16] / peaks[1]
    print(
        f"peak 16x / peak 1x = {ratio:.2f} (goal <= 1.25): {'met' if ratio <= 1.25 else 'MISSED'}"
    )


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--pearson-peak" in sys.argv:
        pearson_peak(args[0])
        return
    n_rows = int(args[0]) if args else 1_000_000
    n_units = int(args[1]) if len(args) > 1 else 384
    if "--memory" in sys.argv:
        memory(n_rows, n_units)
    else:
        speed(n_rows, n_units)


if __name__ == "__main__":
    main()
