"""Ingest speed: actstore's whole ingest against parsing alone with the `conllu` package.

Baseline: ``conllu.parse`` of the same file (parse only: no validation, no derived
columns, nothing written). Goal: our full ingest (parse, validate, derive, write
Parquet, commit) takes at most the baseline's time (ratio <= 1.0).

Run: ``.venv/bin/python benchmarks/bench_ingest.py [FILE]`` (default: EWT train).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import conllu
from timing import compare

import actstore
from actstore.data import corpus_path


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else corpus_path("en_ewt", "train")
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1000))

        def ingest() -> None:
            with actstore.create(Path(tmp) / f"s{next(counter)}") as store:
                actstore.ingest_conllu(store, [path])

        def conllu_parse() -> None:
            conllu.parse(path.read_text(encoding="utf-8"))

        best = compare({"actstore ingest": ingest, "conllu.parse": conllu_parse})
        with actstore.open(Path(tmp) / "s0") as store:
            words = store.n_rows("tokens")
    print(f"file: {path} ({words:,} words); best of 3, interleaved")
    for name, seconds in best.items():
        print(f"  {name:<16} {seconds:7.3f} s  {words / seconds:>12,.0f} words/s")
    ratio = best["actstore ingest"] / best["conllu.parse"]
    verdict = "met" if ratio <= 1 else "MISSED"
    print(f"ratio ingest / conllu.parse = {ratio:.3f} (goal <= 1.0): {verdict}")


if __name__ == "__main__":
    main()
