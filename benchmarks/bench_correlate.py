"""Correlation pass against simply reading and decoding the same chunks.

Baseline: reading every chunk of the site through ``store.acts`` (float16 -> float32)
and touching it (a sum), no statistics. Goal: the Pearson pass takes at most 1.25x
that time; the exact Spearman passes are reported beside it, and so are raw float16
reads without decoding (the floor no decoding analysis can beat).

Run: ``.venv/bin/python benchmarks/bench_correlate.py [N_ROWS] [N_UNITS]`` (a synthetic
float16 site in a store with EWT dev's tokens repeated to N_ROWS rows).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from dask.delayed import delayed
from timing import compare, peak_rss_mib

import actstore
from queries.correlate import unit_correlations
from queries.engine import compute


def build(path: Path, n_rows: int, n_units: int) -> actstore.Store:
    store = actstore.create(path)
    rng = np.random.default_rng(0)
    depth = rng.integers(1, 12, n_rows).astype(np.int32)
    with store.transaction():
        store.append_table("tokens", pa.table({"row": np.arange(n_rows), "depth": depth}))
    writer = store.create_site("synthetic/layer.0", n_units=n_units)
    for start, stop in writer.pending_ranges():
        for a in range(start, stop, 65536):
            b = min(a + 65536, stop)
            block = rng.standard_normal((b - a, n_units), dtype=np.float32)
            block[:, 0] += depth[a:b]
            writer.write(a, block)
    writer.commit()
    return store


def main() -> None:
    n_rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    n_units = int(sys.argv[2]) if len(sys.argv) > 2 else 384
    with tempfile.TemporaryDirectory() as tmp:
        store = build(Path(tmp) / "s", n_rows, n_units)
        site = "synthetic/layer.0"

        def read() -> None:
            blocks = store.acts(site).data.to_delayed().ravel().tolist()
            compute(*[b.sum() for b in blocks])

        def read_raw() -> None:  # each block read, then dropped (none kept as a result)
            blocks = store.acts(site, dtype=None).data.to_delayed().ravel().tolist()
            compute(*[delayed(len)(b) for b in blocks])

        best = compare(
            {
                "read + decode": read,
                "read float16 only": read_raw,
                "pearson pass": lambda: unit_correlations(store, site, "depth", spearman=False),
                "pearson + spearman": lambda: unit_correlations(store, site, "depth"),
            }
        )
        store.close()
    gib = n_rows * n_units * 2 / 2**30
    print(f"{n_rows:,} rows x {n_units} units float16 ({gib:.2f} GiB); best of 3, interleaved")
    for name, seconds in best.items():
        print(f"  {name:<20} {seconds:7.2f} s  {gib / seconds:6.2f} GiB/s")
    ratio = best["pearson pass"] / best["read + decode"]
    print(f"pearson / read = {ratio:.2f} (goal <= 1.25): {'met' if ratio <= 1.25 else 'MISSED'}")
    raw = best["pearson pass"] / best["read float16 only"]
    print(f"pearson / float16 read without decoding = {raw:.2f} (no goal: the decode-free floor)")
    spearman = best["pearson + spearman"] / best["read + decode"]
    print(f"pearson + exact spearman / read = {spearman:.2f} (three passes)")
    print(f"peak RSS {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
