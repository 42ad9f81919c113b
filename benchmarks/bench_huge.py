"""A store larger than this machine's memory: a Pearson pass and a probe from a cold cache.

Run by hand, not in CI (it writes ~32 GB and takes several minutes):
``.venv/bin/python benchmarks/bench_huge.py [N_ROWS] [N_UNITS] [--dir DIR]``
(default 4,000,000 x 4,096 float16 = 30.5 GiB, in ``runs/bench``).

1. Writes the site with the writer API (a seeded random block, shifted per block so no
   two blocks are equal), with a ``tokens`` table of sentences and a ``depth`` column.
2. From a cold page cache (``/proc/sys/vm/drop_caches`` when allowed, else the store is
   bigger than the cache anyway), measures in this order: ``cat`` of every chunk file
   to ``/dev/null`` (the limit), a Pearson pass (``unit_correlations``, no Spearman) and
   a one-epoch UPOS-like probe (``probe``), each in a fresh process whose peak RSS is
   reported. Goal: peak RSS under 2 GiB; throughput reported as a ratio to ``cat``.
3. Deletes the store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from timing import peak_rss_mib

import actstore

SITE = "huge/layer.0"
BLOCK = 8192


def build(path: Path, n_rows: int, n_units: int) -> None:
    rng = np.random.default_rng(0)
    depth = rng.integers(1, 12, n_rows).astype(np.int32)
    lengths = rng.integers(3, 30, n_rows // 3 + 1)
    sentence = np.repeat(np.arange(lengths.size), lengths)[:n_rows]
    label = np.array(["A", "B", "C", "D", "E", "F"])[np.minimum(depth // 2, 5)]
    with actstore.create(path) as store:
        with store.transaction():
            columns = {"row": np.arange(n_rows), "sentence_id": sentence, "depth": depth}
            store.append_table("tokens", pa.table({**columns, "label": label}))
        writer = store.create_site(SITE, n_units=n_units)
        base = rng.standard_normal((BLOCK, n_units), dtype=np.float32)
        signal = np.zeros(n_units, np.float32)
        signal[:8] = 0.5
        for start, stop in writer.pending_ranges():
            for a in range(start, stop, BLOCK):
                b = min(a + BLOCK, stop)
                block = np.roll(base[: b - a], a // BLOCK, axis=1)
                block += depth[a:b, None] * signal
                writer.write(a, block)
        writer.commit()


def drop_caches() -> str:
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return "page cache not dropped (no permission): the store exceeds memory instead"
    return "page cache dropped"


def timed(command: list[str]) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - start
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return seconds, json.loads(lines[-1]) if lines else {}


def child(kind: str, path: str) -> None:
    """In a fresh process: one pass of ``kind`` over the store; print peak RSS as JSON."""
    from queries.correlate import unit_correlations
    from queries.options import ProbeOptions
    from queries.probe import probe

    with actstore.open(path) as store:
        if kind == "pearson":
            table = unit_correlations(store, SITE, "depth", spearman=False)
            best = float(table["value"].abs().max())
        else:
            options = ProbeOptions("label", device="cpu", epochs=1.0, min_steps=0)
            table = probe(store, SITE, options)
            best = float(table.set_index("metric")["value"]["accuracy"])
    print(json.dumps({"peak_mib": peak_rss_mib(), "value": best}))


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--child" in sys.argv:
        child(args[0], args[1])
        return
    n_rows = int(args[0]) if args else 4_000_000
    n_units = int(args[1]) if len(args) > 1 else 4096
    folder = (
        Path(sys.argv[sys.argv.index("--dir") + 1]) if "--dir" in sys.argv else Path("runs/bench")
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "huge.actstore"
    shutil.rmtree(path, ignore_errors=True)
    gib = n_rows * n_units * 2 / 2**30
    try:
        start = time.perf_counter()
        build(path, n_rows, n_units)
        written = time.perf_counter() - start
        rate = gib / written
        print(f"wrote {n_rows:,} x {n_units} float16 ({gib:.1f} GiB) in {written:.0f} s")
        print(f"  ({rate:.2f} GiB/s); writer peak RSS {peak_rss_mib():,.0f} MiB")
        with actstore.open(path) as store:
            info = store.site(SITE)
            files = [str(path / info.path / "c" / str(c) / "0") for c in range(info.n_chunks)]
        print(drop_caches())
        start = time.perf_counter()
        chunks = "\0".join(files).encode()  # too many for one command line: xargs cuts them
        xargs = ["xargs", "-0", "cat"]
        subprocess.run(xargs, input=chunks, stdout=subprocess.DEVNULL, check=True)
        cat = time.perf_counter() - start
        print(f"  cat of the chunk files   {cat:7.1f} s  {gib / cat:5.2f} GiB/s (the limit)")
        for kind in ("pearson", "probe"):
            drop_caches()
            seconds, report = timed([sys.executable, __file__, "--child", kind, str(path)])
            print(
                f"  {kind:<24} {seconds:7.1f} s  {gib / seconds:5.2f} GiB/s  "
                f"{seconds / cat:4.2f}x cat  peak RSS {report.get('peak_mib', 0):,.0f} MiB  "
                f"({'max |r|' if kind == 'pearson' else 'accuracy'} {report.get('value', 0):.3f})"
            )
    finally:
        shutil.rmtree(path, ignore_errors=True)
        print(f"deleted {path}")


if __name__ == "__main__":
    main()
