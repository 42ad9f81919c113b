"""The vocabulary of a reference model: words or characters, ids, and how a sentence
becomes one sequence of ids.

A word-level vocabulary gives one id per word; a character-level one encodes the
sentence's words joined by one space, one id per character (a word's activations are
then read at its last character). Ids 0, 1 and 2 are always ``<pad>`` (padding),
``<unk>`` (anything unseen or too rare) and ``</s>`` (the end of a sentence, the last
target of a language model); the other entries follow by falling count, ties in
alphabetical order, so the same corpus always gives the same ids.

Examples
--------
>>> vocab = Vocabulary.build([["The", "cat"], ["the", "dog"]], level="word", min_count=1)
>>> vocab.tokens
['<pad>', '<unk>', '</s>', 'the', 'cat', 'dog']
>>> vocab.encode(["The", "cow"])
[3, 1]
>>> chars = Vocabulary.build([["ab", "b"]], level="char", min_count=1)
>>> chars.encode_sentence(["ab", "b"])
([5, 3, 4, 3], [1, 3])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from actstore.errors import ModelError, ParameterError

Level = Literal["word", "char"]
LEVELS: tuple[Level, ...] = ("word", "char")
PAD, UNK, EOS = "<pad>", "<unk>", "</s>"
SPECIALS = (PAD, UNK, EOS)
SEPARATOR = " "  # between the words of a sentence, for character-level models


def fold(text: str, level: Level, lowercase: bool) -> str:
    """``text`` as the vocabulary sees it: lowercased if asked. A character whose lower
    case is longer than one character (``İ``) stays as it is, so that a character-level
    sentence keeps one step per character.

    Examples
    --------
    >>> fold("Paris", "word", True), fold("İ", "char", True), fold("A", "char", False)
    ('paris', 'İ', 'A')
    """
    if not lowercase:
        return text
    if level == "word":
        return text.lower()
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


class Vocabulary:
    """Tokens (words or characters) and their ids; see the module docstring.

    Parameters
    ----------
    tokens
        Every token, id order; the first three are ``<pad>``, ``<unk>``, ``</s>``.
    level
        ``"word"`` or ``"char"``.
    lowercase
        Whether :meth:`encode` lowercases what it is given (the vocabulary was built so).

    Examples
    --------
    >>> vocab = Vocabulary(["<pad>", "<unk>", "</s>", "a"], level="word", lowercase=True)
    >>> len(vocab), vocab.pad, vocab.unk, vocab.eos, vocab.encode(["A", "b"])
    (4, 0, 1, 2, [3, 1])
    """

    def __init__(self, tokens: Sequence[str], *, level: Level, lowercase: bool) -> None:
        if level not in LEVELS:
            raise ParameterError("level", f"must be one of {list(LEVELS)}, got {level!r}")
        if tuple(tokens[:3]) != SPECIALS:
            raise ModelError(f"a vocabulary starts with {list(SPECIALS)}, got {list(tokens[:3])}")
        self.tokens = list(tokens)
        self.level: Level = level
        self.lowercase = lowercase
        self.separator = SEPARATOR
        self.pad, self.unk, self.eos = 0, 1, 2
        self._ids = {token: i for i, token in enumerate(self.tokens)}
        if len(self._ids) != len(self.tokens):
            twice = [t for t, n in Counter(self.tokens).items() if n > 1][:3]
            raise ModelError(f"a vocabulary lists each token once; repeated: {twice}")

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} {self.level}s, lowercase={self.lowercase})"

    @classmethod
    def build(
        cls,
        sentences: Iterable[Sequence[str]],
        *,
        level: Level,
        lowercase: bool = True,
        min_count: int = 2,
        max_size: int | None = None,
    ) -> Vocabulary:
        """The vocabulary of ``sentences`` (lists of words, such as the ``form`` column
        of a store's tokens): tokens seen at least ``min_count`` times, the commonest
        first, at most ``max_size`` entries in all (the three special tokens included).

        Examples
        --------
        >>> Vocabulary.build([["a", "b", "a"]], level="word", min_count=2).tokens
        ['<pad>', '<unk>', '</s>', 'a']
        >>> Vocabulary.build([["ab"]], level="char", max_size=4, min_count=1).tokens
        ['<pad>', '<unk>', '</s>', 'a']
        """
        if min_count < 1:
            raise ParameterError("min_count", f"must be at least 1, got {min_count}")
        if max_size is not None and max_size <= len(SPECIALS):
            raise ParameterError(
                "max_size", f"must exceed {len(SPECIALS)} (the special tokens), got {max_size}"
            )
        counts: Counter[str] = Counter()
        for words in sentences:
            if level == "word":
                counts.update(fold(w, level, lowercase) for w in words)
            else:
                counts.update(fold(SEPARATOR.join(words), level, lowercase))
        for special in SPECIALS:
            counts.pop(special, None)
        kept = sorted(
            (t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            kept = kept[: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *kept], level=level, lowercase=lowercase)

    def encode(self, items: Sequence[str]) -> list[int]:
        """Ids of ``items``: words for a word-level vocabulary, single characters for a
        character-level one (see :meth:`encode_sentence` for a sentence's characters);
        unknown items get :attr:`unk`.

        Examples
        --------
        >>> Vocabulary.build([["x", "x"]], level="char").encode(list("xy"))
        [3, 1]
        """
        ids, unk = self._ids, self.unk
        if self.level == "char":
            long = next((item for item in items if len(item) != 1), None)
            if long is not None:
                raise ModelError(
                    f"a character-level vocabulary encodes single characters, got {long!r}; "
                    "encode_sentence(words) encodes a sentence's words"
                )
        return [ids.get(fold(item, self.level, self.lowercase), unk) for item in items]

    def encode_sentence(self, words: Sequence[str]) -> tuple[list[int], list[int]]:
        """A sentence as the model reads it: its ids, and for each word the index of
        its last step (the word itself at word level; its last character at character
        level, the words joined by one space).

        Examples
        --------
        >>> vocab = Vocabulary.build([["to", "be"]], level="char", min_count=1)
        >>> vocab.encode_sentence(["to", "be"])[1]
        [1, 4]
        """
        if self.level == "word":
            return self.encode(words), list(range(len(words)))
        chars: list[str] = []
        ends: list[int] = []
        for i, word in enumerate(words):
            if i:
                chars.append(self.separator)
            chars.extend(word)
            ends.append(len(chars) - 1)
        return self.encode(chars), ends

    def to_json(self) -> dict[str, Any]:
        """What ``vocab.json`` holds.

        Examples
        --------
        >>> sorted(Vocabulary.build([["a"]], level="word", min_count=1).to_json())
        ['eos', 'level', 'lowercase', 'pad', 'separator', 'tokens', 'unk']
        """
        return {
            "tokens": self.tokens,
            "pad": self.pad,
            "unk": self.unk,
            "eos": self.eos,
            "level": self.level,
            "lowercase": self.lowercase,
            "separator": self.separator,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "vocab.json") -> Vocabulary:
        """The vocabulary :meth:`to_json` wrote; ``where`` names the file in errors.

        Examples
        --------
        >>> vocab = Vocabulary.build([["a"]], level="word", min_count=1)
        >>> Vocabulary.from_json(vocab.to_json()) == vocab
        True
        >>> Vocabulary.from_json({"tokens": ["a"]})
        Traceback (most recent call last):
        ...
        actstore.errors.ModelError: vocab.json: not a vocabulary: needs 'tokens', 'pad', ...
        """
        need = ("tokens", "pad", "unk", "level")
        if not isinstance(data, dict) or any(key not in data for key in need):
            raise ModelError(f"{where}: not a vocabulary: needs {', '.join(map(repr, need))}")
        tokens = data["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ModelError(f"{where}: 'tokens' must be a list of strings")
        if data["level"] not in LEVELS:
            raise ModelError(f"{where}: level must be one of {list(LEVELS)}, got {data['level']!r}")
        if (data["pad"], data["unk"], data.get("eos", 2)) != (0, 1, 2):
            raise ModelError(f"{where}: expected pad 0, unk 1, eos 2")
        if data.get("separator", SEPARATOR) != SEPARATOR:
            raise ModelError(f"{where}: only the separator {SEPARATOR!r} is supported")
        try:
            return cls(tokens, level=data["level"], lowercase=bool(data.get("lowercase", False)))
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from None
