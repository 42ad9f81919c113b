"""Word similarity: cosines of word vectors against human ratings (SimLex-999, MEN, ...).

A word site (a site over the ``words`` table: ``glove/vectors`` from ``actstore ingest
STORE vectors``, type means such as ``minilm-types/layer.3`` from ``actstore types``)
gives each word a vector. For every pair of a benchmark whose two words the site covers,
the cosine of their vectors is compared with the human score by Spearman's rho; coverage
says how many pairs that was, and a bootstrap over the covered pairs (seeded,
vectorised) gives a 95% percentile interval.

The benchmark files are those of ``../shared/data/wordsim`` (:data:`SETS`; its
README.md gives sources and licences), read in their own formats by :func:`read_set`.

Examples
--------
>>> sorted(SETS)[:3], len(ALL_SETS)
(['mc30', 'men', 'men_dev'], 13)
>>> pairs = read_set("simlex999")
>>> pairs.word1[0], pairs.word2[0], float(pairs.score[0])
('old', 'new', 1.58)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

import actstore
from actstore import coverage
from actstore.data import data_dir
from actstore.errors import CorpusError, DataNotFoundError, ParameterError, SchemaError
from actstore.words import WORDS, lookup, normalise, vocabulary
from queries.results import Column, TableSchema, TidyResult, provenance
from queries.select import resolve_sites

Form = Literal["pairs", "simlex", "men", "men_lemma"]
DEFAULT_SETS = ("simlex999", "men")
CONFIDENCE = 0.95
BOOTSTRAP_BLOCK = 256  # resamples ranked at once: bounds memory at 256 x pairs floats


@dataclass(frozen=True)
class WordSet:
    """A benchmark's file under ``wordsim``, its ``form`` and what it is. Forms: ``pairs``
    (``word1<TAB>word2<TAB>score``, no header), ``simlex`` (the official file: a header,
    ten tab-separated columns), ``men`` (``word1 word2 score`` after a header),
    ``men_lemma`` (the same, with POS suffixes ``-n``/``-v``/``-j`` removed)."""

    path: str
    form: Form
    what: str


_F, _M = "faruqui/EN-", "men_original/"
SETS: dict[str, WordSet] = {
    "simlex999": WordSet(f"{_F}SIMLEX-999.txt", "pairs", "SimLex-999, similarity"),
    "men": WordSet(f"{_F}MEN-TR-3k.txt", "pairs", "MEN 3k, relatedness"),
    "simverb3500": WordSet(f"{_F}SimVerb-3500.txt", "pairs", "SimVerb-3500, verbs"),
    "ws353": WordSet(f"{_F}WS-353-ALL.txt", "pairs", "WordSim-353"),
    "ws353_sim": WordSet(f"{_F}WS-353-SIM.txt", "pairs", "WordSim-353 similarity"),
    "ws353_rel": WordSet(f"{_F}WS-353-REL.txt", "pairs", "WordSim-353 relatedness"),
    "rw": WordSet(f"{_F}RW-STANFORD.txt", "pairs", "Stanford Rare Words"),
    "mturk771": WordSet(f"{_F}MTurk-771.txt", "pairs", "MTurk-771"),
    "mturk287": WordSet(f"{_F}MTurk-287.txt", "pairs", "MTurk-287"),
    "rg65": WordSet(f"{_F}RG-65.txt", "pairs", "Rubenstein-Goodenough"),
    "mc30": WordSet(f"{_F}MC-30.txt", "pairs", "Miller-Charles"),
    "yp130": WordSet(f"{_F}YP-130.txt", "pairs", "YP-130 verbs"),
    "verb143": WordSet(f"{_F}VERB-143.txt", "pairs", "VERB-143"),
    "simlex999_original": WordSet("simlex999_original/SimLex-999.txt", "simlex", "SimLex-999"),
    "men_natural": WordSet(f"{_M}MEN_dataset_natural_form_full", "men", "MEN, surface forms"),
    "men_lemma": WordSet(f"{_M}MEN_dataset_lemma_form_full", "men_lemma", "MEN, lemmas"),
    "men_dev": WordSet(f"{_M}MEN_dataset_lemma_form.dev", "men_lemma", "MEN dev 2k"),
    "men_test": WordSet(f"{_M}MEN_dataset_lemma_form.test", "men_lemma", "MEN test 1k"),
    "men_elias": WordSet(f"{_M}agreement/elias-men-ratings.txt", "men", "MEN re-rated, 1-7"),
    "men_marcos": WordSet(f"{_M}agreement/marcos-men-ratings.txt", "men", "MEN re-rated, 1-7"),
}
# "all": each benchmark once (the faruqui/ collection; the originals repeat two of them)
ALL_SETS = tuple(name for name, s in SETS.items() if s.path.startswith("faruqui/"))

WORDSIM = TableSchema(
    "wordsim",
    (
        Column("site", "string"),
        Column("set", "string"),
        Column("rho", "float64"),
        Column("n_pairs", "int64"),
        Column("n_covered", "int64"),
        Column("coverage", "float64"),
        Column("ci_low", "float64"),
        Column("ci_high", "float64"),
        Column("n_bootstrap", "int64"),
        Column("seed", "int64"),
    ),
)


def wordsim_dir() -> Path:
    """The folder of the benchmarks: ``wordsim`` in the shared data (``ACTSTORE_DATA``)."""
    folder = data_dir() / "wordsim"
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder} not found: the shared data has no wordsim folder")
    return folder


def resolve_sets(sets: str | Sequence[str]) -> list[str]:
    """Set names from ``"all"``, ``"simlex999,men"`` or a sequence, without repeats.

    Examples
    --------
    >>> resolve_sets("men, simlex999,men")
    ['men', 'simlex999']
    >>> resolve_sets("simlex")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: sets 'simlex' is not a word-similarity set; sets: all, ...
    """
    names = [s.strip() for s in sets.split(",")] if isinstance(sets, str) else list(sets)
    names = [s for s in names if s]
    if names == ["all"]:
        return list(ALL_SETS)
    for name in names:
        if name not in SETS:
            raise ParameterError(
                "sets", f"{name!r} is not a word-similarity set; sets: all, {', '.join(SETS)}"
            )
    if not names:
        raise ParameterError("sets", "names no set")
    return list(dict.fromkeys(names))


def read_set(name: str) -> pd.DataFrame:
    """The pairs of set ``name``: columns ``word1``, ``word2`` (as in the file) and
    ``score`` (float64), in file order.

    Examples
    --------
    >>> pairs = read_set("men_lemma")
    >>> len(pairs), pairs.word1[0], pairs.word2[0], float(pairs.score[0])
    (3000, 'sun', 'sunlight', 50.0)
    """
    spec = SETS[resolve_sets([name])[0]]
    return read_pairs(wordsim_dir() / spec.path, spec.form)


def read_pairs(path: Path, form: Form) -> pd.DataFrame:
    """Read one benchmark file of format ``form`` (see :class:`WordSet`); a malformed
    line raises :class:`~actstore.errors.CorpusError` naming the file and line.

    Examples
    --------
    >>> bad = tmp / "bad.txt"
    >>> _ = bad.write_text("cat\\tdog\\t7.5\\ncat\\tdog\\n")
    >>> read_pairs(bad, "pairs")
    Traceback (most recent call last):
    ...
    actstore.errors.CorpusError: .../bad.txt:2: expected 3 fields (word1, word2, score), got 2
    """
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found")
    n_fields, score_at = (10, 3) if form == "simlex" else (3, 2)
    names = "word1, word2, POS, SimLex999, ..." if form == "simlex" else "word1, word2, score"
    rows: list[tuple[str, str, float]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        # tab-separated files keep empty fields (a missing score is an error), MEN's
        # space-separated ones may end in stray whitespace
        fields = line.strip("\r\n").split("\t") if form in ("pairs", "simlex") else line.split()
        if not line.strip() or (lineno == 1 and form != "pairs" and fields[0] == "word1"):
            continue  # blank, or the header
        if len(fields) != n_fields:
            raise CorpusError(
                str(path), lineno, f"expected {n_fields} fields ({names}), got {len(fields)}"
            )
        word1, word2 = fields[0].strip(), fields[1].strip()
        if form == "men_lemma":
            word1, word2 = _strip_pos(word1, path, lineno), _strip_pos(word2, path, lineno)
        try:
            score = float(fields[score_at])
        except ValueError:
            score = float("nan")
        if not (word1 and word2) or not np.isfinite(score):
            raise CorpusError(str(path), lineno, f"expected two words and a number: {line!r}")
        rows.append((word1, word2, score))
    if not rows:
        raise CorpusError(str(path), None, "holds no pairs")
    return pd.DataFrame(rows, columns=["word1", "word2", "score"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strip_pos(word: str, path: Path, lineno: int) -> str:
    stem, dash, pos = word.rpartition("-")
    if not dash or pos not in ("n", "v", "j"):
        raise CorpusError(str(path), lineno, f"expected a lemma with -n, -v or -j, got {word!r}")
    return stem


def word_similarity(
    store: actstore.Store,
    site: str = "glove/vectors",
    sets: str | Sequence[str] = DEFAULT_SETS,
    *,
    lowercase: bool = True,
    bootstrap: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman rho between cosines of a word site and human scores, per site and set.

    ``site`` is a site name or glob(s) over sites of the ``words`` table. A pair
    counts when both words (lower-cased first unless ``lowercase=False``) are rows of
    ``words`` that the site covers, with a non-zero vector. ``bootstrap`` resamples of
    the covered pairs (drawn from ``numpy.random.default_rng(seed)``, the same for
    every site and set) give the 95% percentile interval ``ci_low``..``ci_high``
    (NaN when ``bootstrap=0``).

    Examples
    --------
    >>> import pyarrow as pa
    >>> with store.transaction():  # four words of MC-30: two pairs, "gem" and "car" apart
    ...     words = pa.table({"row": [0, 1, 2, 3], "word": ["car", "automobile", "gem", "jewel"]})
    ...     store.append_table("words", words)
    >>> writer = store.create_site("vec/vectors", table="words", n_units=2, dtype="float32")
    >>> writer.write(0, np.array([[1, 0], [1, 0.1], [0, 1], [0.5, 1]], np.float32))
    >>> writer.commit()
    >>> table = word_similarity(store, "vec/vectors", "mc30", bootstrap=0)
    >>> table[["set", "rho", "n_pairs", "n_covered"]].values.tolist()
    [['mc30', 1.0, 30, 2]]
    """
    options: dict[str, Any] = {"lowercase": lowercase, "bootstrap": bootstrap, "seed": seed}
    return similarity_result(store, site, sets, **options).frame


def similarity_result(
    store: actstore.Store,
    site: str,
    sets: str | Sequence[str] = DEFAULT_SETS,
    *,
    lowercase: bool = True,
    bootstrap: int = 1000,
    seed: int = 0,
) -> TidyResult:
    """:func:`word_similarity` as a typed result with its provenance (the sets' files
    and their SHA-256 among the parameters)."""
    if bootstrap < 0:
        raise ParameterError("bootstrap", f"must be 0 or more resamples, got {bootstrap}")
    names = resolve_sites(store, site) if site not in store.sites else [site]
    for name in names:
        table = store.site(name).table
        if table != WORDS:
            raise SchemaError(
                f"site {name} is over table {table}: word similarity reads sites over words "
                "(`actstore ingest STORE vectors`, `actstore types`)"
            )
    chosen = resolve_sets(sets)
    base = wordsim_dir()
    pairs = {s: read_pairs(base / SETS[s].path, SETS[s].form) for s in chosen}
    words = vocabulary(store)
    records = []
    for name in names:
        for set_name, frame in pairs.items():
            scored = score_pairs(store, name, frame, words, lowercase, bootstrap, seed)
            records.append({"site": name, "set": set_name, **scored})
    files = {s: {"path": str(base / SETS[s].path), "sha256": _sha256(base / SETS[s].path)}
             for s in chosen}  # fmt: skip
    parameters = {"sets": chosen, "lowercase": lowercase, "bootstrap": bootstrap,
                  "seed": seed, "confidence": CONFIDENCE, "files": files}  # fmt: skip
    made = provenance(store, "wordsim", names, parameters)
    return TidyResult(WORDSIM, WORDSIM.frame(records), made)


def score_pairs(
    store: actstore.Store, site: str, pairs: pd.DataFrame, words: pa.Array, *options: Any
) -> dict[str, float | int]:
    """Rho, coverage and interval of one site on one set's ``pairs``; ``options``:
    lowercase, bootstrap, seed."""
    lowercase, bootstrap, seed = options
    first, second = (pair_rows(store, site, pairs[c], words, lowercase) for c in ("word1", "word2"))
    both = (first >= 0) & (second >= 0)
    unique, inverse = np.unique(np.concatenate([first[both], second[both]]), return_inverse=True)
    vectors = store.site_reader(site, dtype="float64").take(unique)
    norms = np.linalg.norm(vectors, axis=1)
    unit = np.divide(vectors, norms[:, None], out=np.zeros_like(vectors), where=norms[:, None] > 0)
    a, b = np.split(inverse, 2)
    nonzero = (norms[a] > 0) & (norms[b] > 0)  # a zero vector has no direction
    cosines = np.einsum("ij,ij->i", unit[a], unit[b])[nonzero]
    humans = pairs["score"].to_numpy(np.float64)[both][nonzero]
    low, high = bootstrap_interval(cosines, humans, bootstrap, seed)
    n = len(cosines)
    return {"rho": spearman(cosines, humans), "n_pairs": len(pairs), "n_covered": n,
            "coverage": n / len(pairs), "ci_low": low, "ci_high": high,
            "n_bootstrap": bootstrap, "seed": seed}  # fmt: skip


def pair_rows(
    store: actstore.Store, site: str, column: pd.Series, words: pa.Array, lowercase: bool
) -> np.ndarray:
    """The ``words`` row of each word of ``column`` (-1: absent, or not covered by ``site``)."""
    rows = lookup(normalise(pa.array(column.tolist(), pa.string()), lowercase), words)
    rows[coverage.outside(rows, list(store.site(site).covers))] = -1
    return rows


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (ties take their average rank); NaN for fewer than 2 pairs.

    Examples
    --------
    >>> spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 30, 20, 40]))
    0.8
    """
    from scipy.stats import rankdata

    if len(x) < 2:
        return float("nan")
    ones = np.ones((1, len(x)))
    return float(_weighted_correlation(rankdata(x)[None], rankdata(y)[None], ones)[0])


def bootstrap_interval(
    x: np.ndarray, y: np.ndarray, n_resamples: int, seed: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile interval of Spearman's rho over ``n_resamples`` resamples of the pairs
    (:func:`resamples`), NaN for resamples whose scores are all tied.

    Ranks come from counts, not sorting: in a resample, an item's average rank is the
    number of drawn items below its tie group plus (the group's draws + 1) / 2, and rho
    is the Pearson correlation of ranks weighted by how often each item was drawn. So
    a block of resamples costs O(resamples x pairs), and equals ranking each resample.

    Examples
    --------
    >>> x = np.arange(50.0); y = x + np.random.default_rng(1).normal(0, 10, 50)
    >>> bootstrap_interval(x, y, 200, 0) == bootstrap_interval(x, y, 200, 0)
    True
    """
    if n_resamples == 0 or len(x) < 2:
        return float("nan"), float("nan")
    x_groups, y_groups = _tie_groups(x), _tie_groups(y)
    rhos = []
    for take in resamples(len(x), n_resamples, seed):
        # how often each pair is drawn in each resample
        offsets = take + len(x) * np.arange(len(take))[:, None]
        counts = np.bincount(offsets.ravel(), minlength=take.size).reshape(take.shape)
        rx, ry = _resample_ranks(counts, x_groups), _resample_ranks(counts, y_groups)
        rhos.append(_weighted_correlation(rx, ry, counts))
    values = np.concatenate(rhos)
    tail = (1 - confidence) / 2 * 100
    if np.isnan(values).all():
        return float("nan"), float("nan")
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def resamples(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap draws: blocks of at most :data:`BOOTSTRAP_BLOCK` rows of ``n``
    indices each, from ``numpy.random.default_rng(seed)``.

    Examples
    --------
    >>> [b.shape for b in resamples(5, 300, 0)]
    [(256, 5), (44, 5)]
    """
    rng = np.random.default_rng(seed)
    for lo in range(0, n_resamples, BOOTSTRAP_BLOCK):
        yield rng.integers(0, n, size=(min(BOOTSTRAP_BLOCK, n_resamples - lo), n))


def _tie_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items in increasing order of value, where each group of equal values ends in that
    order, and each item's group (groups numbered in increasing order)."""
    order = np.argsort(values, kind="stable")
    distinct, group = np.unique(values, return_inverse=True)
    ends = np.searchsorted(values[order], distinct, side="right") - 1
    return order, ends, group


def _resample_ranks(counts: np.ndarray, groups: tuple[np.ndarray, ...]) -> np.ndarray:
    """Per resample and item, the item's average rank among the drawn items."""
    order, ends, group = groups
    through = np.cumsum(counts[:, order], axis=1)[:, ends]  # drawn up to each group's end
    per_group = np.diff(through, axis=1, prepend=0)
    return np.asarray((through - per_group + (per_group + 1) / 2)[:, group])


def _weighted_correlation(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of ``x`` and ``y`` with item ``weights``."""
    total = weights.sum(axis=1, keepdims=True)
    dx = x - (weights * x).sum(axis=1, keepdims=True) / total
    dy = y - (weights * y).sum(axis=1, keepdims=True) / total
    covariance = (weights * dx * dy).sum(axis=1)
    scale = np.sqrt((weights * dx * dx).sum(axis=1) * (weights * dy * dy).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(covariance / scale)
