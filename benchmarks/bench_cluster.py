"""Scaling of the engine's analyses over dask schedulers, against raw reading measured in
the same run, with dask's own reports beside the cost model (docs/ANALYSES.md,
"Running on a cluster").

One store (built under ``runs/bench_cluster`` and reused by later runs): N_ROWS rows of
a ``tokens`` table (sentences of 3-29 words, ``depth``, ``lang``, a Zipf-distributed
``form`` of 20,000 word types) and one float16 site of N_UNITS units with
deterministic random values (unit 0 follows depth). The analyses cover the engine's
paths:

- **pearson**: ``unit_correlations(spearman=False)``, a streamed ``map_reduce``;
- **spearman**: its exact rank pass (``correlate._spearman``): one task per unit group,
  each reading every row, the covariate's ranks broadcast;
- **dynamics**: ``sentence_dynamics``, ``map_blocks`` over runs of whole sentences;
- **type means**: ``type_means`` by ``form``, a ``map_reduce`` whose partial results
  are types x units float64 (as large as a block);
- **probe scale** / **probe predict**: a probe's standardisation pass (``map_reduce``
  of the stored float16, 80% of the sentences) and prediction pass (``map_blocks`` of
  ``probe._predict`` with 17 classes over the other 20%), as ``fit_probe`` runs them
  when the training rows are not held in memory. Its training loop is sequential in
  the calling process and is not timed here.

Schedulers: (a) the local threaded scheduler (dask's default, 2 threads); (b), (c), (d)
``distributed.LocalCluster`` of worker processes, 1 x 1 thread, 2 x 1 thread and 1 x 2
threads. The three clusters are started once and every round runs every variant, raw
reading included, in turn; round 0 warms up (imports, numba's cached kernels) and is
not counted; the best of the other rounds is reported. Results of every variant are
compared bit for bit with (a)'s. Then each analysis runs once more on (c) with
``get_task_stream`` (tasks, compute and transfer time, result sizes), the workers'
``/proc/self/io`` (bytes read), their transfer logs (bytes fetched from the other
worker) and their peak RSS (reset through ``/proc/self/clear_refs`` before the pass),
printed beside what the model predicts.

Run: ``.venv/bin/python benchmarks/bench_cluster.py [N_ROWS] [N_UNITS] [ROUNDS]``
(default 300,000 x 768, 3 rounds).

Measured
--------
On 2 shared cores, load average 4.5 to 5.3 from other jobs during the run (so at most
about half of each core was ours), page cache warm; (x) is the speed-up over (b)::

    300,000 rows x 768 units float16 (0.43 GiB), 74 chunks; best of 3 rounds
      raw read, 1 thread    0.040s
      raw read, 2 threads   0.036s
      seconds (x)    (a) threaded   (b) 1 x 1     (c) 2 x 1     (d) 1 x 2     (e) (c)+mmap x raw (c)
      pearson        0.183 (2.34)   0.429 (1.00)  0.239 (1.80)  0.343 (1.25)  0.247 (1.73)    6.7
      spearman       2.020 (1.62)   3.280 (1.00)  2.582 (1.27)  3.255 (1.01)  3.796 (0.86)   72.7
      dynamics       0.389 (3.46)   1.346 (1.00)  0.720 (1.87)  0.944 (1.43)  0.640 (2.10)   20.3
      type means     0.710 (3.16)   2.240 (1.00)  1.841 (1.22)  1.845 (1.21)  1.468 (1.53)   51.8
      probe scale    0.936 (3.03)   2.833 (1.00)  1.627 (1.74)  2.270 (1.25)  0.975 (2.91)   45.8
      probe predict  0.247 (1.92)   0.474 (1.00)  0.243 (1.95)  0.343 (1.38)  0.184 (2.58)    6.8
      every analysis: results across (a)-(e) identical

    model/dask on (c) 2 workers x 1 (MiB; memory = a worker's peak - its idle RSS)
      analysis       tasks    read     partial        fetched     xfers  xfer  compute wall  memory
      pearson        29/29   439/439  0.018/0.018    0.1/0.2        9  0.07   0.85  0.68    4/4
      spearman        2/2    879/879  0.006/0.006    0.0/0.0        0  0.00  10.22  5.30  336/341
      dynamics       74/74   439/439  0.002/0.002    0.0/0.0        0  0.00   2.06  1.38   45/40
      type means    145/145  439/439 11.449/11.449 412.2/549.6     48  2.11   5.78  3.85   79/114
      probe scale   145/145  353/439  0.012/0.012    0.4/0.5       45  0.18   3.85  2.32   67/54
      probe predict  13/13    87/87   0.035/0.037    0.0/0.0        0  0.00   0.52  0.31   30/46

    the same on (e): compute s 0.25, 3.91, 0.87, 1.93, 1.30, 0.37 (wall 0.26, 2.12, 0.61,
    1.52, 1.01, 0.24); type means fetched 572.5 MiB in 50 transfers, 1.20 s

The model's task counts, bytes read (from the workers' ``/proc/self/io``) and partial
sizes (dask's ``nbytes``) match dask's exactly, except that the probe's 80% of
sentences reads through the gaps between them (whole chunks). Merges fetched one input
in 32-50 of type means' 72 merges in four runs (366-573 MiB, model 412 at half of them);
at 11.4 MiB a partial (1,954 forms x 768 units float64) that took 1.2-2.9 s, a third to
a half of the pass. Worker peaks are the model's or up to 1.5x (partials waiting for
their merge partner, torch's copy in prediction).

Speed-ups are not stable at this load: over four runs at load 4.5 to 9, (c) over (b)
ranged 0.75-1.8x (Pearson), 1.0-2.3x (Spearman), 1.0-1.9x (dynamics), 0.5-1.2x (type
means). Within a run the threaded scheduler (a) is the fastest or equal: one process
shares partials through memory and keeps glibc's adaptive mmap threshold, which
dask's nanny turns off by starting workers with ``MALLOC_TRIM_THRESHOLD_=65536``
(each 12-24 MiB array is then a fresh mapping whose pages fault in: in one process
with that variable, type means ran 2.4x and the standardisation 2.4-3.5x slower).
(e) sets ``MALLOC_MMAP_THRESHOLD_=33554432`` and the compute time summed over tasks
falls 2-4x against (c) (probe scale 3.85 -> 1.30 s, dynamics 2.06 -> 0.87 s). All
analyses are compute-bound here: 7-73x the raw read of the page-cached site on (c).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pyarrow as pa
from bench_read import fill_site, raw_reader
from distributed import Client, LocalCluster, get_task_stream
from timing import peak_rss_mib

import actstore
from queries import batches
from queries.correlate import _spearman, unit_correlations
from queries.dynamics import sentence_dynamics
from queries.engine import Selection, map_blocks, map_reduce
from queries.probe import _predict
from queries.selectivity import type_means

SITE = "synthetic/layer.0"
ROOT = Path(__file__).resolve().parent.parent / "runs" / "bench_cluster"
N_TYPES = 20_000
N_CLASSES = 17
MMAP = {"MALLOC_MMAP_THRESHOLD_": 32 << 20}  # glibc's largest: blocks come from the heap
CLUSTERS: dict[str, tuple[int, int, dict[str, int]]] = {
    "(b) 1 worker x 1": (1, 1, {}),
    "(c) 2 workers x 1": (2, 1, {}),
    "(d) 1 worker x 2": (1, 2, {}),
    "(e) (c) + mmap 32M": (2, 1, MMAP),
}


def build(path: Path, n_rows: int, n_units: int) -> None:
    """The store: ``tokens`` with sentences, depth, lang and form; one float16 site."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 30, n_rows // 3 + 1)
    sentence = np.repeat(np.arange(lengths.size), lengths)[:n_rows]
    depth = rng.integers(1, 12, n_rows).astype(np.int32)
    lang = np.where(sentence % 3 == 0, "de", "en")
    form = np.array([f"w{i}" for i in range(N_TYPES)])[
        np.minimum(rng.zipf(1.3, n_rows), N_TYPES) - 1
    ]
    with actstore.create(path) as store:
        with store.transaction():
            columns = {
                "row": np.arange(n_rows),
                "sentence_id": sentence,
                "depth": depth,
                "lang": lang,
                "form": form,
            }
            store.append_table("tokens", pa.table(columns))
        fill_site(store.create_site(SITE, n_units=n_units, dtype="float16"), depth, rng)


def store_for(n_rows: int, n_units: int) -> Path:
    path = ROOT / f"{n_rows}x{n_units}.actstore"
    if not path.exists():
        building = path.with_suffix(".partial")
        if building.exists():
            shutil.rmtree(building)
        build(building, n_rows, n_units)
        building.rename(path)
    return path


def analyses(store: actstore.Store) -> dict[str, Callable[[], np.ndarray]]:
    """Every analysis as a function returning its numbers as one float64 array."""
    n_units = store.site(SITE).n_units
    sentence = store.columns(["sentence_id"]).column("sentence_id").to_numpy()
    train = Selection(store, (SITE,), row_ids=np.flatnonzero(sentence % 5 != 0))
    test = Selection(store, (SITE,), row_ids=np.flatnonzero(sentence % 5 == 0))
    rng = np.random.default_rng(1)
    weights = [(rng.standard_normal((N_CLASSES, n_units)), rng.standard_normal(N_CLASSES))]
    predict = partial(_predict, weights=weights, real_only=[False])
    depth = store.columns(["depth"]).column("depth").to_numpy().astype(np.float64)
    ranked = Selection(store, (SITE,))

    def pearson() -> np.ndarray:
        table = unit_correlations(store, SITE, "depth", spearman=False)
        return np.asarray(table[["value", "p"]].to_numpy(np.float64))

    def spearman() -> np.ndarray:
        return np.stack(_spearman(ranked, depth))

    def dynamics() -> np.ndarray:
        return np.asarray(sentence_dynamics(store, SITE, "depth")[["value", "sd"]].to_numpy())

    def scale() -> np.ndarray:
        n, total, squares = map_reduce(batches.moments, batches.add, train, dtype=None)
        return np.concatenate([[n], total, squares])

    return {
        "pearson": pearson,
        "spearman": spearman,
        "dynamics": dynamics,
        "type means": lambda: type_means(store, SITE, "form").means,
        "probe scale": scale,
        "probe predict": lambda: np.concatenate(map_blocks(predict, test)).astype(np.float64),
    }


def model(store: actstore.Store, workers: int) -> dict[str, dict[str, float]]:
    """What the cost model predicts per analysis at ``workers`` workers: tasks, MiB read
    from the store, size of one partial result (MiB) and MiB a worker holds for a task
    beyond its idle memory (block + kernel state)."""
    from queries import correlate, kernels
    from queries.moments import PIECE_BYTES

    info = store.site(SITE)
    n, units = info.n_rows, info.n_units
    mib = 2**20
    sentence = store.columns(["sentence_id"]).column("sentence_id").to_numpy()
    form = np.asarray(store.columns(["form"]).column("form").to_pylist())
    _, counts = np.unique(form, return_counts=True)
    n_types = int((counts >= 5).sum())
    streamed = Selection(store, (SITE,), block_rows=correlate.STREAM_BLOCK_BYTES // (4 * units))
    blocks = Selection(store, (SITE,)).spans
    sentences = Selection(store, (SITE,), sentences=True).spans
    train = np.count_nonzero(sentence % 5 != 0)
    test_rows = n - train
    test_blocks = Selection(store, (SITE,), row_ids=np.flatnonzero(sentence % 5 == 0)).spans
    train_blocks = Selection(store, (SITE,), row_ids=np.flatnonzero(sentence % 5 != 0)).spans
    per_unit = kernels.N_KEYS * 12 + correlate.SUPER_ROWS * 2
    group = max(1, min(-(-units // workers), correlate.RANK_BUDGET_BYTES // (workers * per_unit)))
    groups = -(-units // group)
    block = max(s.stop - s.start for s in blocks) * units
    n_sentences = int(sentence.max()) + 1
    table = {
        "pearson": {
            "tasks": 2 * len(streamed.spans) - 1,
            "merges": len(streamed.spans) - 1,
            "read": n * units * 2 / mib,
            "partial": (3 * units + 3) * 8 / mib,
            "memory": 2 * PIECE_BYTES / mib,
        },
        "spearman": {
            "tasks": groups,
            "merges": 0,
            "read": groups * n * units * 2 / mib,
            "partial": 2 * group * 8 / mib,
            "memory": group * per_unit / mib,
        },
        "dynamics": {
            "tasks": len(sentences),
            "merges": 0,
            "read": n * units * 2 / mib,
            "partial": n_sentences / len(sentences) * 8 / mib,
            "memory": block * (4 + 8) / mib,  # float32 block, its float64 copy
        },
        "type means": {
            "tasks": 2 * len(blocks) - 1,
            "merges": len(blocks) - 1,
            "read": n * units * 2 / mib,
            "partial": n_types * units * 8 / mib,
            "memory": (block * (4 + 8) + 3 * n_types * units * 8) / mib,
        },
        "probe scale": {
            "tasks": 2 * len(train_blocks) - 1,
            "merges": len(train_blocks) - 1,
            "read": train * units * 2 / mib,
            "partial": (2 * units + 1) * 8 / mib,
            "memory": block * (2 + 8 + 8) / mib,  # float16 block, float64 copy, squares
        },
        "probe predict": {
            "tasks": len(test_blocks),
            "merges": 0,
            "read": test_rows * units * 2 / mib,
            "partial": test_rows / len(test_blocks) * 8 / mib,
            "memory": block * (4 + 4) / mib,  # float32 block and torch's float32 copy
        },
    }
    for row in table.values():  # a merge fetches one input when the two sit apart
        row["fetched"] = row["merges"] * row["partial"] * (1 - 1 / workers)
    return table


def reset_peak() -> int:
    """In a worker: start its peak RSS afresh (Linux clear_refs 5); bytes read so far."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return read_bytes()


def read_bytes() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


def worker_state(dask_worker: Any) -> dict[str, float]:
    """In a worker: peak and current RSS (MiB), bytes read, bytes fetched from others."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    fetched = sum(entry["total"] for entry in dask_worker.transfer_incoming_log)
    return {
        "peak": int(fields["VmHWM"].split()[0]) / 1024,
        "rss": int(fields["VmRSS"].split()[0]) / 1024,
        "read": read_bytes(),
        "fetched": fetched,
    }


@contextlib.contextmanager
def scheduler(client: Client | None) -> Iterator[None]:
    with client.as_current() if client is not None else contextlib.nullcontext():
        yield


def measure(client: Client, run: Callable[[], np.ndarray]) -> dict[str, float]:
    """One pass on ``client`` under dask's task stream and the workers' counters."""
    client.run(reset_peak)
    before = client.run(worker_state)
    with scheduler(client), get_task_stream(client=client) as stream:
        run()
    after = client.run(worker_state)
    compute = transfer = 0.0
    transfers = 0
    result_bytes = []
    for task in stream.data:
        for step in task["startstops"]:
            if step["action"] == "compute":
                compute += step["stop"] - step["start"]
            elif step["action"] == "transfer":
                transfer += step["stop"] - step["start"]
                transfers += 1
        result_bytes.append(task.get("nbytes", 0))
    mib = 2**20
    return {
        "tasks": len(stream.data),
        "compute": compute,
        "transfers": transfers,
        "transfer": transfer,
        "partial": float(np.median(result_bytes)) / mib if result_bytes else 0.0,
        "read": sum(after[w]["read"] - before[w]["read"] for w in after) / mib,
        "fetched": sum(after[w]["fetched"] - before[w]["fetched"] for w in after) / mib,
        "memory": max(after[w]["peak"] - before[w]["rss"] for w in after),
    }


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)  # closing workers is chatty
    args = [int(a) for a in sys.argv[1:4]]
    n_rows = args[0] if args else 300_000
    n_units = args[1] if len(args) > 1 else 768
    rounds = args[2] if len(args) > 2 else 3
    start = time.perf_counter()
    path = store_for(n_rows, n_units)
    print(f"store {path.name}: {time.perf_counter() - start:.1f}s to build or find")
    print(f"load average at start {os.getloadavg()[0]:.2f}")
    store = actstore.open(path)
    info = store.site(SITE)
    files = [store.path / info.path / "c" / str(c) / "0" for c in range(info.n_chunks)]
    runs = analyses(store)
    clients: dict[str, Client | None] = {"(a) threaded": None}
    clusters = []
    for name, (workers, threads, environ) in CLUSTERS.items():
        extra = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in environ.items()}
        with dask.config.set(extra):
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers,
                threads_per_worker=threads,
                processes=True,
                dashboard_address=":0",  # a free port, never a clash
                silence_logs=logging.ERROR,
            )
        clusters.append(cluster)
        clients[name] = Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
    check = clients["(e) (c) + mmap 32M"]
    assert check is not None
    print("(e) workers' environment:", check.run(os.environ.get, "MALLOC_MMAP_THRESHOLD_"))
    raw = {
        f"raw read, {t} thread{'s' * (t > 1)}": raw_reader(files, n_units, t, False) for t in (1, 2)
    }
    best: dict[tuple[str, str], float] = {}
    results: dict[tuple[str, str], np.ndarray] = {}
    loads = []
    for round_ in range(rounds + 1):
        for name, reader in raw.items():
            seconds = time.perf_counter()
            reader()
            seconds = time.perf_counter() - seconds
            if round_:
                best[(name, "")] = min(best.get((name, ""), np.inf), seconds)
        for config, client in clients.items():
            for analysis, run in runs.items():
                with scheduler(client):
                    seconds = time.perf_counter()
                    results[(config, analysis)] = run()
                    seconds = time.perf_counter() - seconds
                if round_:
                    key = (config, analysis)
                    best[key] = min(best.get(key, np.inf), seconds)
        loads.append(os.getloadavg()[0])
        print(f"round {round_} done, load average {loads[-1]:.2f}", flush=True)

    gib = n_rows * n_units * 2 / 2**30
    print(
        f"\n{n_rows:,} rows x {n_units} units float16 ({gib:.2f} GiB), {info.n_chunks} chunks; "
        f"best of {rounds} rounds, load average {min(loads[1:]):.2f}-{max(loads[1:]):.2f}"
    )
    read = min(best[(name, "")] for name in raw)
    for name in raw:
        print(f"  {name:<20} {best[(name, '')]:6.3f}s")
    configs = list(clients)
    print(f"  {'analysis':<14}" + "".join(f"{c:>19}" for c in configs) + "   x raw (c)")
    for analysis in runs:
        one = best[("(b) 1 worker x 1", analysis)]
        cells = "".join(
            f"{best[(c, analysis)]:7.3f}s ({one / best[(c, analysis)]:4.2f}x)   " for c in configs
        )
        ratio = best[("(c) 2 workers x 1", analysis)] / read
        print(f"  {analysis:<14}   {cells}{ratio:8.1f}")
    print("  (x) = speed-up over (b) 1 worker x 1 thread; x raw = (c) / best raw read")
    for analysis in runs:
        reference = results[(configs[0], analysis)]
        same = all(
            np.array_equal(results[(c, analysis)], reference, equal_nan=True) for c in configs
        )
        print(f"  {analysis}: results across (a)-(e) {'identical' if same else 'DIFFER'}")

    predicted = model(store, workers=2)
    for config in ("(c) 2 workers x 1", "(e) (c) + mmap 32M"):
        client = clients[config]
        assert client is not None
        print(f"\nmodel/dask on {config} (MiB; memory = a worker's peak - its idle RSS)")
        print(
            f"  {'analysis':<14} {'tasks':>9} {'read':>11} {'partial':>15} {'fetched':>13}"
            f" {'xfers':>5} {'xfer s':>6} {'compute s':>9} {'wall s':>6} {'memory':>9}"
        )
        for analysis, run in runs.items():
            seconds = time.perf_counter()
            got, want = measure(client, run), predicted[analysis]
            seconds = time.perf_counter() - seconds
            print(
                f"  {analysis:<14} {want['tasks']:4.0f}/{got['tasks']:<4.0f}"
                f" {want['read']:5.0f}/{got['read']:<5.0f}"
                f" {want['partial']:7.3f}/{got['partial']:<7.3f}"
                f" {want['fetched']:6.1f}/{got['fetched']:<6.1f} {got['transfers']:5.0f}"
                f" {got['transfer']:6.2f} {got['compute']:9.2f} {seconds:6.2f}"
                f" {want['memory']:4.0f}/{got['memory']:<4.0f}"
            )
        print(f"  load average {os.getloadavg()[0]:.2f}")
    for c in clients.values():
        if c is not None:
            c.close()  # type: ignore[no-untyped-call]
    for cluster in clusters:
        cluster.close()
    store.close()
    print(
        f"peak RSS of this process {peak_rss_mib():,.0f} MiB, load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
