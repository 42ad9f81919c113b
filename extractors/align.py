"""Aligning model pieces (subword tokens) to UD words.

The model sees each sentence's surface text, rebuilt from the words: multiword
tokens appear once in their surface form ("don't" covers the words "do" and "n't")
and ``SpaceAfter=No`` is respected. Each word maps to the pieces whose character
span (whitespace trimmed) overlaps its characters: its surface token, or, inside a
multiword token whose words spell it, its own characters ("do" gets the piece
"don", "n't" the pieces "don", "'", "t"; the piece "don" is flagged shared). Words
of a multiword token they do not spell (Portuguese "do" = "de" + "o") share its
pieces. A word's pieces are contiguous, so it is the range ``[piece_first,
piece_last]``.

A sentence longer than the model accepts is cut into overlapping windows (half a
window apart); each word takes its vector from the window where it has the most
context on both sides. Nothing is truncated. See ``docs/EXTRACTION.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Which rule aligned pieces to words, recorded in site provenance so vectors made by
# another rule are never mixed with these. 2: words of a multiword token they spell get
# the pieces over their own characters (1: every word of a multiword token shared its
# pieces).
ALIGNMENT_RULE = 2

# flag bits stored per word
IN_MWT = 1  # the word shares its multiword token's pieces (their forms do not spell it)
SHARED_PIECE = 2  # a piece of this word also covers another surface token
BORROWED = 4  # the tokenizer gave this word's token no piece; the nearest one is used
WINDOWED = 8  # the sentence was processed in overlapping windows
CLIPPED = 16  # no window holds all the word's pieces; it pools those of the one holding most
UNKNOWN = 32  # a piece of the word is the tokenizer's unknown token ([UNK])
NO_PIECES = 64  # the tokenizer gave the whole sentence no piece; the model saw [UNK] instead
FLAGS = {
    "in_mwt": IN_MWT,
    "shared_piece": SHARED_PIECE,
    "borrowed": BORROWED,
    "windowed": WINDOWED,
    "clipped": CLIPPED,
    "unknown": UNKNOWN,
    "no_pieces": NO_PIECES,
}
QUALITY_FLAGS = ("borrowed", "clipped", "unknown", "no_pieces")


@dataclass
class Words:
    """The columns of the tokens table that alignment needs, as arrays in row order.

    Examples
    --------
    >>> words = Words.from_arrow(store.columns(["row", "sentence_id", "position", "form",
    ...     "mwt_start", "mwt_form", "space_after"]))
    >>> words.form[:4]
    ['From', 'the', 'AP', 'comes']
    """

    row: np.ndarray
    sentence_id: np.ndarray
    position: np.ndarray
    form: list[str]
    mwt_start: list[int | None]
    mwt_form: list[str | None]
    space_after: list[bool]

    @classmethod
    def from_arrow(cls, table: Any) -> Words:
        """From an Arrow table (or ``store.columns``) holding those columns."""
        return cls(
            row=table.column("row").to_numpy(),
            sentence_id=table.column("sentence_id").to_numpy(),
            position=table.column("position").to_numpy(),
            form=table.column("form").to_pylist(),
            mwt_start=table.column("mwt_start").to_pylist(),
            mwt_form=table.column("mwt_form").to_pylist(),
            space_after=table.column("space_after").to_pylist(),
        )


def surface_text(words: Words, lo: int, hi: int) -> tuple[str, np.ndarray, np.ndarray]:
    """Text of the sentence in word rows ``lo:hi``, the character span of each unit the
    words are aligned to, and each word's unit.

    A unit is a surface token, or, inside a multiword token whose words spell it
    (``can't`` = ``ca`` + ``n't``, ``Allawi's`` = ``Allawi`` + ``'s``, ignoring case),
    the characters of one word. A multiword token whose words do not spell it
    (Portuguese ``do`` = ``de`` + ``o``) is one unit its words share. The text is the
    surface text either way.

    Examples
    --------
    >>> words = Words(np.arange(4), np.zeros(4), np.array([1, 2, 1, 2]),
    ...               ["do", "n't", "de", "o"], [1, 1, 1, 1], ["don't", "don't", "do", "do"],
    ...               [False, False, True, False])
    >>> text, spans, unit_of = surface_text(words, 0, 2)
    >>> text, spans.tolist(), unit_of.tolist()
    ("don't", [[0, 2], [2, 5]], [0, 1])
    >>> text, spans, unit_of = surface_text(words, 2, 4)
    >>> text, spans.tolist(), unit_of.tolist()
    ('do', [[0, 2]], [0, 0])
    """
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    unit_of = np.empty(hi - lo, np.int64)
    pos = 0
    spaces_pending = False
    i = lo
    while i < hi:
        mwt = words.mwt_start[i]
        end = i + 1
        while mwt is not None and end < hi and words.mwt_start[end] == mwt:
            end += 1  # the words of one multiword token
        piece = words.form[i] if mwt is None else str(words.mwt_form[i])
        if spaces_pending:
            parts.append(" ")
            pos += 1
        forms = words.form[i:end]
        if mwt is not None and _spells(forms, piece):
            for k, form in enumerate(forms):
                spans.append((pos, pos + len(form)))
                unit_of[i - lo + k] = len(spans) - 1
                pos += len(form)
        else:
            spans.append((pos, pos + len(piece)))
            unit_of[i - lo : end - lo] = len(spans) - 1
            pos += len(piece)
        parts.append(piece)
        spaces_pending = words.space_after[end - 1]
        i = end
    return "".join(parts), np.asarray(spans, np.int64).reshape(-1, 2), unit_of


def _spells(forms: list[str], token: str) -> bool:
    """Whether the words' forms, joined, are the token's surface form (ignoring case)."""
    joined = "".join(forms)
    return len(joined) == len(token) and joined.lower() == token.lower()


@dataclass
class Alignment:
    """Per word: its segment (model input) and piece range; per segment: input ids.

    Built by :func:`align`; :meth:`table` is what the store keeps as ``align_<model>``.
    """

    segment: np.ndarray  # per word, global segment index
    first: np.ndarray  # per word, first input position in its segment (specials counted)
    last: np.ndarray  # per word, last input position in its segment
    piece_first: np.ndarray  # per word, first piece of the sentence (no specials)
    piece_last: np.ndarray
    flags: np.ndarray
    segment_ids: list[list[int]]  # input ids per segment, specials included
    n_windowed: int
    n_pieces: int
    # per sentence, its first segment (its windows are consecutive); then the total
    sentence_segment: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))

    def table(self, words: Words) -> Any:
        """The alignment as an Arrow table, one row per word."""
        import pyarrow as pa

        return pa.table(
            {
                "row": words.row,
                "sentence_id": words.sentence_id,
                "piece_first": self.piece_first.astype(np.int32),
                "piece_last": self.piece_last.astype(np.int32),
                "n_pieces": (self.piece_last - self.piece_first + 1).astype(np.int32),
                **{name: (self.flags & bit) > 0 for name, bit in FLAGS.items()},
            }
        )

    def counts(self) -> dict[str, int]:
        """Words carrying each flag that marks a vector of lower quality."""
        return {name: int(((self.flags & FLAGS[name]) > 0).sum()) for name in QUALITY_FLAGS}


def _token_pieces(
    text: str, offsets: list[tuple[int, int]], spans: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First and last piece of each surface token, and whether a piece is shared."""
    n_tok = len(spans)
    first = np.full(n_tok, -1, np.int64)
    last = np.full(n_tok, -1, np.int64)
    shared = np.zeros(n_tok, bool)
    for p, (a, b) in enumerate(offsets):
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a >= b:
            continue
        t0 = int(np.searchsorted(spans[:, 1], a, side="right"))
        t1 = int(np.searchsorted(spans[:, 0], b, side="left")) - 1
        for t in range(t0, t1 + 1):
            if first[t] < 0:
                first[t] = p
            last[t] = p
        if t1 > t0:
            shared[t0 : t1 + 1] = True
    return first, last, shared


def align(
    words: Words,
    sentence_bounds: np.ndarray,
    tokenizer: Any,
    max_length: int,
    prefix: list[int],
    suffix: list[int],
    unknown_id: int | None = None,
    substitute_id: int = 0,
) -> Alignment:
    """Align every word of the store to model pieces, cutting long sentences into windows.

    ``sentence_bounds`` holds each sentence's first word row and one past its last;
    ``prefix`` and ``suffix`` are the special ids around every model input. Words with
    a piece ``unknown_id`` are flagged; a sentence the tokenizer gives no piece at all
    is fed as the one piece ``substitute_id`` (its words flagged, never an error).

    Examples
    --------
    >>> from transformers import AutoTokenizer  # doctest: +SKIP
    >>> from extractors import models, transformer  # doctest: +SKIP
    >>> tokenizer = AutoTokenizer.from_pretrained(models.resolve_model("minilm").folder)
    ... # doctest: +SKIP
    >>> words, bounds = transformer.load_words(store)  # doctest: +SKIP
    >>> align(words, bounds, tokenizer, 512, [101], [102]).n_pieces  # doctest: +SKIP
    775
    """
    n = len(words.row)
    texts, layouts = [], []
    for lo, hi in sentence_bounds:
        text, spans, token_of = surface_text(words, int(lo), int(hi))
        texts.append(text)
        layouts.append((spans, token_of))
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    capacity = max_length - len(prefix) - len(suffix)
    stride = max(1, capacity // 2)
    out = Alignment(
        segment=np.empty(n, np.int64),
        first=np.empty(n, np.int64),
        last=np.empty(n, np.int64),
        piece_first=np.empty(n, np.int64),
        piece_last=np.empty(n, np.int64),
        flags=np.zeros(n, np.int64),
        segment_ids=[],
        n_windowed=0,
        n_pieces=0,
        sentence_segment=np.zeros(len(sentence_bounds) + 1, np.int64),
    )
    for s, (lo, hi) in enumerate(sentence_bounds.tolist()):
        ids = encoded["input_ids"][s]
        out.n_pieces += len(ids)
        spans, token_of = layouts[s]
        t_first, t_last, t_shared = _token_pieces(texts[s], encoded["offset_mapping"][s], spans)
        missing = t_first < 0
        in_mwt = np.bincount(token_of, minlength=len(spans))[token_of] > 1  # a shared unit
        flags = np.zeros(hi - lo, np.int64)
        flags |= np.where(t_shared[token_of], SHARED_PIECE, 0) | np.where(in_mwt, IN_MWT, 0)
        substituted = not ids
        if substituted:  # nothing the model could read: it sees one substitute piece instead
            ids = [substitute_id]
            t_first[:] = t_last[:] = 0
            flags |= NO_PIECES
        else:
            _fill_borrowed(t_first, t_last)
            flags |= np.where(missing[token_of], BORROWED, 0)
        p_first, p_last = t_first[token_of], t_last[token_of]
        if unknown_id is not None and not substituted:
            unknown = np.concatenate([[0], np.cumsum(np.asarray(ids) == unknown_id)])
            flags |= np.where(unknown[p_last + 1] > unknown[p_first], UNKNOWN, 0)
        out.piece_first[lo:hi], out.piece_last[lo:hi] = p_first, p_last
        starts = _window_starts(len(ids), capacity, stride)
        if len(starts) > 1:
            out.n_windowed += 1
            flags |= WINDOWED
        best, first, last = _best_window(starts, p_first, p_last, capacity)
        flags |= np.where((first != p_first) | (last != p_last), CLIPPED, 0)
        base = len(out.segment_ids)
        for w_start in starts:
            out.segment_ids.append(prefix + ids[w_start : w_start + capacity] + suffix)
        out.sentence_segment[s + 1] = len(out.segment_ids)
        out.segment[lo:hi] = base + best
        offset = np.asarray(starts)[best]
        out.first[lo:hi] = first - offset + len(prefix)
        out.last[lo:hi] = last - offset + len(prefix)
        out.flags[lo:hi] = flags
    return out


def _fill_borrowed(first: np.ndarray, last: np.ndarray) -> None:
    """Tokens the tokenizer dropped (control characters, say) take the nearest piece."""
    missing = np.flatnonzero(first < 0)
    for t in missing.tolist():
        before = last[:t][last[:t] >= 0]
        after = first[t + 1 :][first[t + 1 :] >= 0]
        piece = int(before[-1]) if before.size else int(after[0])
        first[t] = last[t] = piece


def _window_starts(n_pieces: int, capacity: int, stride: int) -> list[int]:
    if n_pieces <= capacity:
        return [0]
    starts = list(range(0, n_pieces - capacity, stride))
    return [*starts, n_pieces - capacity]


def _best_window(
    starts: list[int], first: np.ndarray, last: np.ndarray, capacity: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each word, the window in which it has the most context on its poorer side,
    and the pieces it pools there: all of its own, or, where no window holds them all,
    those of the window holding most of them (the first such).

    Examples
    --------
    >>> best, a, b = _best_window([0, 3], np.array([0, 2, 4]), np.array([0, 5, 4]), 4)
    >>> best.tolist(), a.tolist(), b.tolist()
    ([0, 1, 1], [0, 3, 4], [0, 5, 4])
    """
    s = np.asarray(starts)[:, None]
    lo, hi = np.maximum(first[None, :], s), np.minimum(last[None, :], s + capacity - 1)
    held = hi - lo + 1
    fits = held == (last - first + 1)[None, :]
    context = np.minimum(first[None, :] - s, s + capacity - 1 - last[None, :])
    best = np.where(fits.any(axis=0), np.where(fits, context, -1).argmax(axis=0),
                    held.argmax(axis=0))  # fmt: skip
    words = np.arange(first.size)
    return best, lo[best, words], hi[best, words]
