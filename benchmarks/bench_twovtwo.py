"""2 vs 2 test speed: k = 1,000 concepts (499,500 pairs), 300 units a side, 1,000
permutations, against the baseline of a plain Python loop over pairs that slices the
four correlation vectors and correlates them with ``np.corrcoef`` (the reference of
``tests/queries/test_twovtwo.py``), timed on a small k and per pair.

Also the GEMM limit: each permutation needs one k x k x k product (S_A times the
permuted S_B transposed, 2 GFLOP at k = 1,000), timed alone, so the share of the
permutation time spent outside BLAS shows.

Run: ``.venv/bin/python benchmarks/bench_twovtwo.py [--k 1000] [--units 300]
[--permutations 1000] [--loop-k 60]``.

Measured
--------
Two runs of the defaults on the shared 2-core machine while four other agents worked
(load average 4 to 6), so every figure is 2 to 4 times what an idle machine gives::

    $ .venv/bin/python benchmarks/bench_twovtwo.py
    cpus: 2 (sched affinity 2)
    k = 60 (1,770 pairs): loop 0.396 s (223.5 us/pair), vectorised 1.31 ms, 302x;
        accuracy 0.8000 (loop 0.8000)
    k = 1000 (499,500 pairs), 300 units: observed only 0.266 s (533 ns/pair;
        the loop's rate would take 112 s, 419x)
    one k x k x k product (float64): 27.2 ms (73.6 GFLOP/s)
    with 1,000 permutations: 196.8 s (196.6 ms per permutation: products 27.2 ms, pairs 169.4 ms);
        accuracy 0.9956, null 0.4994 +- 0.0177, p = 0.000999
    GEMM bound for 1,000 permutations: 27.2 s of 196.8 s (14%)

    $ .venv/bin/python benchmarks/bench_twovtwo.py   # again, permuting with one np.ix_ gather
    k = 60 (1,770 pairs): loop 0.451 s (254.8 us/pair), vectorised 1.08 ms, 416x;
        accuracy 0.8000 (loop 0.8000)
    k = 1000 (499,500 pairs), 300 units: observed only 0.305 s (610 ns/pair;
        the loop's rate would take 127 s, 418x)
    one k x k x k product (float64): 81.6 ms (24.5 GFLOP/s)
    with 1,000 permutations: 212.2 s (211.9 ms per permutation: products 81.6 ms, pairs 130.3 ms);
        accuracy 0.9956, null 0.4994 +- 0.0177, p = 0.000999
    GEMM bound for 1,000 permutations: 81.6 s of 212.2 s (38%)

One permutation's parts timed alone at a quieter moment (load about 3): the product
27 ms, the pair arithmetic over 499,500 pairs 23 ms (in blocks of 16,384 pairs; 51 ms
as one block of 499,500), so about 55 s for 1,000 permutations on two idle cores, half of it BLAS.
Against the loop over pairs (the baseline): 300 to 420 times faster per pair.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np

from queries.twovtwo import similarity, two_vs_two


def loop_reference(a: np.ndarray, b: np.ndarray) -> float:
    """The 2 vs 2 accuracy pair by pair, slicing rows of the similarity matrices."""
    s_a, s_b = np.asarray(np.corrcoef(a)), np.asarray(np.corrcoef(b))
    k = len(s_a)
    passes = 0
    for i, j in itertools.combinations(range(k), 2):
        rest = [c for c in range(k) if c not in (i, j)]
        a_i, a_j, b_i, b_j = s_a[i, rest], s_a[j, rest], s_b[i, rest], s_b[j, rest]

        def r(x: np.ndarray, y: np.ndarray) -> float:
            return float(np.corrcoef(x, y)[0, 1])

        passes += r(a_i, b_i) + r(a_j, b_j) > r(a_i, b_j) + r(a_j, b_i)
    return passes / (k * (k - 1) // 2)


def spaces(k: int, units: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two related spaces of k concepts: b is a noisy linear map of a."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, units))
    b = a @ rng.standard_normal((units, units)) / np.sqrt(units) + 3 * rng.standard_normal(
        (k, units)
    )
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--units", type=int, default=300)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--loop-k", type=int, default=60)
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()} (sched affinity {len(os.sched_getaffinity(0))})")

    small_a, small_b = spaces(args.loop_k, args.units, 1)
    pairs_small = args.loop_k * (args.loop_k - 1) // 2
    start = time.perf_counter()
    want = loop_reference(small_a, small_b)
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    got = two_vs_two(small_a, small_b).accuracy
    small_s = time.perf_counter() - start
    print(
        f"k = {args.loop_k} ({pairs_small:,} pairs): loop {loop_s:.3f} s "
        f"({loop_s / pairs_small * 1e6:.1f} us/pair), vectorised {small_s * 1e3:.2f} ms, "
        f"{loop_s / small_s:,.0f}x; accuracy {got:.4f} (loop {want:.4f})"
    )

    a, b = spaces(args.k, args.units)
    n_pairs = args.k * (args.k - 1) // 2
    start = time.perf_counter()
    two_vs_two(a, b)
    once_s = time.perf_counter() - start
    print(
        f"k = {args.k} ({n_pairs:,} pairs), {args.units} units: observed only {once_s:.3f} s "
        f"({once_s / n_pairs * 1e9:.0f} ns/pair; the loop's rate would take "
        f"{loop_s / pairs_small * n_pairs:,.0f} s, {loop_s / pairs_small * n_pairs / once_s:,.0f}x)"
    )

    s_a, s_b = similarity(a), similarity(b)
    order = np.random.default_rng(0).permutation(args.k)
    permuted = s_b[np.ix_(order, order)]
    gemm = []
    for _ in range(5):
        start = time.perf_counter()
        _ = s_a @ permuted.T
        gemm.append(time.perf_counter() - start)
    gemm_s = min(gemm)
    print(
        f"one k x k x k product (float64): {gemm_s * 1e3:.1f} ms "
        f"({2 * args.k**3 / gemm_s / 1e9:.1f} GFLOP/s)"
    )

    start = time.perf_counter()
    result = two_vs_two(a, b, permutations=args.permutations, seed=0)
    total_s = time.perf_counter() - start
    per = (total_s - once_s) / max(args.permutations, 1)
    print(
        f"with {args.permutations:,} permutations: {total_s:.1f} s "
        f"({per * 1e3:.1f} ms per permutation: products {gemm_s * 1e3:.1f} ms, "
        f"pairs {max(per - gemm_s, 0) * 1e3:.1f} ms); accuracy {result.accuracy:.4f}, "
        f"null {result.null.mean():.4f} +- {result.null.std():.4f}, p = {result.p:.4g}"
    )
    print(
        f"GEMM bound for {args.permutations:,} permutations: {gemm_s * args.permutations:.1f} s "
        f"of {total_s:.1f} s ({gemm_s * args.permutations / total_s:.0%})"
    )


if __name__ == "__main__":
    main()
