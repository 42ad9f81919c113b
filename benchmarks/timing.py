"""Timing helpers shared by the benchmarks: interleaved repeats, best-of timing, peak RSS."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def compare(variants: dict[str, Callable[[], Any]], repeat: int = 3) -> dict[str, float]:
    """Best wall time of each variant; variants take turns so machine noise hits all alike."""
    best = {name: float("inf") for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            seconds, _ = time_once(fn)
            best[name] = min(best[name], seconds)
    return best


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    Read from /proc (VmHWM), which starts afresh at exec: ``ru_maxrss`` keeps the
    parent's peak in a child started by fork and exec.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
