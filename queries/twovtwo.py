"""The 2 vs 2 test of similarity encoding (METHODS.md, "Representational similarity";
Dharmaretnam & Fyshe, section 2), on arrays.

Both compare two spaces through their k x k Pearson similarity matrices, never the
vectors themselves, so the spaces may differ in width (a CNN layer and word vectors).

**2 vs 2.** For concepts c1, c2, a_c1 is row c1 of space A's similarity matrix without
the columns c1 and c2 (its correlations to the other k - 2 concepts), and likewise
a_c2, b_c1, b_c2. The pair passes if corr(a_c1, b_c1) + corr(a_c2, b_c2) >
corr(a_c1, b_c2) + corr(a_c2, b_c1). All k(k - 1)/2 pairs are scored at once: with
each similarity row centred, the cross products G = S_A S_B^T, the row sums and the
row sums of squares are over all k columns, and each pair's four Pearson correlations
over its k - 2 columns are those totals less the two excluded columns' terms (exact:
no approximation, only the summation order differs from slicing). Pairs are scored in
blocks of :data:`PAIR_BLOCK` as arrays, with no Python loop over pairs.

**Ties.** The paper passes a pair when the matched sum is *greater*: a tie fails. A
difference within :data:`TIE_TOLERANCE` counts as a tie, so that rounding (which
differs between this arithmetic and a loop over sliced vectors) never decides a pair;
a pair whose correlations are undefined (a row constant over its k - 2 columns) fails
too. Both are counted (``n_ties``, ``n_undefined``).

**Significance.** The null permutes the concepts of space B (rows and columns of its
similarity matrix together, as permuting the rows of its embeddings and recomputing
would), ``permutations`` times from ``numpy.random.default_rng(seed)``, and reruns the
test; p = (1 + #{null >= observed}) / (1 + N). Each permutation costs one k x k x k
product (2 GFLOP at k = 1,000).

The 1 vs 2 test is in :mod:`queries.onevstwo`, the store-level functions in
:mod:`queries.twovtwo_store`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from actstore.errors import ParameterError

TIE_TOLERANCE = 1e-9  # differences this small are rounding, not evidence
PAIR_BLOCK = 1 << 14  # pairs scored at once: their arrays stay in the CPU's cache


@dataclass(frozen=True)
class TwoVsTwo:
    """The 2 vs 2 accuracy of two spaces over all pairs of their k concepts.

    ``null`` holds the accuracies of the permuted spaces (empty without permutations)
    and ``p`` is (1 + #{null >= accuracy}) / (1 + permutations), NaN without them.
    """

    accuracy: float
    n_pairs: int
    n_concepts: int
    n_ties: int
    n_undefined: int
    permutations: int
    seed: int
    null: np.ndarray = field(repr=False)
    p: float


def similarity(vectors: np.ndarray) -> np.ndarray:
    """The k x k Pearson correlations between the rows of a k x units array (float64).

    Examples
    --------
    >>> similarity(np.array([[1.0, 2, 3], [3, 2, 1], [1, 2, 4]])).round(3)
    array([[ 1.   , -1.   ,  0.982],
           [-1.   ,  1.   , -0.982],
           [ 0.982, -0.982,  1.   ]])
    """
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        x = x / norms[:, None]
    result: np.ndarray = np.clip(x @ x.T, -1.0, 1.0)
    return result


def two_vs_two(a: np.ndarray, b: np.ndarray, *, permutations: int = 0, seed: int = 0) -> TwoVsTwo:
    """The 2 vs 2 test between two spaces: ``a`` (k x units_a) and ``b`` (k x units_b)
    hold the condition vectors of the same k concepts in the same order.

    Each space is turned into its Pearson similarity matrix (:func:`similarity`) and
    scored by :func:`two_vs_two_similarity`; see the module text for the test, ties and
    the permutation null.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> words = rng.standard_normal((30, 50))
    >>> layer = words @ rng.standard_normal((50, 80)) + rng.standard_normal((30, 80))
    >>> result = two_vs_two(words, layer, permutations=99)
    >>> result.n_pairs, result.accuracy > 0.9, result.p
    (435, True, 0.01)
    >>> two_vs_two(words, rng.standard_normal((30, 20))).accuracy
    0.5...
    """
    a, b = as_vectors(a, "a"), as_vectors(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ParameterError(
            "b", f"has {b.shape[0]} concepts and a {a.shape[0]}: both need the same concepts"
        )
    return two_vs_two_similarity(similarity(a), similarity(b), permutations=permutations, seed=seed)


def two_vs_two_similarity(
    s_a: np.ndarray, s_b: np.ndarray, *, permutations: int = 0, seed: int = 0
) -> TwoVsTwo:
    """The 2 vs 2 test from two k x k similarity matrices of the same concepts.

    Any similarity (or a dissimilarity in *both*: Pearson is unchanged when both
    vectors change sign) will do; the diagonal is never read, since a pair's own two
    columns are left out.

    Examples
    --------
    >>> s = np.array([[1, .9, .2, .1, .5], [.9, 1, .3, .2, .4], [.2, .3, 1, .8, .1],
    ...               [.1, .2, .8, 1, .3], [.5, .4, .1, .3, 1]])
    >>> two_vs_two_similarity(s, s).accuracy, two_vs_two_similarity(1 - s, 1 - s).accuracy
    (1.0, 1.0)
    >>> two_vs_two_similarity(s, 1 - s).accuracy  # a similarity against a dissimilarity
    0.0
    """
    s_a, s_b = _square(s_a, "s_a"), _square(s_b, "s_b")
    k = s_a.shape[0]
    _check_concepts(k, s_b.shape[0])
    if permutations < 0:
        raise ParameterError("permutations", f"must be 0 or more, got {permutations}")
    x = s_a - s_a.mean(axis=1, keepdims=True)  # Pearson ignores a row's shift; this
    y = s_b - s_b.mean(axis=1, keepdims=True)  # keeps the sums of squares well conditioned
    sums = _row_sums(x)
    blocks = [_Side(k, rows, sums) for rows in _row_blocks(k)]
    passes, ties, undefined = _score(blocks, x, y)
    n_pairs = k * (k - 1) // 2
    rng = np.random.default_rng(seed)
    null = np.empty(permutations, dtype=np.float64)
    beaten = 0
    for n in range(permutations):
        order = rng.permutation(k)
        passes_n = _score(blocks, x, y[np.ix_(order, order)])[0]
        null[n] = passes_n / n_pairs
        beaten += passes_n >= passes  # counts, not floats: equal is equal
    return TwoVsTwo(
        accuracy=passes / n_pairs,
        n_pairs=n_pairs,
        n_concepts=k,
        n_ties=ties,
        n_undefined=undefined,
        permutations=permutations,
        seed=seed,
        null=null,
        p=(1 + beaten) / (1 + permutations) if permutations else math.nan,
    )


def two_vs_two_pairs(s_a: np.ndarray, s_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair's score: first concepts i, second concepts j (i < j, in row order)
    and the matched minus mismatched sum of correlations (positive: passed; within
    :data:`TIE_TOLERANCE` of 0: a tie; NaN: undefined). Which concepts pass or fail,
    the flexibility the paper asks of the test; k(k - 1)/2 entries each.

    Examples
    --------
    >>> s = np.array([[1, .9, .2, .1, .5], [.9, 1, .3, .2, .4], [.2, .3, 1, .8, .1],
    ...               [.1, .2, .8, 1, .3], [.5, .4, .1, .3, 1]])
    >>> i, j, difference = two_vs_two_pairs(s, s)
    >>> i[:4].tolist(), j[:4].tolist(), bool((difference > 0).all())
    ([0, 0, 0, 0], [1, 2, 3, 4], True)
    """
    s_a, s_b = _square(s_a, "s_a"), _square(s_b, "s_b")
    _check_concepts(s_a.shape[0], s_b.shape[0])
    x = s_a - s_a.mean(axis=1, keepdims=True)
    y = s_b - s_b.mean(axis=1, keepdims=True)
    sums_x, sums_y, g = _row_sums(x), _row_sums(y), x @ y.T
    blocks = [_Side(x.shape[0], rows, sums_x) for rows in _row_blocks(x.shape[0])]
    parts = [_differences(side, _row_terms(sums_y, side), g) for side in blocks]
    return (
        np.concatenate([side.i for side in blocks]),
        np.concatenate([side.j for side in blocks]),
        np.concatenate(parts),
    )


def _check_concepts(k: int, k_b: int) -> None:
    if k_b != k:
        raise ParameterError("s_b", f"is {k_b} x {k_b} and s_a {k} x {k}: the same concepts")
    if k < 4:
        raise ParameterError(
            "a", f"has {k} concepts; the 2 vs 2 test needs at least 4 (k - 2 >= 2 columns)"
        )


def _row_blocks(k: int) -> list[tuple[int, int]]:
    """Runs of first concepts i whose pairs (i, j > i) number about PAIR_BLOCK."""
    blocks, start, count = [], 0, 0
    for i in range(k - 1):
        count += k - 1 - i
        if count >= PAIR_BLOCK:
            blocks.append((start, i + 1))
            start, count = i + 1, 0
    if start < k - 1:
        blocks.append((start, k - 1))
    return blocks


class _Side:
    """A block of pairs (i < j), their flat indices into a k x k matrix, and space A's
    terms for them (:func:`_row_terms`), kept across permutations."""

    def __init__(self, k: int, rows: tuple[int, int], sums: tuple[np.ndarray, ...]) -> None:
        first = np.arange(rows[0], rows[1])
        counts = k - 1 - first
        starts = np.cumsum(counts) - counts
        self.i = np.repeat(first, counts)
        self.j = self.i + 1 + np.arange(counts.sum()) - np.repeat(starts, counts)
        self.ij, self.ji = self.i * k + self.j, self.j * k + self.i
        self.n = k - 2
        self.terms = _row_terms(sums, self)


def _row_sums(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """The diagonal, the flat view, and each row's sum and sum of squares without its
    diagonal entry; the last array holds the floor below which a variance is zero."""
    diagonal = np.diagonal(x)
    squares = np.einsum("ij,ij->i", x, x)
    floor = np.array([1e-12 * (float(squares.max()) + 1.0)])
    return diagonal, x.ravel(), x.sum(axis=1) - diagonal, squares - diagonal**2, floor


def _row_terms(sums: tuple[np.ndarray, ...], side: _Side) -> tuple[np.ndarray, ...]:
    """For each pair (i, j) of the block: x[i, i], x[i, j], x[j, i], x[j, j], then for
    rows i and j over the columns other than i and j, the means and the inverse root
    sums of squared deviations (NaN where a row is constant there)."""
    i, j, n = side.i, side.j, side.n
    diagonal, flat, total, squares, floor = sums
    xii, xjj, xij, xji = diagonal[i], diagonal[j], flat.take(side.ij), flat.take(side.ji)
    mean_i = (total[i] - xij) / n
    mean_j = (total[j] - xji) / n
    var_i = squares[i] - xij * xij - n * mean_i * mean_i
    var_j = squares[j] - xji * xji - n * mean_j * mean_j
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_i, inv_j = 1.0 / np.sqrt(var_i), 1.0 / np.sqrt(var_j)
    # a variance at rounding level is a constant row: its correlations are undefined
    inv_i[var_i <= floor[0]] = np.nan
    inv_j[var_j <= floor[0]] = np.nan
    return xii, xij, xji, xjj, mean_i, mean_j, inv_i, inv_j


def _score(blocks: list[_Side], x: np.ndarray, y: np.ndarray) -> tuple[int, int, int]:
    """Passes, ties and undefined pairs of the 2 vs 2 test over every block."""
    g = x @ y.T
    sums = _row_sums(y)
    passes = ties = undefined = 0
    for side in blocks:
        diff = _differences(side, _row_terms(sums, side), g)
        passes += int(np.count_nonzero(diff > TIE_TOLERANCE))
        ties += int(np.count_nonzero(np.abs(diff) <= TIE_TOLERANCE))
        undefined += int(np.count_nonzero(np.isnan(diff)))
    return passes, ties, undefined


def _differences(side: _Side, terms: tuple[np.ndarray, ...], g: np.ndarray) -> np.ndarray:
    """Matched minus mismatched sums of correlations, one per pair of the block."""
    i, j, n = side.i, side.j, side.n
    xii, xij, xji, xjj, mx_i, mx_j, ix_i, ix_j = side.terms
    yii, yij, yji, yjj, my_i, my_j, iy_i, iy_j = terms
    diagonal, flat = np.diagonal(g), g.ravel()
    # cov(a_r, b_s) over the k - 2 columns: G[r, s] less the columns i and j, less
    # (k - 2) times the product of the means
    c_ii = diagonal[i] - xii * yii - xij * yij - n * mx_i * my_i
    c_jj = diagonal[j] - xji * yji - xjj * yjj - n * mx_j * my_j
    c_ij = flat.take(side.ij) - xii * yji - xij * yjj - n * mx_i * my_j
    c_ji = flat.take(side.ji) - xji * yii - xjj * yij - n * mx_j * my_i
    matched = c_ii * (ix_i * iy_i) + c_jj * (ix_j * iy_j)
    difference: np.ndarray = matched - (c_ij * (ix_i * iy_j) + c_ji * (ix_j * iy_i))
    return difference


def as_vectors(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as a finite 2-d float64 array (concepts x units), or a
    :class:`~actstore.errors.ParameterError` naming ``name``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ParameterError(name, f"must be 2-d (concepts x units), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ParameterError(name, "holds NaN or infinite values")
    return array


def _square(values: np.ndarray, name: str) -> np.ndarray:
    array = as_vectors(values, name)
    if array.shape[0] != array.shape[1]:
        raise ParameterError(name, f"must be square (k x k similarities), got {array.shape}")
    return array
