"""RSA benchmark: two RDMs and their Spearman comparison, against rsatoolbox on the same
data, and the plain float32 GEMM formulation as the limit; then a large-k RDM pair
written blockwise to disk and compared by a streaming Pearson pass.

Every variant runs in its own process, so each peak RSS is its own. "ours" is
``compare(rdm_upper(x), rdm_upper(y))``: float32 products (one ``syrk`` each, only the
upper triangle kept), ranks by counting or one sort (``average_ranks``).

Measured (2 cores shared with other jobs; load average 1.2-2.7: absolute times move
2x between runs, so the ratios below are from runs close in time; 4,096 units):

=========  ==========================  ==========================  ===========  ==========
k          before (a93e234: float64,   after (float32 triangles,   rsatoolbox   float32
           rankdata, symmetric copy)   counted/sorted ranks)                    GEMMs alone
=========  ==========================  ==========================  ===========  ==========
1,000 [1]  0.285 s (7.6x)              0.146 s (14.8x)             2.17 s       0.069 s
5,000 [2]  12.45 s, 1,452 MiB (5.7x)   2.50-2.62 s, 698 MiB        70.6 s,      1.74-1.87 s
                                       (27-28x, 0.53x the memory)  1,323 MiB
=========  ==========================  ==========================  ===========  ==========

[1] one process, variants alternating, best of 4 (peak RSS: before 211 MiB, after
191 MiB, rsatoolbox 324 MiB). [2] this script (k = 5,000; before from the a93e234
tree's ``--child ours``). Spearman agrees with rsatoolbox to 4e-9 (k = 1,000) and
3e-10 (k = 5,000). ``precision="float64"`` takes 0.24 s and 9.4 s (1,155 MiB).

Bounds: the bare float32 GEMMs (already ``syrk``, half a GEMM's flops) are 70 % of
ours at k = 5,000 and 47 % at k = 1,000. Per RDM at k = 5,000 the rest is preparing
the vectors in float64 blocks (~0.15 s), taking the triangle (~0.1 s) and ranking
12.5 M pairs (0.27 s: float32 distances of many conditions take ~2 M distinct codes,
so they are counted; sorting them would take 1.2 s), then Pearson of the ranks
(0.03 s). At k = 1,000 that work (~0.07 s) equals the GEMMs, so 20x there needs it
roughly halved (or a machine where rsatoolbox is slower relative to BLAS); 15x is
what this measured. 20x and more holds at k = 5,000.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import peak_rss_mib


def data(k: int, units: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two related sets of k condition vectors (float32), the second a noisy copy."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((k, units), dtype=np.float32)
    return x, x + rng.standard_normal((k, units), dtype=np.float32)


def ours(x: np.ndarray, y: np.ndarray, precision: str = "float32") -> float:
    """The RDMs' upper triangles (float32 products by default) and their Spearman r."""
    from queries.rdm import rdm_upper
    from queries.rsa_stats import compare

    return compare(rdm_upper(x, precision=precision), rdm_upper(y, precision=precision))


def ours_float64(x: np.ndarray, y: np.ndarray) -> float:
    return ours(x, y, "float64")


def _rsatoolbox_module() -> Any:
    import rsatoolbox

    return rsatoolbox


def reference(x: np.ndarray, y: np.ndarray) -> float:
    rsatoolbox = _rsatoolbox_module()

    a = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="correlation")
    b = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(y), method="correlation")
    return float(rsatoolbox.rdm.compare(a, b, method="spearman")[0, 0])


def gemm(x: np.ndarray, y: np.ndarray) -> float:
    """The limit: the two float32 products alone (the ranks left out)."""
    total = 0.0
    for v in (x, y):
        z = v - v.mean(axis=1, keepdims=True)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        total += float((1 - z @ z.T)[0, 1])
    return total


def child(variant: str, k: int, units: int) -> dict[str, Any]:
    x, y = data(k, units)
    variants = {"ours": ours, "ours64": ours_float64, "rsatoolbox": reference, "gemm": gemm}
    function = variants[variant]
    function(x[:8], y[:8])  # imports and warm-up outside the timing
    best = float("inf")
    for _ in range(3 if k <= 2000 else 1):  # best of 3 where a run is short: a shared machine
        start = time.perf_counter()
        value = function(x, y)
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "peak_mib": peak_rss_mib(), "value": value}


def huge(k: int, units: int, folder: Path) -> dict[str, Any]:
    """Two k x k RDMs written blockwise into a store, then compared by streaming Pearson."""
    import actstore
    from queries.rdm import rdm_to_store
    from queries.rsa import compare_stored

    x, y = data(k, units)
    path = folder / "huge.actstore"
    shutil.rmtree(path, ignore_errors=True)
    times = {}
    with actstore.create(path) as store:
        for name, values in (("rdm_x", x), ("rdm_y", y)):
            start = time.perf_counter()
            rdm_to_store(store, name, values)
            times[f"write {name}"] = time.perf_counter() - start
        start = time.perf_counter()
        value = compare_stored(store, "rdm_x", "rdm_y", "pearson")
        times["streamed pearson"] = time.perf_counter() - start
    shutil.rmtree(path, ignore_errors=True)
    return {"times": times, "peak_mib": peak_rss_mib(), "value": value}


def run(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", default="1000,5000", help="condition counts, comma-separated")
    parser.add_argument("--units", type=int, default=4096)
    parser.add_argument("--huge", type=int, default=0, help="k of the on-disk pair (0: skip)")
    parser.add_argument("--huge-units", type=int, default=300)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "K", "UNITS"))
    parser.add_argument("--huge-child", nargs=3, metavar=("K", "UNITS", "FOLDER"))
    options = parser.parse_args()
    if options.child:
        variant, k, units = options.child
        print(json.dumps(child(variant, int(k), int(units))))
        return
    if options.huge_child:
        k, units, folder = options.huge_child
        print(json.dumps(huge(int(k), int(units), Path(folder))))
        return
    for k in (int(v) for v in options.k.split(",") if v.strip()):
        found = {
            v: run("--child", v, str(k), str(options.units))
            for v in ("gemm", "ours", "ours64", "rsatoolbox")
        }
        mine, theirs, limit = found["ours"], found["rsatoolbox"], found["gemm"]
        exact = found["ours64"]
        print(
            f"k={k:,} x {options.units:,} units, two RDMs + Spearman: ours {mine['seconds']:.2f} s "
            f"({mine['peak_mib']:,.0f} MiB), rsatoolbox {theirs['seconds']:.2f} s "
            f"({theirs['peak_mib']:,.0f} MiB): {theirs['seconds'] / mine['seconds']:.1f}x faster, "
            f"{mine['peak_mib'] / theirs['peak_mib']:.2f}x the memory; the float32 GEMMs alone "
            f"{limit['seconds']:.2f} s (ours is {mine['seconds'] / limit['seconds']:.1f}x that); "
            f"|difference| {abs(mine['value'] - theirs['value']):.1e}; float64 products "
            f"{exact['seconds']:.2f} s ({exact['peak_mib']:,.0f} MiB, "
            f"{theirs['seconds'] / exact['seconds']:.1f}x faster, |difference| "
            f"{abs(exact['value'] - theirs['value']):.1e})"
        )
    if options.huge:
        folder = options.folder or Path(tempfile.mkdtemp(prefix="rsa-bench-"))
        folder.mkdir(parents=True, exist_ok=True)
        found = run("--huge-child", str(options.huge), str(options.huge_units), str(folder))
        times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in found["times"].items())
        print(
            f"k={options.huge:,} x {options.huge_units} units on disk (float32, "
            f"{options.huge**2 * 4 / 1e9:.1f} GB each): {times}; peak RSS "
            f"{found['peak_mib']:,.0f} MiB; r = {found['value']:.4f}"
        )


if __name__ == "__main__":
    main()
