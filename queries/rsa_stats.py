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

import numpy as np
from scipy import stats

from actstore.errors import ParameterError, SchemaError
from queries.rdm import upper

METHODS = ("spearman", "pearson", "kendall")
BATCH_BYTES = 64 << 20  # gathered float64 values per batch of permutations
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


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    denominator = np.sqrt(float(da @ da) * float(db @ db))
    return float(da @ db / denominator) if denominator > 0 else float("nan")


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
    a, b = np.asarray(a_upper, np.float64).ravel(), np.asarray(b_upper, np.float64).ravel()
    if a.shape != b.shape:
        raise SchemaError(f"RDM triangles of different lengths: {a.size} and {b.size}")
    present = ~(np.isnan(a) | np.isnan(b))
    a, b = a[present], b[present]
    if a.size < 2:
        raise SchemaError(f"{a.size} dissimilarities to compare; a comparison needs at least 2")
    if method == "kendall":
        return kendall_tau_a(a, b)
    if method == "spearman":
        a, b = stats.rankdata(a), stats.rankdata(b)
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
            a_upper, b_upper = stats.rankdata(a_upper), stats.rankdata(b_upper)
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
