"""Comparing two RDMs, and how sure the comparison is (METHODS.md, "Representational
similarity").

:func:`compare` correlates the upper triangles (without the diagonal) of two RDMs:
``spearman`` (the default: Pearson r of the average ranks), ``pearson``, or
``kendall`` (Kendall's τ-a: concordant minus discordant pairs over all n(n-1)/2 pairs,
ties counting as neither, as rsatoolbox's ``tau-a``; computed from scipy's O(n log n)
τ-b by undoing its tie correction). Pairs where either RDM is NaN (a condition vector
without variance) are left out.

:func:`permutation_test` permutes the conditions of the first RDM (rows and columns
together) ``n`` times: p = (1 + #{permuted ≥ observed}) / (1 + n), one-sided (is the
similarity above chance), with the permutations drawn from ``seed``. A permuted RDM's
upper triangle holds the same values, so its ranks are the permuted ranks and its
mean and spread are unchanged: the permuted Pearson and Spearman values are one
gather and one matrix-vector product per batch of permutations, no sorting. Kendall's
τ-a is recomputed per permutation.

:func:`bootstrap_ci` resamples the conditions with replacement ``n`` times and
compares the RDMs of the resampled conditions; pairs of a condition with its own copy
(dissimilarity 0 by definition) are left out. The interval is the percentile interval
of the bootstrap values.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import stats

from actstore.errors import ParameterError, SchemaError
from queries.rdm import upper

METHODS = ("spearman", "pearson", "kendall")
BATCH_BYTES = 64 << 20  # gathered float64 values per batch of permutations
COUNTED_KEYS = 1 << 23  # float32 keys ranked by counting (3 tables of 64 MiB at most)
TOLERANCE = 1e-12  # a permuted value this close below the observed one counts as reaching it


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`, else a :class:`ParameterError`.

    Examples
    --------
    >>> check_method("cosine")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: method 'cosine' is not known; methods: spearman, ...
    """
    if method not in METHODS:
        raise ParameterError("method", f"{method!r} is not known; methods: {', '.join(METHODS)}")
    return method


def _pearson(a: np.ndarray, b: np.ndarray, in_place: bool = False) -> float:
    """Pearson r of two float64 vectors; ``in_place`` centres them where they are."""
    if in_place:
        a -= a.mean()
        b -= b.mean()
        da, db = a, b
    else:
        da, db = a - a.mean(), b - b.mean()
    denominator = np.sqrt(float(da @ da) * float(db @ db))
    return float(da @ db / denominator) if denominator > 0 else float("nan")


def _float32_keys(x: np.ndarray) -> np.ndarray:
    """float32 ``x`` as unsigned integers in the same order, equal where the values are."""
    bits = (x + np.float32(0.0)).view(np.uint32)  # -0.0 becomes 0.0: they compare equal
    # negative values: every bit flipped; others: the sign bit set
    keys: np.ndarray = bits ^ ((bits >> 31) * np.uint32(0x7FFFFFFF) | np.uint32(1 << 31))
    return keys


def _ranks_by_counting(keys: np.ndarray) -> np.ndarray | None:
    """Average ranks from a count of each key between the least and the greatest, if
    there are at most 4 such keys per value and :data:`COUNTED_KEYS` (else None): no
    sort at all."""
    low, high = int(keys.min()), int(keys.max())
    if high - low >= min(4 * keys.size, COUNTED_KEYS):
        return None
    offsets = keys - np.uint32(low)
    counts = np.bincount(offsets, minlength=high - low + 1)
    # a key's values have ranks (values up to and including it) - (count - 1) / 2:
    # twice that, an integer, in integers, then halved exactly in float64
    twice = np.cumsum(counts)
    twice *= 2
    twice -= counts
    twice += 1
    table = twice.astype(np.float64)
    table *= 0.5
    ranks: np.ndarray = table[offsets]
    return ranks


def _sorted_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts uint32 ``keys``, and the keys in that order: one sort of
    64-bit words [position, key], twice as fast as an argsort."""
    words = np.empty(keys.size, np.uint64)
    halves = words.view(np.uint32).reshape(-1, 2)  # little-endian: position, then key
    halves[:, 0] = np.arange(keys.size, dtype=np.uint32)
    halves[:, 1] = keys
    words.sort()
    return halves[:, 0].astype(np.intp), halves[:, 1].copy()


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1 .. n of ``values`` (float64), tied values sharing the average of their
    ranks: exactly scipy's ``rankdata(values, method="average")``, 3 to 15 times faster.

    float32 values are ranked through integer keys in the same order: counted when
    there are few possible keys between the least and greatest value for the number
    of values (float32 RDM triangles of many conditions: many values ~1e-7 apart or
    tied), else
    sorted with their positions as one 64-bit word. Other dtypes are argsorted. Ties
    are found where neighbours in sorted order are equal and averaged only if there
    are any. No sort needs to be stable: tied values get one rank whatever their order,
    so the ranks are the same run to run. ``values`` must hold no NaN.

    Examples
    --------
    >>> average_ranks(np.array([0.5, 0.2, 0.5, 0.9, 0.2, 0.5])).tolist()
    [4.0, 1.5, 4.0, 6.0, 1.5, 4.0]
    """
    x = np.asarray(values).ravel()
    if np.isnan(x).any():
        raise SchemaError("values to rank hold NaN")
    n = x.size
    if n == 0:
        return np.empty(0)
    if x.dtype == np.float32 and n < 2**32 and sys.byteorder == "little":
        keys = _float32_keys(x)
        counted = _ranks_by_counting(keys)
        if counted is not None:
            return counted
        order, keys = _sorted_keys(keys)
    else:
        order = np.argsort(x)
        keys = x[order]
    ranks = np.empty(n)
    tied = keys[1:] == keys[:-1]
    del keys
    if not tied.any():
        ranks[order] = np.arange(1.0, n + 1.0)
        return ranks
    edges = np.flatnonzero(~tied) + 1
    starts = np.concatenate(([0], edges))
    stops = np.concatenate((edges, [n]))
    # (first rank + last rank) / 2 of each run of equal values: a half-integer, exact
    ranks[order] = np.repeat((starts + stops + 1) / 2, stops - starts)
    return ranks


def kendall_tau_a(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-a of two vectors: (concordant - discordant) / (n (n - 1) / 2).

    Examples
    --------
    >>> kendall_tau_a(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0]))
    0.6666666666666666
    """
    n = a.size
    pairs = n * (n - 1) / 2
    tied_a, tied_b = _tied_pairs(a), _tied_pairs(b)
    if tied_a == pairs or tied_b == pairs:
        return 0.0  # every pair tied in one of them: no pair is concordant or discordant
    tau_b = stats.kendalltau(a, b, variant="b").statistic
    return float(tau_b * np.sqrt((pairs - tied_a) * (pairs - tied_b)) / pairs)


def _tied_pairs(x: np.ndarray) -> float:
    _, counts = np.unique(x, return_counts=True)
    return float((counts * (counts - 1) / 2).sum())


def compare(a_upper: np.ndarray, b_upper: np.ndarray, method: str = "spearman") -> float:
    """The similarity of two RDMs from their upper triangles (:func:`queries.rdm.upper`).

    Examples
    --------
    >>> a, b = np.array([0.1, 0.5, 0.3, 0.9]), np.array([0.2, 0.4, 0.6, 0.8])
    >>> compare(a, b), round(compare(a, b, "pearson"), 4), round(compare(a, b, "kendall"), 4)
    (0.8, 0.8315, 0.6667)
    """
    check_method(method)
    a, b = np.asarray(a_upper).ravel(), np.asarray(b_upper).ravel()
    if a.shape != b.shape:
        raise SchemaError(f"RDM triangles of different lengths: {a.size} and {b.size}")
    if method != "spearman" or a.dtype != b.dtype or a.dtype != np.float32:
        a, b = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    absent = np.isnan(a) | np.isnan(b)
    if absent.any():
        a, b = a[~absent], b[~absent]
    del absent
    if a.size < 2:
        raise SchemaError(f"{a.size} dissimilarities to compare; a comparison needs at least 2")
    if method == "kendall":
        return kendall_tau_a(a, b)
    if method == "spearman":  # float32 triangles ranked as they are: the ranks are exact
        return _pearson(average_ranks(a), average_ranks(b), in_place=True)
    return _pearson(a, b)


def _square(matrix: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(matrix, np.float64)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] < 3:
        raise SchemaError(
            f"{name} must be a square RDM of 3 or more conditions, got {values.shape}"
        )
    return values


def _pair(rdm_a: np.ndarray, rdm_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _square(rdm_a, "rdm_a"), _square(rdm_b, "rdm_b")
    if a.shape != b.shape:
        raise SchemaError(f"RDMs of different sizes: {a.shape} and {b.shape}")
    return a, b


def permutation_test(
    rdm_a: np.ndarray,
    rdm_b: np.ndarray,
    method: str = "spearman",
    n: int = 1000,
    seed: int = 0,
) -> tuple[float, float, np.ndarray]:
    """The observed similarity, its permutation p-value and the ``n`` permuted values.

    Examples
    --------
    >>> x = np.random.default_rng(1).normal(size=(8, 5))
    >>> from queries.rdm import rdm
    >>> observed, p, null = permutation_test(rdm(x), rdm(x + 0.1), n=99, seed=3)
    >>> round(observed, 4), p, null.shape
    (1.0, 0.01, (99,))
    """
    check_method(method)
    if n < 1:
        raise ParameterError("permutations", f"must be at least 1, got {n}")
    a, b = _pair(rdm_a, rdm_b)
    observed = compare(upper(a), upper(b), method)
    k = a.shape[0]
    rng = np.random.default_rng(seed)
    orders = np.stack([rng.permutation(k) for _ in range(n)])
    rows, columns = np.triu_indices(k, 1)
    if method == "kendall":
        b_upper = upper(b)
        null = np.array([compare(a[o][:, o][rows, columns], b_upper, method) for o in orders])
    else:
        if np.isnan(a).any() or np.isnan(b).any():
            raise SchemaError("a permutation test needs RDMs without NaN dissimilarities")
        a_upper, b_upper = upper(a), upper(b)
        if method == "spearman":
            a_upper, b_upper = average_ranks(a_upper), average_ranks(b_upper)
        centred = np.zeros((k, k))
        centred[rows, columns] = a_upper - a_upper.mean()
        centred += centred.T
        db = b_upper - b_upper.mean()
        scale = np.sqrt(float(centred[rows, columns] @ centred[rows, columns]) * float(db @ db))
        batch = max(1, BATCH_BYTES // (8 * rows.size))
        null = np.concatenate([
            centred[o[:, rows], o[:, columns]] @ db / scale
            for o in (orders[i : i + batch] for i in range(0, n, batch))
        ])  # fmt: skip
    p = (1 + int((null >= observed - TOLERANCE).sum())) / (1 + n)
    return observed, p, null


def bootstrap_ci(
    rdm_a: np.ndarray,
    rdm_b: np.ndarray,
    method: str = "spearman",
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, np.ndarray]:
    """The ``level`` percentile interval of the similarity over ``n`` bootstrap samples
    of the conditions, and the samples' values (NaN where a sample left fewer than 2
    pairs).

    Examples
    --------
    >>> x = np.random.default_rng(1).normal(size=(10, 5))
    >>> from queries.rdm import rdm
    >>> low, high, values = bootstrap_ci(rdm(x), rdm(x + 0.3), n=50, seed=0)
    >>> bool(low <= high <= 1.0), values.shape
    (True, (50,))
    """
    check_method(method)
    if n < 1:
        raise ParameterError("bootstrap", f"must be at least 1, got {n}")
    if not 0 < level < 1:
        raise ParameterError("level", f"must be between 0 and 1, got {level}")
    a, b = _pair(rdm_a, rdm_b)
    k = a.shape[0]
    rng = np.random.default_rng(seed)
    rows, columns = np.triu_indices(k, 1)
    values = np.full(n, np.nan)
    for i in range(n):
        pick = np.asarray(rng.integers(0, k, size=k), np.int64)
        left, right = pick[rows], pick[columns]
        distinct = left != right
        if distinct.sum() >= 2:
            values[i] = compare(a[left, right][distinct], b[left, right][distinct], method)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high), values
