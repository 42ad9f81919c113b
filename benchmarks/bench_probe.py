"""Probe speed and accuracy against scikit-learn's lbfgs; peak memory against corpus size.

Speed: UPOS from MiniLM layer 4 over UD English-EWT train (extracted once into
``runs/bench/ewt-train.actstore``). A: ``queries.probe`` reading from the store
(reading timed). B: scikit-learn ``LogisticRegression`` (lbfgs) on the same training
rows held in memory, standardised, with the same L2 (``C = 1 / (alpha * n)``);
loading not timed. Goals: A at least 3x faster than B, accuracy within 0.5 points.

Memory: the same probe, streaming from the store (``memory_gib=0``), on synthetic stores
of 1x, 4x and 16x ``BASE_ROWS`` rows, each in a fresh process (peak RSS of that
process). Goal: 16x <= 1.25 x 1x.

Cross-validation: 5 folds over MiniLM's 7 sites of EWT train, time and peak RSS.

Run: ``.venv/bin/python benchmarks/bench_probe.py [speed|memory|cv|all]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from timing import peak_rss_mib

import actstore
from actstore.data import corpus_path
from actstore.verbs import verb
from queries.labels import prepare_labels
from queries.options import ProbeOptions
from queries.probe import probe
from queries.scores import metric_value

RUNS = Path("runs/bench")
SITE = "minilm/layer.4"
BASE_ROWS = 100_000
N_UNITS = 384
N_CLASSES = 17


def ewt_train(sites: str = "layer.4") -> Path:
    path = RUNS / "ewt-train.actstore"
    if not (path / "manifest.json").is_file():
        RUNS.mkdir(parents=True, exist_ok=True)
        with actstore.create(path, overwrite=True) as store:
            actstore.ingest_conllu(store, [corpus_path("en_ewt", "train")])
    # resumes or skips; sites of an older alignment rule are made again
    verb("extract")(store=path, model="minilm", sites=sites, quiet=True, overwrite=True)
    return path


def speed(repeat: int = 3) -> None:
    path = ewt_train()  # extracted (or checked complete) once, outside the timings
    with actstore.open(path) as store:
        options = ProbeOptions("upos", device="cpu")
        labels = prepare_labels(store, options)
        x = store.acts(SITE, labels.rows).values
        y = labels.codes[:, 0]
    train, test = ~labels.test, labels.test
    scaler = StandardScaler().fit(x[train])
    xs_train, xs_test = scaler.transform(x[train]), scaler.transform(x[test])
    times: dict[str, list[float]] = {"actstore probe": [], "sklearn lbfgs": []}
    accuracy = {}
    for _ in range(repeat):  # interleaved, so machine noise hits both alike
        start = time.perf_counter()
        with actstore.open(path) as store:
            table = probe(store, SITE, options, labels)
        times["actstore probe"].append(time.perf_counter() - start)
        accuracy["actstore probe"] = metric_value(table, "accuracy")
        start = time.perf_counter()
        reference = LogisticRegression(C=1 / (options.alpha * train.sum()), max_iter=5000)
        reference.fit(xs_train, y[train])
        times["sklearn lbfgs"].append(time.perf_counter() - start)
        accuracy["sklearn lbfgs"] = float((reference.predict(xs_test) == y[test]).mean())
    print(f"UPOS from {SITE}, EWT train: {train.sum():,} train / {test.sum():,} test words")
    for name, ts in times.items():
        print(
            f"  {name:<15} {min(ts):6.2f} s (runs {', '.join(f'{t:.2f}' for t in ts)})"
            f"  accuracy {accuracy[name]:.4f}"
        )
    ratio = min(times["sklearn lbfgs"]) / min(times["actstore probe"])
    gap = 100 * (accuracy["sklearn lbfgs"] - accuracy["actstore probe"])
    print(
        f"speed-up {ratio:.1f}x (goal >= 3): {'met' if ratio >= 3 else 'MISSED'}; "
        f"accuracy {gap:+.2f} points below lbfgs (goal <= 0.5): "
        f"{'met' if gap <= 0.5 else 'MISSED'}"
    )
    print(f"peak RSS of this process {peak_rss_mib():,.0f} MiB (holds the site for lbfgs)")


def synthetic(path: Path, n_rows: int) -> None:
    """Sentences of 20 words, a class per word, activations = class centre + noise."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, N_CLASSES, n_rows)
    centres = rng.normal(0, 0.5, (N_CLASSES, N_UNITS)).astype(np.float32)
    with actstore.create(path, overwrite=True) as store, store.transaction():
        store.append_table(
            "tokens",
            pa.table(
                {
                    "row": np.arange(n_rows),
                    "sentence_id": np.arange(n_rows) // 20,
                    "form": (labels * 1000 + rng.integers(0, 50, n_rows)).astype(str),
                    "upos": np.array([f"C{c}" for c in range(N_CLASSES)])[labels],
                }
            ),
        )
    with actstore.open(path, mode="a") as store:
        writer = store.create_site("synthetic/layer.0", n_units=N_UNITS)
        for start in range(0, n_rows, 65536):
            stop = min(start + 65536, n_rows)
            noise = rng.standard_normal((stop - start, N_UNITS), dtype=np.float32)
            writer.write(start, centres[labels[start:stop]] + noise)
        writer.commit()


def memory() -> None:
    results = {}
    for factor in (1, 4, 16):
        path = RUNS / f"synthetic-{factor}x.actstore"
        if not (path / "manifest.json").is_file():
            synthetic(path, factor * BASE_ROWS)
        out = subprocess.run(
            [sys.executable, __file__, "probe-once", str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
        results[factor] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[factor]
        print(
            f"  {factor:>2}x {factor * BASE_ROWS:>9,} rows: peak RSS {r['rss']:7.0f} MiB, "
            f"{r['seconds']:6.1f} s, accuracy {r['accuracy']:.3f}"
        )
    ratio = results[16]["rss"] / results[1]["rss"]
    print(f"peak RSS 16x / 1x = {ratio:.2f} (goal <= 1.25): {'met' if ratio <= 1.25 else 'MISSED'}")


def probe_once(path: str) -> None:
    """The streaming path (memory_gib=0): what must not grow with the corpus."""
    start = time.perf_counter()
    with actstore.open(path) as store:
        options = ProbeOptions("upos", device="cpu", memory_gib=0)
        table = probe(store, "synthetic/layer.0", options)
    accuracy = metric_value(table, "accuracy")
    seconds = time.perf_counter() - start
    print(json.dumps({"rss": peak_rss_mib(), "seconds": seconds, "accuracy": accuracy}))


def cross_validation() -> None:
    """5-fold cross-validation of a UPOS probe over MiniLM's 7 sites on EWT train, in a
    fresh process (its time and peak RSS)."""
    path = ewt_train("layer.*")
    out = subprocess.run(
        [sys.executable, __file__, "cv-once", str(path)], check=True, capture_output=True, text=True
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"5-fold CV, UPOS, 7 MiniLM sites of EWT train ({r['words']:,} words): "
          f"{r['seconds']:.1f} s, peak RSS {r['rss']:,.0f} MiB")  # fmt: skip
    for site, (mean, low, high) in r["accuracy"].items():
        print(f"  {site:<16} accuracy {mean:.4f} (95% CI {low:.4f}-{high:.4f})")


def cv_once(path: str) -> None:
    from queries.probe import prepare_folds, run_probe

    start = time.perf_counter()
    accuracy = {}
    with actstore.open(path) as store:
        options = ProbeOptions("upos", device="cpu", folds=5)
        folds = prepare_folds(store, options)
        for site in sorted(s for s in store.sites if s.startswith("minilm/")):
            table = run_probe(store, site, options, folds)[0]
            row = table[(table.metric == "accuracy") & (table.word_offset == 0)].iloc[0]
            accuracy[site] = (row["value"], row["ci_low"], row["ci_high"])
        words = store.n_rows()
    seconds = time.perf_counter() - start
    print(json.dumps({"rss": peak_rss_mib(), "seconds": seconds, "accuracy": accuracy,
                      "words": words}))  # fmt: skip


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "probe-once":
        probe_once(sys.argv[2])
    if what == "cv-once":
        cv_once(sys.argv[2])
    if what in ("cv", "all"):
        cross_validation()
    if what in ("speed", "all"):
        speed()
    if what in ("memory", "all"):
        memory()
