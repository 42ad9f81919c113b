"""Reading a store in object storage against the server's own limit, by chunk size.

A real S3 server (SeaweedFS, :class:`actstore.s3server.LocalS3`) runs on this machine
for the run. For each chunk size (default 1, 4, 16 and 64 MiB) one local store is
built: a ``tokens`` table and one float16 site of ``--units`` (768) units, about
``--mib`` MiB of values (bench_read's synthetic values), rows a whole number of the largest chunk.
It is then

1. **copied** to the server with :func:`actstore.transfer.copy_store` (every file
   read back and its checksum compared; MiB/s of the whole copy);
2. **scanned** from the server: ``actstore.open(url).site_reader(site, dtype=None)``
   (the stored float16, no decoding), each chunk's rows one ``reader.read(start,
   stop)``, chunks shared among T = 1, 8, 32 threads;
3. **fetched raw** from the server: every chunk object
   (``<prefix>/<site array>/c/<chunk>/0``) GET whole into memory and dropped, 32
   requests in flight, once from 32 threads calling ``obstore.get`` and once from one
   asyncio loop (``obstore.get_async``, ``asyncio.gather``); the faster counts.
4. **read locally**: the same chunk files of the local store read with ``os.preadv``
   into one reused buffer per thread (1 and 2 threads; the faster counts), the page
   cache's limit, as a reference.

Why the raw GETs are the limit: they move the very objects a scan must move, whole,
with the same client library (obstore, as actstore uses it), as many at once as the
widest scan, and do nothing with the bytes: no row arithmetic, no copy into an output
array, no Python per chunk beyond the call. A scan can only add to that, so
``scan / raw GETs`` is the overhead of actstore's object reader on this server. The
server's files sit in the page cache (just written), so this is the cost of the S3
protocol and the server, not of a disk; the server and the client share the machine's
cores.

Variants take turns, best of ``--repeat`` rounds, every pass's byte count checked.
Beside the seconds, each variant's CPU seconds per GiB are recorded, for this process
(all its threads, obstore's runtime included) and for the server's process (from
``/proc``): on a shared machine they move far less with the load than wall time, and
they say who pays for a byte.
The recommended chunk size is the smallest whose best scan is within ``--within``
(default 15%) of the best raw-GET rate at any chunk size: larger chunks cost memory
in writers and coarser resumes, so take the smallest that reaches the server's speed.
With ``--mib 512`` there are only 8 chunks of 64 MiB, so no more than 8 requests are
ever in flight at that size.

Run: ``.venv/bin/python benchmarks/bench_objects.py [--mib 512] [--chunks 1 4 16 64]
[--quick]`` (``--quick``: chunks of 1 and 16 MiB, 64 MiB of data, results to
``results-quick.json``). Results: ``runs/bench_objects/results.json``.

Measured
--------
On 2 shared cores (load average 0.56 at the start, 2.6 at the end, mostly this run's
own server and client), 512 MiB (349,520 rows x 768 units), best of 4, 120 s::

    chunk MiB chunks  copy  scan T=1  scan T=8  scan T=32  raw GETs  scan/raw  local raw
            1    513   105       378       744        779       864      0.90     22,476
            4    129   188       621       995      1,061     1,205      0.88     24,503
           16     33   123       824     1,094        953     1,012      0.94     16,149
           64      8    91       646       849        838     1,004      0.83      4,101
    (MiB/s; raw GETs threads / asyncio: 861/864, 1,034/1,205, 1,012/903, 943/1,004)

    CPU s per GiB, this process + server   raw GETs    scan T=1    scan T=8   scan T=32
            1                               0.72+1.56   0.89+2.18   0.94+1.62   0.97+1.56
            4                               0.45+0.99   0.69+1.28   0.67+0.98   0.64+1.02
           16                               0.38+0.89   0.56+1.22   0.55+1.18   0.91+1.04
           64                               0.99+1.02   1.17+1.10   1.17+1.02   1.19+1.02

Recommended: 4 MiB, the smallest chunk whose scan (1,061 MiB/s) is within 15% of the
best raw GETs (1,205 MiB/s). Three more runs at load 1.1-7.2 put the best scan at 4 MiB
(twice) or 16 MiB (4 MiB then 0.83x), the two within noise of each other.

- The limit is CPU, mostly the server's: raw GETs cost 1.3-2.3 CPU s per GiB, the
  server 0.9-1.6 of it, so two cores move at most about 0.9-1.6 GiB/s.
- 1 MiB chunks cost the server about 0.6 CPU s per GiB more than 4-16 MiB (a request's
  fixed cost), and one thread waits about 2.6 ms a chunk (378 MiB/s at T=1).
- 64 MiB chunks cost the client 2-3x the CPU per GiB of 4-16 MiB even in raw GETs:
  every 64 MiB buffer is a fresh mapping whose pages fault in (glibc maps blocks over
  32 MiB afresh each time), and 512 MiB is only 8 requests in flight.
- A scan adds 0.15-0.5 CPU s per GiB in this process over the raw GETs: each chunk is
  read into obstore's buffer and then copied into a new output array (``np.empty``,
  faulting in its pages). Streaming the GET into the output instead (measured
  outside this benchmark, 64 MiB chunks, 8 threads) cost 0.41 client CPU s per GiB
  into a reused buffer, 0.61 into a new one, against the reader's 1.32.
- Copies are 6-11x slower than raw GETs: each file is read back and checksummed, and
  objects over 5 MiB go up as multipart uploads (obstore's default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import obstore
from bench_read import SITE, build
from obstore.store import ObjectStore, from_url
from timing import time_once

import actstore
from actstore.s3server import LocalS3
from actstore.transfer import copy_store

ROOT = Path(__file__).resolve().parent.parent / "runs" / "bench_objects"
MIB = 2**20
LOCAL_THREADS = (1, 2)


def local_reads(files: list[Path], threads: int) -> Callable[[], int]:
    """Read every file with ``os.preadv`` into one reused buffer per thread; bytes read."""
    size = max(f.stat().st_size for f in files)

    def part(names: list[Path]) -> int:
        buffer = bytearray(size)
        total = 0
        for name in names:
            fd = os.open(name, os.O_RDONLY)
            try:
                total += os.preadv(fd, [buffer], 0)
            finally:
                os.close(fd)
        return total

    def run() -> int:
        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(part, [files[i::threads] for i in range(threads)]))

    return run


def scan(store: actstore.Store, threads: int) -> Callable[[], int]:
    """Read every row of the site as stored, a whole chunk per ``reader.read``, chunks
    shared among ``threads``; bytes of rows read."""
    reader = store.site_reader(SITE, dtype=None)
    step, n_rows = reader.chunk_rows, reader.n_rows

    def chunk(c: int) -> int:
        return int(reader.read(c * step, min((c + 1) * step, n_rows)).nbytes)

    def run() -> int:
        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(chunk, range(-(-n_rows // step))))

    return run


def gets_threaded(client: ObjectStore, keys: list[str], in_flight: int) -> Callable[[], int]:
    """GET every object whole from ``in_flight`` threads; bytes received."""

    def one(key: str) -> int:
        return len(obstore.get(client, key).bytes())

    def run() -> int:
        with ThreadPoolExecutor(in_flight) as pool:
            return sum(pool.map(one, keys))

    return run


def gets_async(client: ObjectStore, keys: list[str], in_flight: int) -> Callable[[], int]:
    """GET every object whole from one asyncio loop, ``in_flight`` at a time; bytes."""

    async def every() -> int:
        gate = asyncio.Semaphore(in_flight)

        async def one(key: str) -> int:
            async with gate:
                result = await obstore.get_async(client, key)
                return len(await result.bytes_async())

        return sum(await asyncio.gather(*(one(k) for k in keys)))

    return lambda: asyncio.run(every())


def cpu_seconds(pid: int | None) -> tuple[float, float]:
    """CPU seconds used so far by this process (every thread, obstore's included) and by
    the server's process ``pid`` (NaN where /proc cannot tell)."""
    server = float("nan")
    if pid is not None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return time.process_time(), server


def best_of(
    variants: dict[str, tuple[Callable[[], int], int]], repeat: int, pid: int | None
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Best seconds of each variant (``(run, bytes it must return)``), taking turns, and
    its fewest CPU seconds per GiB (this process, the server's): a load-proof measure."""
    best = {name: float("inf") for name in variants}
    cpu = {name: (float("inf"), float("inf")) for name in variants}
    for _ in range(repeat):
        for name, (run, expected) in variants.items():
            before = cpu_seconds(pid)
            seconds, got = time_once(run)
            after = cpu_seconds(pid)
            if got != expected:
                raise RuntimeError(f"{name}: read {got:,} bytes, expected {expected:,}")
            best[name] = min(best[name], seconds)
            used = tuple((a - b) / (got / 2**30) for a, b in zip(after, before, strict=True))
            if sum(used) < sum(cpu[name]) or not np.isfinite(sum(cpu[name])):
                cpu[name] = (used[0], used[1])
    return best, cpu


def measure(tmp: Path, server: LocalS3, chunk_mib: int, args: argparse.Namespace) -> dict[str, Any]:
    """Build, copy and read the store of one chunk size; its rates in MiB/s."""
    row_bytes = args.units * 2
    chunk_rows = chunk_mib * MIB // row_bytes
    largest = max(args.chunks) * MIB // row_bytes
    n_rows = max(1, round(args.mib * MIB / row_bytes / largest)) * largest
    local = tmp / f"chunks{chunk_mib}.actstore"
    build(local, n_rows, args.units, chunk_rows)
    bucket = server.bucket()
    prefix = f"chunks{chunk_mib}"
    copied = copy_store(local, f"{bucket}/{prefix}")

    with actstore.open(local) as store:
        info = store.site(SITE)
    files = [local / info.path / "c" / str(c) / "0" for c in range(info.n_chunks)]
    remote = actstore.open(f"{bucket}/{prefix}")
    array = remote.site(SITE).path  # the copy's own name for the array, not the source's
    keys = [f"{prefix}/{array}/c/{c}/0" for c in range(info.n_chunks)]
    object_bytes = sum(f.stat().st_size for f in files)
    site_bytes = n_rows * row_bytes
    client = from_url(bucket)
    variants: dict[str, tuple[Callable[[], int], int]] = {
        **{f"local {t}": (local_reads(files, t), object_bytes) for t in LOCAL_THREADS},
        "gets threads": (gets_threaded(client, keys, args.in_flight), object_bytes),
        "gets async": (gets_async(from_url(bucket), keys, args.in_flight), object_bytes),
        **{f"scan {t}": (scan(remote, t), site_bytes) for t in args.threads},
    }
    pid = server.process.pid if server.process is not None else None
    best, cpu = best_of(variants, args.repeat, pid)
    remote.close()
    shutil.rmtree(local)  # the server keeps its copy until the run ends

    def rate(name: str) -> float:
        size = site_bytes if name.startswith("scan") else object_bytes
        return size / MIB / best[name]

    raw = max(rate("gets threads"), rate("gets async"))
    scans = {t: rate(f"scan {t}") for t in args.threads}
    return {
        "chunk_mib": chunk_mib,
        "chunk_rows": chunk_rows,
        "chunk_bytes": chunk_rows * row_bytes,
        "n_chunks": info.n_chunks,
        "n_rows": n_rows,
        "site_mib": site_bytes / MIB,
        "copy_mib_s": copied.bytes / MIB / copied.seconds,
        "copy_mib": copied.bytes / MIB,
        "scan_mib_s": scans,
        "raw_gets_threads_mib_s": rate("gets threads"),
        "raw_gets_async_mib_s": rate("gets async"),
        "raw_gets_mib_s": raw,
        "scan_over_raw": scans[max(args.threads)] / raw,
        "local_mib_s": max(rate(f"local {t}") for t in LOCAL_THREADS),
        "seconds": best,
        "cpu_s_per_gib": {name: {"client": c, "server": v} for name, (c, v) in cpu.items()},
        "load_average": os.getloadavg()[0],
    }


def recommend(rows: list[dict[str, Any]], within: float) -> tuple[int, str]:
    """The smallest chunk size whose best scan is within ``within`` of the best raw-GET
    rate at any size, and why (the largest-scanning size when none is)."""
    limit = max(r["raw_gets_mib_s"] for r in rows)
    for row in sorted(rows, key=lambda r: r["chunk_mib"]):
        threads, speed = max(row["scan_mib_s"].items(), key=lambda item: item[1])
        if speed >= (1 - within) * limit:
            return row["chunk_mib"], (
                f"{row['chunk_mib']} MiB is the smallest chunk whose scan ({speed:,.0f} MiB/s "
                f"at T={threads}) is within {within:.0%} of the best raw GETs "
                f"({limit:,.0f} MiB/s): {speed / limit:.2f}x"
            )
    top = max(rows, key=lambda r: max(r["scan_mib_s"].values()))
    speed = max(top["scan_mib_s"].values())
    return top["chunk_mib"], (
        f"no chunk size scans within {within:.0%} of the best raw GETs ({limit:,.0f} MiB/s); "
        f"{top['chunk_mib']} MiB scans fastest ({speed:,.0f} MiB/s, {speed / limit:.2f}x)"
    )


def report(results: dict[str, Any], threads: list[int]) -> None:
    """Print the table of rates, the CPU per GiB and the recommendation."""
    rows = results["rows"]
    first = rows[0]
    print(
        f"\nfloat16 site of {results['n_units']} units, {first['site_mib']:.0f} MiB "
        f"({first['n_rows']:,} rows); best of {results['repeat']}; raw GETs "
        f"{results['in_flight']} in flight; load average {results['load_start'][0]:.2f} at "
        f"start, {results['load_end'][0]:.2f} at end"
    )
    scans = "".join(f" {'scan T=' + str(t):>10}" for t in threads)
    print(
        f"  {'chunk MiB':>9} {'chunks':>6} {'copy':>7}{scans} {'raw GETs':>9} "
        f"{'scan/raw':>8} {'local raw':>9}   (MiB/s; scan/raw at T={max(threads)})"
    )
    for r in rows:
        cells = "".join(f" {r['scan_mib_s'][t]:10,.0f}" for t in threads)
        print(
            f"  {r['chunk_mib']:>9} {r['n_chunks']:>6} {r['copy_mib_s']:7,.0f}{cells} "
            f"{r['raw_gets_mib_s']:9,.0f} {r['scan_over_raw']:8.2f} {r['local_mib_s']:9,.0f}"
        )
    print("  raw GETs, threads / asyncio: " + ", ".join(
        f"{r['raw_gets_threads_mib_s']:,.0f} / {r['raw_gets_async_mib_s']:,.0f}" for r in rows
    ))  # fmt: skip
    print(f"  CPU seconds per GiB, this process + the server's ({results['cores']} cores):")
    print(
        f"  {'chunk MiB':>9} {'raw GETs':>11}"
        + "".join(f" {'scan T=' + str(t):>11}" for t in threads)
    )
    for r in rows:
        cpu = r["cpu_s_per_gib"]
        used = [cpu["gets threads"], *(cpu[f"scan {t}"] for t in threads)]
        print(f"  {r['chunk_mib']:>9}" + "".join(
            f" {c['client']:5.2f}+{c['server']:5.2f}" for c in used
        ))  # fmt: skip
    print(f"recommended chunk size for object storage: {results['recommended_chunk_mib']} MiB")
    print(f"  {results['reason']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=512, help="MiB of site values")
    parser.add_argument("--units", type=int, default=768, help="units of the site")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 16, 64], help="MiB")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8, 32], help="scan's")
    parser.add_argument("--in-flight", type=int, default=32, help="raw GETs at once")
    parser.add_argument("--repeat", type=int, default=4, help="rounds; the best counts")
    parser.add_argument("--within", type=float, default=0.15, help="of raw GETs, to recommend")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 sizes, 64 MiB")
    parser.add_argument("--json", type=Path, default=None, help="default: runs/bench_objects/")
    args = parser.parse_args()
    if args.quick:
        args.chunks, args.mib, args.repeat = [1, 16], 64, 2
    json_path = args.json or ROOT / ("results-quick.json" if args.quick else "results.json")
    load_start = os.getloadavg()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("ACTSTORE_BENCH_DIR")) as name:
        tmp = Path(name)
        with LocalS3(tmp / "s3") as server:
            os.environ.update(server.environment())
            for chunk_mib in sorted(args.chunks):
                rows.append(measure(tmp, server, chunk_mib, args))
                print(
                    f"chunks of {chunk_mib} MiB done, load average {rows[-1]['load_average']:.2f}",
                    flush=True,
                )
    chunk_mib, reason = recommend(rows, args.within)
    results = {
        "n_units": args.units,
        "cores": os.cpu_count(),
        "repeat": args.repeat,
        "in_flight": args.in_flight,
        "within": args.within,
        "load_start": list(load_start),
        "load_end": list(os.getloadavg()),
        "seconds": time.perf_counter() - started,
        "rows": rows,
        "recommended_chunk_mib": chunk_mib,
        "reason": reason,
    }
    report(results, args.threads)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {json_path} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
