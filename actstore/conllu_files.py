"""Reading CoNLL-U files: checked as regular files, hashed, and parsed by
:mod:`actstore.conllu` one block of whole sentences at a time."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from actstore.conllu import LineReader, ParsedConllu
from actstore.errors import CorpusError

BLOCK_WORDS = 100_000  # words per block: about 90 MB of Python lists while parsed
READ_BYTES = 8 << 20


def _open(name: str) -> BinaryIO:
    try:
        info = os.stat(name)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(info.st_mode):
            raise CorpusError(name, None, "not a regular file (a pipe or device?); give a file")
        if name.endswith(".gz"):  # read (and hashed) as its decompressed text
            return typing.cast(BinaryIO, gzip.open(name, "rb"))
        return open(name, "rb")
    except FileNotFoundError:
        raise CorpusError(name, None, "file not found") from None
    except IsADirectoryError:
        raise CorpusError(name, None, "is a directory, expected a CoNLL-U file") from None
    except OSError as exc:
        raise CorpusError(name, None, f"cannot read: {exc.strerror}") from None


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a CoNLL-U file's bytes, read in blocks (a regular file only)."""
    name = str(path)
    digest = hashlib.sha256()
    with _open(name) as f:
        try:
            while data := f.read(READ_BYTES):
                digest.update(data)
        except (OSError, EOFError) as exc:  # gzip: BadGzipFile, a truncated stream
            raise CorpusError(
                name, None, f"cannot read: {getattr(exc, 'strerror', None) or exc}"
            ) from None
    return digest.hexdigest()


class ConlluFile:
    """One CoNLL-U file, parsed and validated as it is read.

    Iterating yields :class:`ParsedConllu` blocks of whole sentences, each of at least
    ``block_words`` words (the last may hold fewer). Memory is bounded by a block,
    whatever the file's size. Once iteration ends, ``sha256`` and the counts describe
    the whole file; an error is raised instead if the file held no sentence or if its
    bytes differ from ``sha256`` given in advance (the file changed while it was read).

    Examples
    --------
    >>> from actstore.data import corpus_path
    >>> source = ConlluFile(corpus_path("en_ewt", "dev"), block_words=10_000)
    >>> [block.n_words for block in source]
    [10003, 10002, 5142]
    >>> source.n_sentences, source.n_words, source.sha256[:12]
    (2001, 25147, '531a54ff90d6')
    """

    def __init__(
        self, path: str | Path, *, block_words: int = BLOCK_WORDS, sha256: str | None = None
    ) -> None:
        self.path = str(path)
        self.block_words = block_words
        self.expected = sha256
        self.sha256 = ""
        self.n_sentences = self.n_words = self.n_multiword = self.n_empty_nodes = 0

    def __iter__(self) -> Iterator[ParsedConllu]:
        name = self.path
        reader = LineReader(name, self.block_words)
        digest = hashlib.sha256()
        lineno, carry = 1, b""
        with _open(name) as f:
            while True:
                try:
                    data = f.read(READ_BYTES)
                except (OSError, EOFError) as exc:
                    reason = getattr(exc, "strerror", None) or exc
                    raise CorpusError(name, None, f"cannot read: {reason}") from None
                digest.update(data)
                if not data and not carry:
                    break
                cut = data.rfind(b"\n") + 1 if data else 0
                if data and not cut:  # no line end yet: keep reading
                    carry += data
                    continue
                whole, carry = (carry + data[:cut], data[cut:]) if data else (carry, b"")
                lines = self._decode(whole, lineno).split("\n")
                if whole.endswith(b"\n"):
                    lines.pop()  # the nothing after the last line end
                yield from map(self._count, reader.feed(lines, lineno))
                lineno += len(lines)
        reader.end_sentence(lineno)
        self.sha256 = digest.hexdigest()
        if self.expected is not None and self.sha256 != self.expected:
            raise CorpusError(name, None, "the file changed while it was being read; ingest again")
        if reader.out.sent_first:
            yield self._count(reader.take())
        if not self.n_sentences:
            raise CorpusError(name, None, "no sentences found (empty file?)")

    def _decode(self, data: bytes, lineno: int) -> str:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = lineno + data.count(b"\n", 0, exc.start)
            column = exc.start - data.rfind(b"\n", 0, exc.start)
            raise CorpusError(
                self.path, line, f"invalid UTF-8 (byte {data[exc.start]:#04x} at column {column})"
            ) from None
        if lineno == 1:
            text = text.removeprefix("\ufeff")
        if "\r" in text:
            text = "\n".join(line.rstrip("\r") for line in text.split("\n"))
        return text

    def _count(self, block: ParsedConllu) -> ParsedConllu:
        self.n_sentences += block.n_sentences
        self.n_words += block.n_words
        self.n_multiword += block.n_multiword
        self.n_empty_nodes += block.n_empty_nodes
        return block
