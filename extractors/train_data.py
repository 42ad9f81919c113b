"""What training reads from a store: the chosen sentences, their words, image vectors,
and batches of padded ids.

Sentences are chosen by split and by an SQL condition over the ``tokens`` table (with
the sentences' ``sent_id``, ``text``, ``n_words`` and ``n_tokens`` beside each word): a
sentence is chosen when one of its words matches. Image vectors come from a Parquet
file (``sentence_id`` or ``sent_id``, and ``vector``) or a ``.npy`` matrix with a text
file of ids; see ``docs/RECURRENT.md``.

Examples
--------
>>> ids = select_sentences(store, "dev", "upos = 'PROPN'")
>>> ids[:4], len(sentence_words(store, ids[:2])[0])
(array([0, 1, 2, 4]), 7)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from actstore.errors import ParameterError
from actstore.sql import condition
from actstore.store import Store
from extractors.train_verbs import ALL_SPLITS

IGNORE = -100  # the target of padding, which the losses leave out
_WORDS = (
    "tokens JOIN (SELECT sentence_id, sent_id, text, n_words, n_tokens FROM sentences) "
    "USING (sentence_id)"
)
POOL = 50  # batches whose sentences are sorted by length together (less padding)


def splits_of(store: Store) -> list[str | None]:
    """The splits of the store's sentences.

    Examples
    --------
    >>> splits_of(store)
    ['dev']
    """
    table = store.sql("SELECT DISTINCT split FROM sentences ORDER BY split", arrow=True)
    return list(table.column("split").to_pylist())


def select_sentences(
    store: Store,
    split: str,
    where: str | None,
    parameters: tuple[str, str] = ("split", "where"),
) -> np.ndarray:
    """Sorted ids of the sentences of ``split`` (``"*"``: any) holding a word that
    matches ``where``; an error names ``parameters`` when none does.

    Examples
    --------
    >>> select_sentences(store, "train", None)
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: split 'train' is not a split of ...; its splits: dev
    """
    split_name, where_name = parameters
    clauses, params = [], []
    if split != ALL_SPLITS:
        splits = splits_of(store)
        if split not in splits:
            shown = ", ".join("(none)" if s is None else s for s in splits)
            raise ParameterError(
                split_name, f"{split!r} is not a split of {store.location}; its splits: {shown}"
            )
        clauses.append("split = ?")
        params.append(split)
    if where is not None and where.strip():
        clauses.append(f"({condition(where, where_name)})")
    query = f"SELECT DISTINCT sentence_id FROM {_WORDS}"
    if clauses:
        query += " WHERE " + " AND ".join(clauses)
    table = store.sql(query + " ORDER BY sentence_id", params, arrow=True)
    ids = np.asarray(table.column("sentence_id").to_numpy(), dtype=np.int64)
    if ids.size == 0:
        asked = " and ".join(
            f"{name} {value!r}"
            for name, value in ((split_name, split), (where_name, where))
            if value not in (None, ALL_SPLITS)
        )
        raise ParameterError(where_name, f"selects no sentence of {store.location} ({asked})")
    return ids


def dev_sentences(
    store: Store, train: np.ndarray, dev_split: str | None, dev_where: str | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(train, dev, how dev was chosen)``: ``--dev-split``/``--dev-where`` if given
    (refused if they share a sentence with ``train``), else the split ``dev`` if it
    shares none, else every tenth training sentence (held out of ``train``).

    Examples
    --------
    >>> train, dev, how = dev_sentences(store, np.arange(30), None, None)
    >>> len(train), dev[:3].tolist(), how
    (27, [9, 19, 29], 'every tenth training sentence')
    """
    if dev_split is not None or dev_where is not None:
        dev = select_sentences(
            store, dev_split or ALL_SPLITS, dev_where, ("dev_split", "dev_where")
        )
        shared = np.intersect1d(train, dev)
        if shared.size:
            name = "dev_split" if dev_split is not None else "dev_where"
            raise ParameterError(
                name,
                f"selects {shared.size} of the {train.size} training sentences (sentence_id "
                f"{', '.join(map(str, shared[:3]))}, ...); train and dev must not share sentences",
            )
        how = " and ".join(
            f"{n} {v!r}" for n, v in (("split", dev_split), ("where", dev_where)) if v is not None
        )
        return train, dev, how
    if "dev" in splits_of(store):
        dev = select_sentences(store, "dev", None)
        if not np.intersect1d(train, dev).size:
            return train, dev, "split 'dev'"
    if train.size < 10:
        raise ParameterError(
            "dev_split",
            f"is needed: {train.size} training sentences are too few to hold out a tenth",
        )
    held = np.zeros(train.size, bool)
    held[9::10] = True
    return train[~held], train[held], "every tenth training sentence"


def sentence_words(store: Store, ids: np.ndarray) -> list[list[str]]:
    """The words (``form``) of each sentence in ``ids``, in order.

    Examples
    --------
    >>> sentence_words(store, np.array([1]))[0][:5]
    ['President', 'Bush', 'on', 'Tuesday', 'nominated']
    """
    table = store.columns(["sentence_id", "form"])
    sentence = np.asarray(table.column("sentence_id").to_numpy(), dtype=np.int64)
    forms = table.column("form").to_pylist()
    order = np.argsort(sentence, kind="stable")  # rows are in sentence order when ingested
    if not np.array_equal(order, np.arange(order.size)):
        sentence, forms = sentence[order], [forms[i] for i in order]
    starts = np.searchsorted(sentence, ids, side="left")
    stops = np.searchsorted(sentence, ids, side="right")
    return [[str(w) for w in forms[a:b]] for a, b in zip(starts, stops, strict=True)]


def plan_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Batches of sentence indexes: shuffled by ``rng``, sorted by length within pools
    of :data:`POOL` batches, the batches in shuffled order; without ``rng`` (evaluation)
    every sentence sorted by length.

    Examples
    --------
    >>> [b.tolist() for b in plan_batches(np.array([3, 1, 2, 5]), 2, None)]
    [[1, 2], [0, 3]]
    >>> batches = plan_batches(np.arange(10), 3, np.random.default_rng(0))
    >>> sorted(np.concatenate(batches).tolist()) == list(range(10))
    True
    """
    n = lengths.size
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    shuffled = rng.permutation(n)
    batches: list[np.ndarray] = []
    for start in range(0, n, batch_size * POOL):
        pool = shuffled[start : start + batch_size * POOL]
        pool = pool[np.argsort(lengths[pool], kind="stable")]
        batches.extend(pool[i : i + batch_size] for i in range(0, pool.size, batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def lm_batch(
    sequences: Sequence[np.ndarray], pad: int, eos: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids ``(batch, time)`` and next-token targets: each step's target is
    the next id, the last step's ``eos``; padding's target is :data:`IGNORE`.

    Examples
    --------
    >>> ids, targets = lm_batch([np.array([5, 6, 7]), np.array([8])], pad=0, eos=2)
    >>> ids.tolist(), targets.tolist()
    ([[5, 6, 7], [8, 0, 0]], [[6, 7, 2], [2, -100, -100]])
    """
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad, dtype=np.int64)
    targets = np.full((len(sequences), width), IGNORE, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        targets[row, : len(sequence) - 1] = sequence[1:]
        targets[row, len(sequence) - 1] = eos
    return torch.from_numpy(ids), torch.from_numpy(targets)


class Images:
    """Image vectors by sentence id, read from ``--images`` (see the module docstring).

    Examples
    --------
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> pq.write_table(pa.table({"sentence_id": [0, 1], "vector": [[1.0, 2.0], [3.0, 4.0]]}),
    ...                tmp / "v.parquet")
    >>> images = Images.read(tmp / "v.parquet", None, store)
    >>> images.dim, images.vectors_for(np.array([1]), "dev").tolist()
    (2, [[3.0, 4.0]])
    >>> images.vectors_for(np.array([0, 5]), "training")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: images ...v.parquet has no vector for 1 of the 2 training ...
    """

    def __init__(self, path: Path, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.path = path
        self.dim = int(vectors.shape[1])
        self._vectors = vectors
        self._row = {int(sentence): row for row, sentence in enumerate(ids)}

    @classmethod
    def read(cls, path: Path, ids_path: Path | None, store: Store) -> Images:
        """Read and check ``path`` (and, for a ``.npy`` matrix, its ids file)."""
        if not path.is_file():
            raise ParameterError("images", f"{path}: no such file")
        if path.suffix == ".npy":
            column, keys, vectors = _read_npy(path, ids_path)
        elif path.suffix in (".parquet", ".pq"):
            column, keys, vectors = _read_parquet(path)
        else:
            raise ParameterError("images", f"{path} must be a .parquet or .npy file")
        if vectors.ndim != 2 or vectors.shape[0] != len(keys) or vectors.shape[1] < 1:
            raise ParameterError(
                "images", f"{path}: expected {len(keys)} vectors of one length, got {vectors.shape}"
            )
        if not np.isfinite(vectors).all():
            raise ParameterError("images", f"{path}: vectors hold NaN or infinite values")
        ids = _sentence_ids(path, column, keys, store)
        if np.unique(ids).size != ids.size:
            raise ParameterError("images", f"{path}: a sentence has two vectors")
        return cls(path, ids, vectors.astype(np.float32))

    def vectors_for(self, ids: np.ndarray, which: str) -> np.ndarray:
        """The vectors of sentences ``ids``, a ``(len(ids), dim)`` matrix; one line
        naming the sentences without one."""
        missing = [int(i) for i in ids if int(i) not in self._row]
        if missing:
            shown = ", ".join(map(str, missing[:3])) + (", ..." if len(missing) > 3 else "")
            raise ParameterError(
                "images",
                f"{self.path} has no vector for {len(missing)} of the {len(ids)} {which} "
                f"sentences (sentence_id {shown}); give each a vector or select only "
                "sentences that have one (--where, --dev-where)",
            )
        return self._vectors[[self._row[int(i)] for i in ids]]


def _read_parquet(path: Path) -> tuple[str, list[object], np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise ParameterError("images", f"{path}: not a Parquet file ({exc})") from None
    column = next((c for c in ("sentence_id", "sent_id") if c in names), None)
    if column is None or "vector" not in names:
        need = "sentence_id (or sent_id) column" if column is None else "vector column"
        raise ParameterError("images", f"{path} has no {need}; columns: {', '.join(names)}")
    table = pq.read_table(path, columns=[column, "vector"])
    vector = table.column("vector").combine_chunks()
    if not pa.types.is_list(vector.type) and not pa.types.is_fixed_size_list(vector.type):
        raise ParameterError(
            "images", f"{path}: vector must be a list of floats, got {vector.type}"
        )
    lengths = np.asarray(vector.value_lengths().fill_null(0).to_numpy(zero_copy_only=False))
    if vector.null_count or (lengths.size and (lengths != lengths[0]).any()):
        raise ParameterError("images", f"{path}: every vector must have the same length")
    flat = np.asarray(vector.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
    width = int(lengths[0]) if lengths.size else 0
    return column, table.column(column).to_pylist(), flat.reshape(len(table), width)


def _read_npy(path: Path, ids_path: Path | None) -> tuple[str, list[object], np.ndarray]:
    ids_path = ids_path or path.with_suffix(".txt")
    try:
        vectors = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ParameterError("images", f"{path}: not a numeric .npy matrix ({exc})") from None
    if not ids_path.is_file():
        raise ParameterError("image_ids", f"{ids_path}: no such file (the .npy matrix's ids)")
    header, *keys = ids_path.read_text(encoding="utf-8").splitlines()
    if header.strip() not in ("sentence_id", "sent_id"):
        raise ParameterError(
            "image_ids",
            f"{ids_path}: the first line must be sentence_id or sent_id, got {header!r}",
        )
    if not np.issubdtype(vectors.dtype, np.number):
        raise ParameterError("images", f"{path}: not a numeric matrix ({vectors.dtype})")
    return header.strip(), [k.strip() for k in keys], np.asarray(vectors, np.float64)


def _sentence_ids(path: Path, column: str, keys: list[object], store: Store) -> np.ndarray:
    """The store's sentence ids for the file's ``sentence_id`` or ``sent_id`` keys."""
    n_sentences = store.n_rows("sentences")
    if column == "sentence_id":
        try:
            ids = np.asarray([int(str(k)) for k in keys], dtype=np.int64)
        except ValueError:
            raise ParameterError("images", f"{path}: sentence_id must hold integers") from None
        bad = ids[(ids < 0) | (ids >= n_sentences)]
        if bad.size:
            raise ParameterError(
                "images",
                f"{path}: sentence_id {bad[0]} is not a sentence of {store.location} "
                f"(ids 0..{n_sentences - 1})",
            )
        return ids
    table = store.sql("SELECT sent_id, sentence_id FROM sentences", arrow=True)
    known: dict[object, int] = {}
    twice: set[object] = set()
    for key, sentence in zip(
        table.column("sent_id").to_pylist(), table.column("sentence_id").to_pylist(), strict=True
    ):
        if key in known:
            twice.add(key)
        known[key] = int(sentence)
    for key in keys:
        if key not in known:
            raise ParameterError("images", f"{path}: sent_id {key!r} is not in {store.location}")
        if key in twice:
            raise ParameterError(
                "images", f"{path}: sent_id {key!r} names several sentences; use sentence_id"
            )
    return np.asarray([known[k] for k in keys], dtype=np.int64)
