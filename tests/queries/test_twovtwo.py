"""The 2 vs 2 and 1 vs 2 tests against a hand-worked example and plain loops over pairs
and images that slice the vectors explicitly and correlate them with ``np.corrcoef``."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

import actstore
import queries.twovtwo as twovtwo
from actstore.errors import ParameterError, SchemaError
from queries.onevstwo import binomial_p, one_vs_two
from queries.twovtwo import (
    similarity,
    two_vs_two,
    two_vs_two_pairs,
    two_vs_two_similarity,
)
from queries.twovtwo_store import one_vs_two_store, two_vs_two_sites


def corr(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1])


def corrcoef(x: np.ndarray) -> np.ndarray:
    """np.corrcoef of a 2-d array (typed as an array)."""
    return np.asarray(np.corrcoef(x))


def loop_two_vs_two(s_a: np.ndarray, s_b: np.ndarray) -> np.ndarray:
    """Matched minus mismatched sums, pair by pair (i < j), from sliced rows."""
    k = len(s_a)
    out = []
    for i, j in itertools.combinations(range(k), 2):
        rest = [c for c in range(k) if c not in (i, j)]
        a_i, a_j, b_i, b_j = s_a[i, rest], s_a[j, rest], s_b[i, rest], s_b[j, rest]
        out.append(corr(a_i, b_i) + corr(a_j, b_j) - corr(a_i, b_j) - corr(a_j, b_i))
    return np.array(out)


# Hand-worked, k = 4: each pair keeps two columns, so every correlation is +1 (both rows
# rise or both fall from the first kept column to the second) or -1.
S_A = np.array(
    [[1.0, 0.8, 0.3, 0.1], [0.8, 1.0, 0.2, 0.4], [0.3, 0.2, 1.0, 0.6], [0.1, 0.4, 0.6, 1.0]]
)
S_B = np.array(
    [[1.0, 0.7, 0.2, 0.5], [0.7, 1.0, 0.1, 0.3], [0.2, 0.1, 1.0, 0.9], [0.5, 0.3, 0.9, 1.0]]
)
# pair  kept   a_i        a_j        b_i        b_j       matched  mismatched
# 0,1   2,3    .3 .1 -    .2 .4 +    .2 .5 +    .1 .3 +   -1+1=0   -1+1=0   tie: fails
# 0,2   1,3    .8 .1 -    .2 .6 +    .7 .5 -    .1 .9 +    1+1=2   -1-1=-2  passes
# 0,3   1,2    .8 .3 -    .4 .6 +    .7 .2 -    .3 .9 +    2        -2      passes
# 1,2   0,3    .8 .4 -    .3 .6 +    .7 .3 -    .2 .9 +    2        -2      passes
# 1,3   0,2    .8 .2 -    .1 .6 +    .7 .1 -    .5 .9 +    2        -2      passes
# 2,3   0,1    .3 .2 -    .1 .4 +    .2 .1 -    .5 .3 -    1-1=0    1-1=0   tie: fails
HAND_DIFFERENCES = [0.0, 4.0, 4.0, 4.0, 4.0, 0.0]


def test_hand_worked_example() -> None:
    i, j, difference = two_vs_two_pairs(S_A, S_B)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == list(
        itertools.combinations(range(4), 2)
    )
    np.testing.assert_allclose(difference, HAND_DIFFERENCES, atol=1e-12)
    np.testing.assert_allclose(loop_two_vs_two(S_A, S_B), HAND_DIFFERENCES, atol=1e-12)
    result = two_vs_two_similarity(S_A, S_B)
    assert (result.accuracy, result.n_pairs, result.n_ties, result.n_undefined) == (4 / 6, 6, 2, 0)
    assert np.isnan(result.p) and result.null.shape == (0,)


@pytest.mark.parametrize("k", [4, 5, 9, 31])
def test_matches_a_loop_over_pairs(k: int) -> None:
    rng = np.random.default_rng(k)
    a = rng.standard_normal((k, 7))
    b = a @ rng.standard_normal((7, 12)) + 2 * rng.standard_normal((k, 12))
    s_a, s_b = corrcoef(a), corrcoef(b)
    want = loop_two_vs_two(s_a, s_b)
    np.testing.assert_allclose(two_vs_two_pairs(s_a, s_b)[2], want, atol=1e-10)
    result = two_vs_two(a, b)
    assert result.accuracy == np.mean(want > 0)
    assert (result.n_pairs, result.n_concepts) == (k * (k - 1) // 2, k)


def test_blocks_of_pairs_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((40, 5)), rng.standard_normal((40, 6))
    whole = two_vs_two(a, b, permutations=5)
    monkeypatch.setattr(twovtwo, "PAIR_BLOCK", 17)
    assert len(twovtwo._row_blocks(40)) > 10
    blocked = two_vs_two(a, b, permutations=5)
    assert blocked.accuracy == whole.accuracy
    np.testing.assert_array_equal(blocked.null, whole.null)
    np.testing.assert_allclose(
        two_vs_two_pairs(similarity(a), similarity(b))[2],
        loop_two_vs_two(corrcoef(a), corrcoef(b)),
        atol=1e-10,
    )


def test_identical_spaces_pass_every_pair() -> None:
    a = np.random.default_rng(0).standard_normal((30, 20))
    assert two_vs_two(a, a).accuracy == 1.0
    assert two_vs_two(a, 3 * a + 1).accuracy == 1.0  # similarity ignores scale and shift


def test_a_random_space_is_at_chance() -> None:
    rng = np.random.default_rng(1)
    result = two_vs_two(rng.standard_normal((80, 30)), rng.standard_normal((80, 50)))
    assert abs(result.accuracy - 0.5) < 0.05


def test_permutation_p_by_the_formula_and_reproducible() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((12, 8))
    b = a + 1.5 * rng.standard_normal((12, 8))
    result = two_vs_two(a, b, permutations=19, seed=7)
    s_a, s_b = similarity(a), similarity(b)
    orders = np.random.default_rng(7)
    want = [
        two_vs_two_similarity(s_a, s_b[o][:, o]).accuracy
        for o in (orders.permutation(12) for _ in range(19))
    ]
    np.testing.assert_array_equal(result.null, want)
    assert result.p == (1 + np.sum(result.null >= result.accuracy)) / 20
    again = two_vs_two(a, b, permutations=19, seed=7)
    np.testing.assert_array_equal(again.null, result.null)
    assert again.p == result.p and result.seed == 7 and result.permutations == 19
    assert not np.array_equal(two_vs_two(a, b, permutations=19, seed=8).null, result.null)


def test_a_constant_row_is_undefined_and_fails() -> None:
    s_b = S_B.copy()
    s_b[0, 1:] = 0.5  # row 0 constant over every pair's kept columns
    result = two_vs_two_similarity(S_A, s_b)
    assert result.n_undefined == 3  # the pairs (0, 1), (0, 2), (0, 3)
    assert result.accuracy == 2 / 6


def test_refusals() -> None:
    with pytest.raises(ParameterError, match="needs at least 4"):
        two_vs_two(np.eye(3), np.eye(3))
    with pytest.raises(ParameterError, match="same concepts"):
        two_vs_two(np.eye(5), np.eye(6))
    with pytest.raises(ParameterError, match="NaN"):
        two_vs_two(np.full((5, 2), np.nan), np.eye(5))
    with pytest.raises(ParameterError, match="square"):
        two_vs_two_similarity(np.ones((4, 3)), np.eye(4))
    with pytest.raises(ParameterError, match="permutations must be 0 or more"):
        two_vs_two(np.eye(5), np.eye(5), permutations=-1)


# -- 1 vs 2 ----------------------------------------------------------------------------


def loop_one_vs_two(
    images: np.ndarray,
    true: np.ndarray,
    predicted: np.ndarray,
    means: np.ndarray,
    words: np.ndarray,
    reference: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    r_true, r_predicted = [], []
    for image, t, p in zip(images, true, predicted, strict=True):
        kept = [c for c in np.flatnonzero(reference) if c not in (t, p)]
        i = np.array([corr(image, means[c]) for c in kept])
        w_t = np.array([corr(words[t], words[c]) for c in kept])
        w_p = np.array([corr(words[p], words[c]) for c in kept])
        r_true.append(corr(i, w_t))
        r_predicted.append(corr(i, w_p))
    return np.array(r_true), np.array(r_predicted)


def one_vs_two_case(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    words = rng.standard_normal((10, 6))
    means = words @ rng.standard_normal((6, 9)) + 0.5 * rng.standard_normal((10, 9))
    true = np.array([0, 1, 2, 8, 9, 3, 9])
    predicted = np.array([4, 0, 9, 1, 2, 8, 5])
    images = means[true] + rng.standard_normal((7, 9))
    reference = np.ones(10, bool)
    reference[[8, 9]] = False  # classes 8 and 9 have no correctly classified image
    return images, true, predicted, means, words, reference


def test_one_vs_two_matches_a_loop_over_images() -> None:
    images, true, predicted, means, words, reference = one_vs_two_case()
    result = one_vs_two(images, true, predicted, means, words, reference=reference)
    want_true, want_predicted = loop_one_vs_two(images, true, predicted, means, words, reference)
    np.testing.assert_allclose(result.r_true, want_true, atol=1e-12)
    np.testing.assert_allclose(result.r_predicted, want_predicted, atol=1e-12)
    np.testing.assert_array_equal(result.passed, want_true > want_predicted)
    assert result.accuracy == np.mean(want_true > want_predicted) and result.n_images == 7
    assert result.p_binomial == binomial_p(int(result.passed.sum()), 7)


def test_one_vs_two_hand_worked() -> None:
    # 5 classes, all with correctly classified images whose means are the word vectors
    # themselves, and one image of class 0 (predicted 1) that is word vector 0. Over the
    # classes 2, 3, 4 left, its correlations to the means are w_0 exactly, so
    # corr(i, w_0) = 1 and the test passes unless w_1 is an increasing function of w_0.
    words = np.array([[1.0, 0, 0], [0, 1, 0], [1, 0.2, 0], [1, 0.5, 0.2], [0.2, 1, 0.1]])
    result = one_vs_two(words[:1], np.array([0]), np.array([1]), words, words)
    w_0 = np.array([corr(words[0], words[c]) for c in (2, 3, 4)])
    w_1 = np.array([corr(words[1], words[c]) for c in (2, 3, 4)])
    assert result.r_true[0] == pytest.approx(1.0)
    assert result.r_predicted[0] == pytest.approx(corr(w_0, w_1))
    assert corr(w_0, w_1) < 0  # w_0 falls from class 2 to 4, w_1 rises
    assert result.accuracy == 1.0 and result.p_binomial == 0.5


def test_one_vs_two_permutations() -> None:
    images, true, predicted, means, words, reference = one_vs_two_case(1)
    result = one_vs_two(
        images, true, predicted, means, words, reference=reference, permutations=9, seed=4
    )
    orders = np.random.default_rng(4)
    want = [
        one_vs_two(images, true, predicted, means, words[o], reference=reference).accuracy
        for o in (orders.permutation(10) for _ in range(9))
    ]
    np.testing.assert_array_equal(result.null, want)
    assert result.p == (1 + np.sum(result.null >= result.accuracy)) / 10


def test_binomial_p_against_scipy() -> None:
    for passes, n in [(0, 1), (3, 7), (25, 36), (36, 36)]:
        want = stats.binomtest(passes, n, 0.5, alternative="greater").pvalue
        assert binomial_p(passes, n) == pytest.approx(want, rel=1e-12)


def test_one_vs_two_refusals() -> None:
    images, true, predicted, means, words, _ = one_vs_two_case()
    with pytest.raises(ParameterError, match="not misclassified"):
        one_vs_two(images, true, true, means, words)
    with pytest.raises(ParameterError, match="at least 3"):
        one_vs_two(images, true, predicted, means, words, reference=np.arange(10) < 2)
    with pytest.raises(ParameterError, match=r"outside 0 \.\. 9"):
        one_vs_two(images, true + 5, predicted, means, words)
    with pytest.raises(ParameterError, match="expected 10 classes"):
        one_vs_two(images, true, predicted, means[:5], words)


# -- on a store ------------------------------------------------------------------------

CLASSES = ["apple", "boat", "car", "cat", "dog", "tree"]


@pytest.fixture(scope="module")
def image_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images of six classes with word vectors and of zebra (none), 4 per class, a site
    ``cnn/block`` over them, rank-1 and rank-2 predictions in ``predictions_cnn`` (some
    wrong, one in another case, one with a second lemma, one naming a class without a
    word vector, one NULL), and ``glove/vectors`` over a words table."""
    path = tmp_path_factory.mktemp("images") / "images.actstore"
    rng = np.random.default_rng(11)
    labels = [c for c in [*CLASSES, "zebra"] for _ in range(4)]
    n = len(labels)
    predicted: list[str | None] = list(labels)
    predicted[12] = "Dog"  # a cat taken for a dog: tested
    predicted[4] = "apple, pomme"  # a boat taken for an apple: tested
    predicted[16] = "Car"  # a dog taken for a car: tested
    predicted[20] = "boat"  # a tree taken for a boat: tested
    predicted[13] = "Egyptian cat"  # no word vector: skipped
    predicted[24] = "cat"  # a zebra, no word vector: skipped
    predicted[5] = None  # the model names no class: skipped
    words = ["the", "cat", "dog", "car", "boat", "apple", "tree", "Cat"]
    vectors = rng.standard_normal((len(words), 10))
    code = {c: words.index(c) for c in CLASSES}
    mixing = rng.standard_normal((10, 12))
    acts = np.stack(
        [vectors[code[c]] @ mixing if c in code else rng.standard_normal(12) for c in labels]
    ) + 0.8 * rng.standard_normal((n, 12))
    with actstore.create(path) as store:
        pixels = rng.integers(0, 256, (n, 4, 4), dtype=np.uint8)
        actstore.ingest_images(store, pixels, labels=labels)
        write_site(store, "cnn/block", acts, table="images")
        store.write_result(
            "predictions_cnn",
            pa.table(
                {
                    "row": np.repeat(np.arange(n), 2),
                    "rank": np.tile(np.array([1, 2], np.int32), n),
                    "class": np.zeros(2 * n, np.int32),
                    "class_name": pa.array(
                        [x for p in predicted for x in (p, "other")], pa.string()
                    ),
                    "probability": np.full(2 * n, 0.5),
                }
            ),
        )
        with store.transaction():
            store.append_table(
                "words",
                pa.table(
                    {
                        "row": np.arange(len(words), dtype=np.int64),
                        "word": words,
                        "rank": np.arange(1, len(words) + 1, dtype=np.int64),
                        "source": ["test"] * len(words),
                    }
                ),
            )
        write_site(store, "glove/vectors", vectors, table="words")
    return path


def write_site(store: actstore.Store, name: str, values: np.ndarray, table: str) -> None:
    writer = store.create_site(name, table=table, n_units=values.shape[1], dtype="float32")
    writer.write(0, values.astype(np.float32))
    writer.commit()


def test_one_vs_two_store_against_a_loop(image_store: Path) -> None:
    with actstore.open(image_store) as store:
        found = one_vs_two_store(store, "cnn/block", "glove/vectors", permutations=9)
        acts = store.acts("cnn/block", dtype="float64").values
        vectors = store.acts("glove/vectors", dtype="float64").values
    assert found.images[["row", "label", "predicted"]].values.tolist() == [
        [4, "boat", "apple"],
        [12, "cat", "dog"],
        [16, "dog", "car"],
        [20, "tree", "boat"],
    ]
    assert found.skipped == {
        "no label or class name": 1,
        "true class without a word vector": 1,
        "predicted class without a word vector": 1,
    }
    # independent: class means of the correctly classified images of each class
    correct = {c: [r for r in range(24) if r // 4 == CLASSES.index(c)] for c in CLASSES}
    for wrong in (4, 5, 12, 13, 16, 20):
        correct[CLASSES[wrong // 4]].remove(wrong)
    means = np.array([acts[correct[c]].mean(axis=0) for c in CLASSES])
    words = vectors[[1 + ["cat", "dog", "car", "boat", "apple", "tree"].index(c) for c in CLASSES]]
    index = {c: i for i, c in enumerate(CLASSES)}
    true = np.array([index[c] for c in found.images["label"]])
    predicted = np.array([index[c] for c in found.images["predicted"]])
    want_true, want_predicted = loop_one_vs_two(
        acts[found.images["row"]], true, predicted, means, words, np.ones(6, bool)
    )
    np.testing.assert_allclose(found.images["r_true"], want_true, atol=1e-9)
    np.testing.assert_allclose(found.images["r_predicted"], want_predicted, atol=1e-9)
    summary = found.summary.iloc[0]
    assert summary["accuracy"] == np.mean(want_true > want_predicted)
    assert (summary["n_images"], summary["n_classes"], summary["permutations"]) == (4, 6, 9)


def test_one_vs_two_store_refusals(image_store: Path) -> None:
    with actstore.open(image_store) as store:
        with pytest.raises(SchemaError, match="no misclassified image to test"):
            one_vs_two_store(
                store, "cnn/block", "glove/vectors", where="row NOT IN (4, 12, 16, 20)"
            )
        with pytest.raises(SchemaError, match="no predictions table 'predictions_x'"):
            one_vs_two_store(store, "cnn/block", "glove/vectors", predictions="predictions_x")
        with pytest.raises(SchemaError, match="no class has a word vector"):
            one_vs_two_store(
                store, "cnn/block", "glove/vectors", where="label = 'zebra' AND row <> 24"
            )


def test_two_vs_two_sites_against_arrays(image_store: Path) -> None:
    with actstore.open(image_store) as store:
        table = two_vs_two_sites(
            store, "cnn/block", "glove/vectors", by_a="label", by_b="lower(word)",
            where_b="row > 0", permutations=19, seed=3,
        )  # fmt: skip
        acts = store.acts("cnn/block", dtype="float64").values
        vectors = store.acts("glove/vectors", dtype="float64").values
    assert table.columns.tolist() == [
        "site_a", "site_b", "accuracy", "n_pairs", "n_concepts", "p", "permutations", "seed"
    ]  # fmt: skip
    # the six classes both sides have; cat's word vector is the mean of cat and Cat
    means = np.array([acts[i * 4 : i * 4 + 4].mean(axis=0) for i in range(6)])
    rows = {"apple": [5], "boat": [4], "car": [3], "cat": [1, 7], "dog": [2], "tree": [6]}
    words = np.array([vectors[rows[c]].mean(axis=0) for c in CLASSES])
    want = two_vs_two(means, words, permutations=19, seed=3)
    row = table.iloc[0]
    assert (row["n_concepts"], row["n_pairs"], row["seed"]) == (6, 15, 3)
    assert row["accuracy"] == pytest.approx(want.accuracy) and row["p"] == pytest.approx(want.p)
    with actstore.open(image_store) as store, pytest.raises(SchemaError, match="share 0"):
        two_vs_two_sites(store, "cnn/block", "glove/vectors", by_a="label", by_b="upper(word)")


def test_the_rsa_verb_runs_the_tests(image_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from actstore.cli import main

    with actstore.open(image_store) as store:
        want = two_vs_two_sites(
            store, "cnn/block", "glove/vectors", by_a="label", by_b="lower(word)",
            permutations=19, seed=3,
        )  # fmt: skip
    args = ["rsa", str(image_store), "--sites", "cnn/block", "--by", "label", "--min-count", "1"]
    test = ["--test", "2v2", "--against-by", "lower(word)", "--permutations", "19", "--seed", "3"]
    assert main([*args, *test, "--against", "glove/vectors", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "site_a,site_b,accuracy,n_pairs,n_concepts,p,permutations,seed"
    assert float(lines[1].split(",")[2]) == pytest.approx(want["accuracy"].iloc[0])
    assert main([*args, *test]) == 2
    assert "--against is needed with --test 2v2" in capsys.readouterr().err
