"""A strict, fast CoNLL-U reader.

It checks lines against the CoNLL-U format (ten tab-separated columns, word IDs 1..n
in order, multiword-token ranges, HEAD within the sentence, exactly one root, no
cycles) and returns column lists ready for Arrow, one block of whole sentences at a
time; :mod:`actstore.conllu_files` feeds it a file, so memory does not grow with the
file. Any problem raises :class:`~actstore.errors.CorpusError` naming the file and line.

Rows are syntactic words (integer IDs). Multiword-token lines (``4-5``) give the
surface form and ``SpaceAfter`` of the words they span; empty nodes (``8.1``) are
counted but are not rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from actstore.errors import CorpusError

N_COLUMNS = 10
# The UD validator's ID and HEAD syntax: no sign, no leading zero, ASCII digits only.
_WORD_ID = re.compile(r"^[1-9][0-9]*$")
_RANGE_ID = re.compile(r"^([1-9][0-9]*)-([1-9][0-9]*)$")
_EMPTY_ID = re.compile(r"^(0|[1-9][0-9]*)\.([1-9][0-9]*)$")
_HEAD = re.compile(r"^(0|[1-9][0-9]*)$")


@dataclass
class ParsedConllu:
    """Words and whole sentences of a CoNLL-U file (or of one block of it), as parallel
    lists; ``line`` numbers count from the start of the file."""

    path: str
    # one entry per word
    position: list[int] = field(default_factory=list)
    form: list[str] = field(default_factory=list)
    lemma: list[str] = field(default_factory=list)
    upos: list[str | None] = field(default_factory=list)
    xpos: list[str | None] = field(default_factory=list)
    feats: list[str | None] = field(default_factory=list)
    head: list[int] = field(default_factory=list)
    deprel: list[str | None] = field(default_factory=list)
    deps: list[str | None] = field(default_factory=list)
    misc: list[str | None] = field(default_factory=list)
    line: list[int] = field(default_factory=list)
    mwt_start: list[int | None] = field(default_factory=list)
    mwt_end: list[int | None] = field(default_factory=list)
    mwt_form: list[str | None] = field(default_factory=list)
    space_after: list[bool] = field(default_factory=list)
    # one entry per sentence
    sent_first: list[int] = field(default_factory=list)
    sent_length: list[int] = field(default_factory=list)
    sent_line: list[int] = field(default_factory=list)
    sent_text: list[str | None] = field(default_factory=list)
    sent_id: list[str | None] = field(default_factory=list)
    sent_comments: list[list[str]] = field(default_factory=list)
    sent_tokens: list[int] = field(default_factory=list)
    sent_empty: list[int] = field(default_factory=list)
    n_multiword: int = 0
    n_empty_nodes: int = 0
    # set by actstore.shuffle.shuffle_words: each word's ID before the shuffle, the seed
    original_position: list[int] = field(default_factory=list)
    shuffle_seed: int | None = None
    # derived by tree_depths
    depth: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    @property
    def n_words(self) -> int:
        return len(self.form)

    @property
    def n_sentences(self) -> int:
        return len(self.sent_first)

    def sentences(self, lo: int, hi: int) -> ParsedConllu:
        """Sentences ``lo..hi-1`` of this block, as a block of their own.

        Examples
        --------
        >>> from actstore.conllu_files import ConlluFile
        >>> block = next(iter(ConlluFile(sample_conllu)))
        >>> part = block.sentences(1, 3)
        >>> part.n_sentences, part.n_words, part.sent_first, block.sent_length[1:3]
        (2, 48, [0, 19], [19, 29])
        >>> part.form[:2] == block.form[block.sent_first[1] :][:2]
        True
        """
        first, stop = (
            self.sent_first[lo],
            (self.sent_first[hi] if hi < self.n_sentences else self.n_words),
        )
        out = ParsedConllu(path=self.path)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("sent_"):
                setattr(out, f.name, value[lo:hi])
            elif isinstance(value, list | np.ndarray):
                setattr(out, f.name, value[first:stop])
        out.sent_first = [i - first for i in self.sent_first[lo:hi]]
        out.n_empty_nodes = sum(out.sent_empty)
        out.shuffle_seed = self.shuffle_seed
        out.n_multiword = sum(1 for s, p in zip(out.mwt_start, out.position, strict=True) if s == p)
        return out


def _blank(value: str) -> str | None:
    return None if value == "_" else value


def _space_after(misc: str) -> bool:
    return "SpaceAfter=No" not in misc.split("|")


class LineReader:
    """Line-by-line state machine; one instance reads one file."""

    def __init__(self, path: str, block_words: int) -> None:
        self.out = ParsedConllu(path=path)
        self.path = path
        self.block_words = block_words
        self._reset()

    def _reset(self) -> None:
        self.n = 0  # words in the current sentence
        self.start_line = 0
        self.text: str | None = None
        self.sid: str | None = None
        self.comments: list[str] = []
        self.tokens = 0
        self.empty = 0
        self.mwt: tuple[int, int, str, bool, int] | None = None  # start, end, form, space, line

    def error(self, line: int | None, message: str) -> CorpusError:
        return CorpusError(self.path, line, message)

    def comment(self, lineno: int, line: str) -> None:
        if self.n:
            raise self.error(lineno, "comment line inside a sentence (after its word lines)")
        if not self.start_line:
            self.start_line = lineno
        body = line[1:].strip()
        key, sep, value = body.partition("=")
        key = key.strip()
        if sep and key == "text":
            self.text = value.strip()
        elif sep and key == "sent_id":
            self.sid = value.strip()
        else:
            self.comments.append(body)

    def word(self, lineno: int, cols: list[str], wid: int) -> None:
        out = self.out
        expected = self.n + 1
        if wid != expected:
            if 1 <= wid < expected:
                raise self.error(lineno, f"duplicate word ID {wid} in this sentence")
            raise self.error(
                lineno, f"word IDs must run 1, 2, 3, ...: expected {expected}, got {wid}"
            )
        if not _HEAD.match(cols[6]):
            raise self.error(
                lineno, f"HEAD must be 0 or a word ID (ASCII digits, no sign), got {cols[6]!r}"
            )
        head = int(cols[6])
        if not self.n:
            self.start_line = self.start_line or lineno
            out.sent_first.append(len(out.form))
        self.n = wid
        out.position.append(wid)
        out.form.append(cols[1])
        out.lemma.append(cols[2])
        out.upos.append(_blank(cols[3]))
        out.xpos.append(_blank(cols[4]))
        out.feats.append(_blank(cols[5]))
        out.head.append(head)
        out.deprel.append(_blank(cols[7]))
        out.deps.append(_blank(cols[8]))
        misc = cols[9]
        out.misc.append(_blank(misc))
        out.line.append(lineno)
        mwt = self.mwt
        if mwt is not None and mwt[0] <= wid <= mwt[1]:
            out.mwt_start.append(mwt[0])
            out.mwt_end.append(mwt[1])
            out.mwt_form.append(mwt[2])
            out.space_after.append(mwt[3])
        else:
            self.tokens += 1
            out.mwt_start.append(None)
            out.mwt_end.append(None)
            out.mwt_form.append(None)
            out.space_after.append(_space_after(misc))

    def multiword(self, lineno: int, cols: list[str]) -> None:
        match = _RANGE_ID.match(cols[0])
        if match is None:
            raise self.error(lineno, f"malformed multiword-token ID {cols[0]!r}: expected 'a-b'")
        a, b = int(match[1]), int(match[2])
        if self.mwt is not None and self.mwt[1] > self.n:
            raise self.error(
                lineno,
                f"multiword token {cols[0]} overlaps {self.mwt[0]}-{self.mwt[1]} "
                f"(line {self.mwt[4]}), whose words have not all appeared",
            )
        if a != self.n + 1 or b <= a:
            raise self.error(
                lineno,
                f"multiword token {cols[0]} must start at the next word ({self.n + 1}) "
                "and span at least two words",
            )
        if not self.n:
            self.start_line = self.start_line or lineno
        self.mwt = (a, b, cols[1], _space_after(cols[9]), lineno)
        self.tokens += 1
        self.out.n_multiword += 1

    def empty_node(self, lineno: int, cols: list[str]) -> None:
        match = _EMPTY_ID.match(cols[0])
        if match is None:
            raise self.error(
                lineno, f"malformed ID {cols[0]!r}: expected an integer, 'a-b' or 'a.b'"
            )
        major = match[1]
        if self.mwt is not None and self.mwt[1] > self.n:
            raise self.error(lineno, f"empty node {cols[0]} inside multiword token "
                             f"{self.mwt[0]}-{self.mwt[1]}")  # fmt: skip
        if int(major) != self.n:
            raise self.error(lineno, f"empty node {cols[0]} must follow word {major}")
        self.empty += 1
        self.out.n_empty_nodes += 1

    def end_sentence(self, lineno: int) -> None:
        if not self.n:
            if self.start_line:
                raise self.error(self.start_line, "sentence has comments but no word lines")
            return
        if self.mwt is not None and self.mwt[1] > self.n:
            raise self.error(
                self.mwt[4],
                f"multiword token {self.mwt[0]}-{self.mwt[1]} runs past the sentence's "
                f"last word ({self.n})",
            )
        out = self.out
        first = out.sent_first[-1]
        heads = out.head[first:]
        for i, h in enumerate(heads):
            if h < 0 or h > self.n:
                raise self.error(
                    out.line[first + i],
                    f"HEAD {h} is out of range: this sentence has words 1..{self.n} (0 = root)",
                )
        roots = heads.count(0)
        if roots != 1:
            raise self.error(
                self.start_line,
                f"sentence must have exactly one root (HEAD 0), found {roots}",
            )
        out.sent_length.append(self.n)
        out.sent_line.append(self.start_line)
        out.sent_text.append(self.text)
        out.sent_id.append(self.sid)
        out.sent_comments.append(self.comments)
        out.sent_tokens.append(self.tokens)
        out.sent_empty.append(self.empty)
        self._reset()

    def feed(self, lines: list[str], first_lineno: int) -> Iterator[ParsedConllu]:
        """Read ``lines`` (no line ends), the first being line ``first_lineno``; yield each
        block of ``block_words`` words as soon as its last sentence ends."""
        for lineno, line in enumerate(lines, first_lineno):
            if not line:
                self.end_sentence(lineno)
                if len(self.out.form) >= self.block_words:
                    yield self.take()
                continue
            if line[0] == "#":
                self.comment(lineno, line)
                continue
            cols = line.split("\t")
            if len(cols) != N_COLUMNS:
                raise self.error(
                    lineno, f"expected {N_COLUMNS} tab-separated columns, found {len(cols)}"
                )
            ident = cols[0]
            if _WORD_ID.match(ident):
                self.word(lineno, cols, int(ident))
            elif "-" in ident:
                self.multiword(lineno, cols)
            elif "." in ident:
                self.empty_node(lineno, cols)
            else:
                raise self.error(
                    lineno, f"malformed ID {ident!r}: expected an integer, 'a-b' or 'a.b'"
                )

    def take(self) -> ParsedConllu:
        """The sentences read so far, with their tree depths; the next start afresh."""
        out, self.out = self.out, ParsedConllu(path=self.path)
        out.depth = tree_depths(out)
        return out


def tree_depths(out: ParsedConllu) -> np.ndarray:
    """Depth of every word (root = 1), raising on a cycle.

    Pointer chasing over the whole file at once: each round moves every unfinished
    word one arc up. A word still unfinished after as many rounds as the longest
    sentence has words sits on a cycle.
    """
    n = out.n_words
    first = np.repeat(np.asarray(out.sent_first, np.int64), out.sent_length)
    head = np.asarray(out.head, np.int64)
    parent = np.where(head > 0, first + head - 1, -1)
    depth = np.ones(n, np.int32)
    cur = parent.copy()
    active = np.flatnonzero(cur >= 0)
    for _ in range(max(out.sent_length, default=0)):
        if not active.size:
            break
        depth[active] += 1
        cur[active] = parent[cur[active]]
        active = active[cur[active] >= 0]
    if active.size:
        i = int(active.min())
        raise CorpusError(
            out.path,
            out.line[i],
            f"word {out.position[i]} ({out.form[i]!r}) is on a cycle of HEAD links; "
            "a dependency tree must reach the root from every word",
        )
    return depth
