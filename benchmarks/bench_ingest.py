"""Ingest speed and memory.

Speed: actstore's whole ingest against parsing alone with the `conllu` package
(``conllu.parse`` of the same file: no validation, no derived columns, nothing
written; goal: ratio <= 1.0), and against the physical limit, reading the file's bytes
into one reused buffer.

Memory: peak RSS of ``actstore ingest`` in a fresh process, for the file and for the
file repeated 4 and 8 times (sentence ids made unique). Goal: bounded, the peak not
growing with the file (it grew 17x the file size before ingest streamed), reported
against the peak of a process that only imports what ingest imports.

Run: ``.venv/bin/python benchmarks/bench_ingest.py [FILE]`` (default: EWT train).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import conllu
from timing import compare

import actstore
from actstore.data import corpus_path

PEAK = """
import sys, pathlib
sys.path.insert(0, {bench!r})
from timing import peak_rss_mib
import actstore, actstore.ingest  # what ingest imports (actstore alone is lazy)
if sys.argv[1] != "-":
    with actstore.create(sys.argv[2]) as store:
        actstore.ingest_conllu(store, [sys.argv[1]])
print(peak_rss_mib())
"""


def raw_read(path: Path, buffer: bytearray) -> None:
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(view):
            pass


def peak_mib(source: str, store: Path) -> float:
    code = PEAK.format(bench=str(Path(__file__).parent))
    out = subprocess.run(
        [sys.executable, "-c", code, source, str(store)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else corpus_path("en_ewt", "train")
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1000))
        buffer = bytearray(8 << 20)

        def ingest() -> None:
            with actstore.create(Path(tmp) / f"s{next(counter)}") as store:
                actstore.ingest_conllu(store, [path])

        best = compare(
            {
                "actstore ingest": ingest,
                "conllu.parse": lambda: conllu.parse(path.read_text(encoding="utf-8")),
                "raw read (limit)": lambda: raw_read(path, buffer),
            }
        )
        with actstore.open(Path(tmp) / "s0") as store:
            words = store.n_rows("tokens")
        text = path.read_text(encoding="utf-8")
        sizes = {}
        for times in (1, 4, 8):
            big = Path(tmp) / f"x{times}.conllu"
            big.write_text(
                "".join(text.replace("# sent_id = ", f"# sent_id = c{i}-") for i in range(times)),
                encoding="utf-8",
            )
            sizes[times] = (big.stat().st_size, peak_mib(str(big), Path(tmp) / f"m{times}"))
        imports = peak_mib("-", Path(tmp) / "none")
    print(f"file: {path} ({words:,} words, {path.stat().st_size / 2**20:.1f} MiB); best of 3")
    for name, seconds in best.items():
        print(f"  {name:<18} {seconds:7.3f} s  {words / seconds:>12,.0f} words/s")
    ratio = best["actstore ingest"] / best["conllu.parse"]
    print(f"ratio ingest / conllu.parse = {ratio:.3f} (goal <= 1.0): "
          f"{'met' if ratio <= 1 else 'MISSED'}")  # fmt: skip
    print(f"ratio ingest / raw read = {best['actstore ingest'] / best['raw read (limit)']:.0f}")
    print(f"peak RSS (imports alone: {imports:.0f} MiB):")
    for times, (size, peak) in sizes.items():
        print(f"  {times}x the file ({size / 2**20:6.1f} MiB): {peak:6.0f} MiB, "
              f"{peak / (size / 2**20):5.1f}x the file")  # fmt: skip
    growth = sizes[8][1] / sizes[1][1]
    print(f"peak 8x / peak 1x = {growth:.2f} (goal: bounded, < 1.5): "
          f"{'met' if growth < 1.5 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
