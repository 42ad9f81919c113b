"""The 1 vs 2 test of misclassified images (METHODS.md, "Representational similarity";
Dharmaretnam & Fyshe, section 3.3), on arrays; :func:`queries.twovtwo_store.one_vs_two_store`
reads them from a store.

For an image of true class t misclassified as p, its correlation vector is
its Pearson correlations to the class means of correctly classified images; w_t and
w_p are t's and p's correlations to the same classes in word space. The classes t and
p themselves are left out of all three vectors: in the paper's design the true class
has no correctly classified image (one image per class), and keeping p would put p's
self-correlation of 1 into w_p. The test passes if corr(i, w_t) > corr(i, w_p) (a tie,
within :data:`TIE_TOLERANCE`, fails).

Pearson correlations are over each image's kept classes (a mask), so no loop over
images is needed. Significance: the exact one-sided binomial p against chance 0.5
(images sharing classes are not independent, so it is optimistic), and a permutation
null that shuffles which word vector belongs to which class, N times from
``numpy.random.default_rng(seed)``: p = (1 + #{null >= observed}) / (1 + N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from actstore.errors import ParameterError, SchemaError
from queries.twovtwo import TIE_TOLERANCE, as_vectors, similarity


@dataclass(frozen=True)
class OneVsTwo:
    """The 1 vs 2 accuracy over misclassified images.

    ``r_true`` and ``r_predicted`` are each image's corr(i, w_t) and corr(i, w_p);
    ``passed`` whether the first is greater. ``p_binomial`` is the one-sided exact
    binomial p of the passes against chance 0.5; ``p`` the permutation p (word
    vectors' concepts permuted, NaN without permutations).
    """

    accuracy: float
    n_images: int
    n_ties: int
    n_undefined: int
    r_true: np.ndarray = field(repr=False)
    r_predicted: np.ndarray = field(repr=False)
    passed: np.ndarray = field(repr=False)
    p_binomial: float
    permutations: int
    seed: int
    null: np.ndarray = field(repr=False)
    p: float


def one_vs_two(
    images: np.ndarray,
    true: np.ndarray,
    predicted: np.ndarray,
    means: np.ndarray,
    words: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    permutations: int = 0,
    seed: int = 0,
) -> OneVsTwo:
    """The 1 vs 2 test of misclassified images against word vectors.

    Parameters
    ----------
    images
        m x units: the misclassified images' activations at one site.
    true, predicted
        m class indices (0 .. k - 1) of each image's true and predicted class.
    means
        k x units: each class's mean activation over its correctly classified images
        (rows outside ``reference`` are not read).
    words
        k x units_w: each class's word vector.
    reference
        k booleans: the classes with correctly classified images, the ones every
        correlation vector runs over (default all); t and p are left out per image.
    permutations, seed
        The null permutes which word vector belongs to which class, N times.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> words = rng.standard_normal((12, 40))
    >>> means = words @ rng.standard_normal((40, 60))
    >>> true, predicted = np.arange(6), np.arange(6, 12)
    >>> images = means[true] + 0.2 * means.std() * rng.standard_normal((6, 60))
    >>> result = one_vs_two(images, true, predicted, means, words, permutations=99)
    >>> int(result.passed.sum()), result.n_images, result.p_binomial, result.p
    (5, 6, 0.109375, 0.17)
    """
    images = as_vectors(images, "images")
    means, words = as_vectors(means, "means"), as_vectors(words, "words")
    k = words.shape[0]
    true, predicted = _classes(true, k, "true"), _classes(predicted, k, "predicted")
    if means.shape[0] != k or means.shape[1] != images.shape[1]:
        raise ParameterError(
            "means", f"is {means.shape[0]} x {means.shape[1]}; expected {k} classes (the "
            f"rows of words) x {images.shape[1]} units (the columns of images)",
        )  # fmt: skip
    if len(true) != images.shape[0] or len(predicted) != images.shape[0]:
        raise ParameterError("true", f"and predicted need one class per image ({images.shape[0]})")
    if np.any(true == predicted):
        raise ParameterError("predicted", "equals true for some image: it is not misclassified")
    chosen = np.ones(k, bool) if reference is None else np.asarray(reference, dtype=bool)
    if chosen.shape != (k,):
        raise ParameterError("reference", f"needs {k} booleans, got shape {chosen.shape}")
    columns = np.flatnonzero(chosen)
    if len(columns) < 3:
        raise ParameterError(
            "reference", f"has {len(columns)} classes; the 1 vs 2 test needs at least 3"
        )
    # i: the images' correlations to the reference class means (m x r)
    i_vectors = _cross_correlation(images, means[columns])
    keep = np.ones((len(true), len(columns)), dtype=bool)
    position = np.full(k, -1)
    position[columns] = np.arange(len(columns))
    for labels in (true, predicted):
        at = position[labels]
        keep[np.flatnonzero(at >= 0), at[at >= 0]] = False
    observed = _one_vs_two_scores(i_vectors, keep, similarity(words), true, predicted, columns)
    r_true, r_predicted, diff = observed
    passes = int(np.count_nonzero(diff > TIE_TOLERANCE))
    rng = np.random.default_rng(seed)
    null = np.empty(permutations, dtype=np.float64)
    beaten = 0
    for n in range(permutations):
        order = rng.permutation(k)
        s = similarity(words[order])
        passes_n = int(
            np.count_nonzero(
                _one_vs_two_scores(i_vectors, keep, s, true, predicted, columns)[2] > TIE_TOLERANCE
            )
        )
        null[n] = passes_n / len(true)
        beaten += passes_n >= passes
    return OneVsTwo(
        accuracy=passes / len(true),
        n_images=len(true),
        n_ties=int(np.count_nonzero(np.abs(diff) <= TIE_TOLERANCE)),
        n_undefined=int(np.count_nonzero(np.isnan(diff))),
        r_true=r_true,
        r_predicted=r_predicted,
        passed=diff > TIE_TOLERANCE,
        p_binomial=binomial_p(passes, len(true)),
        permutations=permutations,
        seed=seed,
        null=null,
        p=(1 + beaten) / (1 + permutations) if permutations else math.nan,
    )


def _one_vs_two_scores(
    i_vectors: np.ndarray,
    keep: np.ndarray,
    s_words: np.ndarray,
    true: np.ndarray,
    predicted: np.ndarray,
    columns: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """corr(i, w_t), corr(i, w_p) over each image's kept columns, and their difference."""
    r_true = _masked_correlation(i_vectors, s_words[true][:, columns], keep)
    r_predicted = _masked_correlation(i_vectors, s_words[predicted][:, columns], keep)
    return r_true, r_predicted, r_true - r_predicted


def _masked_correlation(x: np.ndarray, y: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of x and y over the entries where keep is True."""
    w = keep.astype(np.float64)
    n = w.sum(axis=1, keepdims=True)
    xc = (x - (x * w).sum(axis=1, keepdims=True) / n) * w
    yc = (y - (y * w).sum(axis=1, keepdims=True) / n) * w
    sxx, syy = np.einsum("ij,ij->i", xc, xc), np.einsum("ij,ij->i", yc, yc)
    with np.errstate(divide="ignore", invalid="ignore"):
        r: np.ndarray = np.einsum("ij,ij->i", xc, yc) / np.sqrt(sxx * syy)
    scale = n[:, 0] * 1e-24
    r[(sxx <= scale) | (syy <= scale)] = np.nan
    return r


def _cross_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlations between every row of x and every row of y."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = xc / np.sqrt(np.einsum("ij,ij->i", xc, xc))[:, None]
        yc = yc / np.sqrt(np.einsum("ij,ij->i", yc, yc))[:, None]
    result: np.ndarray = np.clip(xc @ yc.T, -1.0, 1.0)
    return result


def binomial_p(passes: int, n: int) -> float:
    """One-sided exact binomial p: P(X >= passes) for X ~ Binomial(n, 1/2).

    Examples
    --------
    >>> binomial_p(36, 36), binomial_p(0, 5)
    (1.4551915228366852e-11, 1.0)
    """
    if n <= 0:
        return math.nan
    return float(sum(math.comb(n, s) for s in range(passes, n + 1)) / 2**n)


def _classes(values: np.ndarray, k: int, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ParameterError(name, f"must be a 1-d array of class indices, got {array.dtype}")
    if len(array) and (array.min() < 0 or array.max() >= k):
        raise ParameterError(name, f"holds class indices outside 0 .. {k - 1}")
    if not len(array):
        raise SchemaError("no misclassified image to test")
    return array.astype(np.int64)
