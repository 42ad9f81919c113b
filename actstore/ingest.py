"""CoNLL-U files -> the ``tokens`` and ``sentences`` tables of a store.

Each file is read, validated and written one block of whole sentences at a time (one
Parquet part per block), so memory stays bounded whatever the file's size. The
manifest is committed once, after the last file, so a bad file (or a crash) leaves
the store as it was: a failed ingest deletes the parts it wrote. Column definitions
are in ``docs/FORMAT.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from actstore.conllu import ParsedConllu
from actstore.conllu_files import BLOCK_WORDS, ConlluFile, file_sha256
from actstore.errors import CorpusError, ParameterError
from actstore.manifest import SourceInfo, now_utc
from actstore.shuffle import check_seed, shuffle_words
from actstore.store import Store

BASE_COLUMNS = (
    "row", "sentence_id", "position", "form", "lemma", "upos", "xpos", "feats", "head",
    "deprel", "deps", "misc", "deprel_base", "sentence_length", "depth", "n_children",
    "head_distance", "mwt_start", "mwt_end", "mwt_form", "space_after", "lang", "corpus", "split",
)  # fmt: skip
# in every part ingested since they were added (NULL seed, position kept when unshuffled)
SHUFFLE_COLUMNS = ("original_position", "shuffle_seed")
_END = 1 << 62  # the end of a file, in sentences, where a subset has none
_UD_NAME = re.compile(r"^(?P<lang>[a-z]{2,3})_(?P<name>[a-z0-9_]+)-ud-(?P<split>[a-z]+)$")
_FEATURE = re.compile(r"^[A-Z0-9][A-Za-z0-9]*(\[[a-z0-9]+\])?$")
_VALUES = re.compile(r"^[A-Z0-9][A-Za-z0-9]*(,[A-Z0-9][A-Za-z0-9]*)*$")


def describe_source(path: Path) -> dict[str, str | None]:
    """Corpus, language and split guessed from a UD file name like ``en_ewt-ud-dev.conllu``."""
    stem = Path(path.name.removesuffix(".gz")).stem
    match = _UD_NAME.match(stem)
    if match:
        return {
            "corpus": f"{match['lang']}_{match['name']}",
            "lang": match["lang"],
            "split": match["split"],
        }
    return {"corpus": stem, "lang": None, "split": None}


def feature_column(name: str) -> str:
    """Column name of a UD feature: ``Number[psor]`` becomes ``Number_psor``."""
    return name.replace("[", "_").replace("]", "")


def _features(parsed: ParsedConllu) -> dict[str, pa.Array]:
    n = parsed.n_words
    columns: dict[str, list[str | None]] = {}
    for i, feats in enumerate(parsed.feats):
        if feats is None:
            continue
        keys = []
        for item in feats.split("|"):
            key, eq, value = item.partition("=")
            if not eq or not _FEATURE.match(key) or not _VALUES.match(value):
                raise CorpusError(
                    parsed.path,
                    parsed.line[i],
                    f"malformed FEATS item {item!r}: expected Name=Value, the name starting "
                    "with a capital letter or digit, values like Fem or Fem,Masc",
                )
            if key in keys:
                raise CorpusError(parsed.path, parsed.line[i], f"feature {key} appears twice")
            keys.append(key)
            column = columns.get(key)
            if column is None:
                column = columns[key] = [None] * n
            column[i] = value
        if keys != sorted(keys, key=str.lower):
            raise CorpusError(
                parsed.path, parsed.line[i], f"FEATS {feats!r} are not sorted alphabetically"
            )
    out = {}
    reserved = {c.lower() for c in BASE_COLUMNS + SHUFFLE_COLUMNS}
    for key in sorted(columns):
        name = feature_column(key)
        if name.lower() in reserved or name in out:
            raise CorpusError(parsed.path, None, f"feature {key!r} clashes with column {name!r}")
        out[name] = pa.array(columns[key], pa.string())
    return out


def _constant(value: str | None, n: int) -> pa.Array:
    return pa.array([value] * n, pa.string())


def tokens_table(
    parsed: ParsedConllu, first_row: int, first_sentence: int, source: dict[str, str | None]
) -> pa.Table:
    """The ``tokens`` rows of one parsed file, numbered from ``first_row``."""
    n = parsed.n_words
    lengths = np.asarray(parsed.sent_length, np.int64)
    sentence = np.repeat(np.arange(parsed.n_sentences, dtype=np.int64) + first_sentence, lengths)
    first = np.repeat(np.asarray(parsed.sent_first, np.int64), lengths)
    position = np.asarray(parsed.position, np.int32)
    head = np.asarray(parsed.head, np.int32)
    parent = first[head > 0] + head[head > 0] - 1
    n_children = np.bincount(parent, minlength=n).astype(np.int32)
    columns: dict[str, Any] = {
        "row": np.arange(n, dtype=np.int64) + first_row,
        "sentence_id": sentence,
        "position": position,
        "form": pa.array(parsed.form, pa.string()),
        "lemma": pa.array(parsed.lemma, pa.string()),
        "upos": pa.array(parsed.upos, pa.string()),
        "xpos": pa.array(parsed.xpos, pa.string()),
        "feats": pa.array(parsed.feats, pa.string()),
        "head": head,
        "deprel": pa.array(parsed.deprel, pa.string()),
        "deps": pa.array(parsed.deps, pa.string()),
        "misc": pa.array(parsed.misc, pa.string()),
        "deprel_base": pa.array(
            [d.partition(":")[0] if d is not None else None for d in parsed.deprel], pa.string()
        ),
        "sentence_length": np.repeat(lengths.astype(np.int32), lengths),
        "depth": parsed.depth,
        "n_children": n_children,
        "head_distance": pa.array(head - position, pa.int32(), mask=head == 0),
        "mwt_start": pa.array(parsed.mwt_start, pa.int32()),
        "mwt_end": pa.array(parsed.mwt_end, pa.int32()),
        "mwt_form": pa.array(parsed.mwt_form, pa.string()),
        "space_after": pa.array(parsed.space_after, pa.bool_()),
        "lang": _constant(source["lang"], n),
        "corpus": _constant(source["corpus"], n),
        "split": _constant(source["split"], n),
    }
    shuffled = parsed.shuffle_seed is not None
    columns["original_position"] = np.asarray(
        parsed.original_position if shuffled else parsed.position, np.int32
    )
    columns["shuffle_seed"] = pa.array([parsed.shuffle_seed] * n, pa.int64())
    columns.update(_features(parsed))
    return pa.table(columns)


def sentences_table(
    parsed: ParsedConllu, first_row: int, first_sentence: int, source: dict[str, str | None]
) -> pa.Table:
    """The ``sentences`` rows of one parsed file; ``row`` equals ``sentence_id``."""
    m = parsed.n_sentences
    ids = np.arange(m, dtype=np.int64) + first_sentence
    return pa.table(
        {
            "row": ids,
            "sentence_id": ids,
            "sent_id": pa.array(parsed.sent_id, pa.string()),
            "text": pa.array(parsed.sent_text, pa.string()),
            "comments": pa.array(parsed.sent_comments, pa.list_(pa.string())),
            "n_words": np.asarray(parsed.sent_length, np.int32),
            "n_tokens": np.asarray(parsed.sent_tokens, np.int32),
            "n_empty_nodes": np.asarray(parsed.sent_empty, np.int32),
            "first_row": np.asarray(parsed.sent_first, np.int64) + first_row,
            "line": np.asarray(parsed.sent_line, np.int32),
            "source": _constant(source["path"], m),
            "lang": _constant(source["lang"], m),
            "corpus": _constant(source["corpus"], m),
            "split": _constant(source["split"], m),
            "shuffle_seed": pa.array([parsed.shuffle_seed] * m, pa.int64()),
        }
    )


def ingest_conllu(
    store: Store,
    paths: Sequence[str | Path],
    *,
    corpus: str | None = None,
    lang: str | None = None,
    split: str | None = None,
    sentences: tuple[int, int | None] | None = None,
    block_words: int = BLOCK_WORDS,
    shuffle_words: int | None = None,
) -> list[dict[str, Any]]:
    """Append CoNLL-U files to the store's ``tokens`` and ``sentences`` tables.

    Parameters
    ----------
    store
        A store opened for writing.
    paths
        CoNLL-U files, ingested in the order given.
    corpus, lang, split
        Labels for every file; by default read from UD file names
        (``en_ewt-ud-dev.conllu`` -> corpus ``en_ewt``, lang ``en``, split ``dev``).
    sentences
        ``(A, B)``: only sentences ``A..B-1`` of each file (0-based; B None: to the end),
        recorded in the source as ``subset``. The whole file is still validated.
    block_words
        Words read before a block of whole sentences is written as one Parquet part;
        memory is bounded by a block.
    shuffle_words
        A seed: ingest each sentence with its words shuffled
        (:func:`actstore.shuffle.shuffle_words`; sentence ``i`` of a file by
        ``default_rng([seed, i])``), each keeping its annotations and head word. Every
        part has the columns ``original_position`` and ``shuffle_seed`` (the seed, NULL
        when not shuffled; ``original_position`` equals ``position`` then). A file may
        be in the store once per seed, and once unshuffled.

    Returns
    -------
    list of dict
        One manifest source record per file (counts, hash, first row).

    Examples
    --------
    >>> with actstore.create(tmp / "ewt.actstore") as new:
    ...     ingest_conllu(new, [sample_conllu])[0]["n_words"]
    698
    >>> with actstore.create(tmp / "part.actstore") as new:
    ...     ingest_conllu(new, [sample_conllu], sentences=(0, 10))[0]["subset"]
    'sentences 0:10'
    >>> with actstore.open(tmp / "part.actstore", mode="a") as both:
    ...     added = ingest_conllu(both, [sample_conllu], sentences=(0, 10), shuffle_words=7)
    >>> added[0]["shuffle_seed"]
    7
    """
    store.check_writable(exclusive=True)
    seed = None if shuffle_words is None else check_seed(shuffle_words)
    if not paths:
        raise CorpusError("(no files)", None, "give at least one CoNLL-U file to ingest")
    lo, hi = _check_subset(sentences)
    wanted = (lo, _END if hi is None else hi)
    known = [(s.sha256, s.path, _span(s.subset), s.shuffle_seed) for s in store.sources]
    digests = []
    for path in paths:
        digest = file_sha256(path)
        for sha, other, (a, b), other_seed in known:
            if sha == digest and a < wanted[1] and wanted[0] < b and other_seed == seed:
                raise CorpusError(
                    str(path),
                    None,
                    f"already in the store (same content as {other})"
                    + ("" if (a, b) == (0, _END) else f", sentences {a}:{b}")
                    + (", unshuffled" if seed is None else f", words shuffled with seed {seed}")
                    + "; another shuffle seed adds it again",
                )
        known.append((digest, str(path), wanted, seed))
        digests.append(digest)
    with store.transaction():
        return [
            vars(
                _append(
                    store, ConlluFile(p, block_words=block_words, sha256=d), corpus, lang, split,
                    sentences, seed,
                )
            )
            for p, d in zip(paths, digests, strict=True)
        ]  # fmt: skip


def _subset_label(lo: int, hi: int | None, n_sentences: int) -> str:
    return f"sentences {lo}:{min(hi, n_sentences) if hi is not None else n_sentences}"


def _check_subset(sentences: tuple[int, int | None] | None) -> tuple[int, int | None]:
    if sentences is None:
        return 0, None
    lo, hi = sentences
    if lo < 0 or (hi is not None and hi <= lo):
        raise ParameterError("sentences", f"needs 0 <= A < B, got {lo}:{'' if hi is None else hi}")
    return lo, hi


def _span(subset: str | None) -> tuple[int, int]:
    """The sentence range a source's ``subset`` names (the whole file: 0 to 'infinity')."""
    if subset is None:
        return 0, _END
    a, _, b = subset.removeprefix("sentences ").partition(":")
    return int(a), int(b) if b else _END


def _blocks(
    source_file: ConlluFile, sentences: tuple[int, int | None] | None
) -> Iterator[tuple[int, ParsedConllu]]:
    """The file's blocks, cut to sentences ``A..B-1``, each with the index in the file of
    its first sentence; the rest of the file is still read and validated (its hash
    covers the whole file)."""
    lo, hi = (0, None) if sentences is None else sentences
    seen = 0
    for block in source_file:
        start, stop = max(lo - seen, 0), block.n_sentences
        if hi is not None:
            stop = min(stop, hi - seen)
        if (start, stop) == (0, block.n_sentences):
            yield seen, block
        elif start < stop:
            yield seen + start, block.sentences(start, stop)
        seen += block.n_sentences


def _append(
    store: Store,
    source_file: ConlluFile,
    corpus: str | None,
    lang: str | None,
    split: str | None,
    sentences: tuple[int, int | None] | None = None,
    seed: int | None = None,
) -> SourceInfo:
    path = Path(source_file.path).resolve()
    guessed = describe_source(path)
    source = {
        "path": str(path),
        "corpus": corpus or guessed["corpus"],
        "lang": lang or guessed["lang"],
        "split": split or guessed["split"],
    }
    first_row, first_sentence = store.n_rows("tokens"), store.n_rows("sentences")
    counts = np.zeros(4, np.int64)  # sentences, words, multiword tokens, empty nodes
    for index, block in _blocks(source_file, sentences):
        if seed is not None:
            block = shuffle_words(block, seed, index)
        rows, n_sentences = store.n_rows("tokens"), store.n_rows("sentences")
        store.append_table("tokens", tokens_table(block, rows, n_sentences, source))
        store.append_table("sentences", sentences_table(block, rows, n_sentences, source))
        counts += (block.n_sentences, block.n_words, block.n_multiword, block.n_empty_nodes)
    if sentences is None and seed is None:
        counts[:] = (
            source_file.n_sentences, source_file.n_words, source_file.n_multiword,
            source_file.n_empty_nodes,
        )  # fmt: skip
    elif sentences is not None and not counts[0]:
        raise CorpusError(
            str(path), None, f"has {source_file.n_sentences:,} sentences: none in "
            f"{sentences[0]}:{'' if sentences[1] is None else sentences[1]}"
        )  # fmt: skip
    record = SourceInfo(
        path=source["path"] or "",
        corpus=source["corpus"],
        lang=source["lang"],
        split=source["split"],
        sha256=source_file.sha256,
        n_sentences=int(counts[0]),
        n_words=int(counts[1]),
        n_multiword_tokens=int(counts[2]),
        n_empty_nodes=int(counts[3]),
        first_row=first_row,
        first_sentence=first_sentence,
        ingested=now_utc(),
        subset=None if sentences is None else _subset_label(*sentences, source_file.n_sentences),
        shuffle_seed=seed,
    )
    store.add_source(record)
    return record
