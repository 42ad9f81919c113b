"""Word-order controls: each sentence's words shuffled, its tree and annotations kept.

The control corpus of word-order probing: the same sentences with the same words, tags
and dependency trees, the words in another order, so a unit's activations on shuffled
sentences can be set beside those on the originals (``actstore ingest STORE FILE
--shuffle-words SEED`` puts both in one store; ``shuffle_seed IS NULL`` picks the
originals).

Sentence ``i`` of a file (0-based, counted over the whole file, whatever part of it is
ingested) is shuffled by ``numpy.random.default_rng([seed, i]).permutation(n_words)``:
word ``j`` of the shuffled sentence is word ``order[j]`` of the original. The order
depends on the seed and the sentence's index in its file only, never on how the file is
cut into blocks nor on the rows the sentence lands on in a store, so the same file and
seed always give the same shuffled corpus.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from actstore.conllu import ParsedConllu, tree_depths
from actstore.errors import ParameterError

MAX_SEED = (1 << 63) - 1  # stored as int64


def check_seed(seed: int, parameter: str = "shuffle_words") -> int:
    """``seed`` as an int, refused unless it is an integer ``0 <= seed < 2**63``.

    Examples
    --------
    >>> check_seed(7)
    7
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: shuffle_words must be an integer 0..9223372036854775807 ...
    """
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int | np.integer)
        or not 0 <= seed <= MAX_SEED
    ):
        raise ParameterError(
            parameter, f"must be an integer 0..{MAX_SEED} (the shuffle's seed), got {seed!r}"
        )
    return int(seed)


def sentence_order(seed: int, index: int, n_words: int) -> np.ndarray:
    """The order of a sentence's words once shuffled: word ``j`` of the shuffled sentence
    is word ``order[j]`` (0-based) of sentence ``index`` of its file.

    Examples
    --------
    >>> sentence_order(7, 0, 5).tolist() == np.random.default_rng([7, 0]).permutation(5).tolist()
    True
    """
    return np.random.default_rng([seed, index]).permutation(n_words)


def shuffle_words(parsed: ParsedConllu, seed: int, first_sentence: int) -> ParsedConllu:
    """A block of whole sentences with each sentence's words shuffled.

    Parameters
    ----------
    parsed
        Whole sentences of one file, as :class:`~actstore.conllu_files.ConlluFile` yields
        them.
    seed
        The shuffle's seed, an integer ``0 <= seed < 2**63``.
    first_sentence
        The index in its file of the block's first sentence (0-based): sentence ``k`` of
        the block is shuffled by :func:`sentence_order` ``(seed, first_sentence + k)``.

    Returns
    -------
    ParsedConllu
        The words in their new order. Each keeps its form, lemma, tags, features,
        relation and line; ``position`` runs 1..n in the new order and ``head`` points
        to the same head word at its new position (0 stays 0), so the tree, and each
        word's depth, is the same. The enhanced graph is not carried over: ``deps``,
        whose IDs are the old positions, is None. A shuffled word no longer shares a
        surface token: multiword-token fields are None, ``space_after`` True, ``misc``
        loses its ``SpaceAfter=`` and ``SpacesAfter=`` items (None when nothing else is
        left), and the sentence text is the shuffled forms joined by spaces. ``original_position``
        holds each word's ID before the shuffle and ``shuffle_seed`` the seed; the
        sentences' ``sent_id``, comments and lines are kept.

    Examples
    --------
    >>> from actstore.conllu_files import ConlluFile
    >>> block = next(iter(ConlluFile(sample_conllu)))
    >>> mixed = shuffle_words(block, 7, 0)
    >>> first = slice(0, block.sent_length[0])
    >>> sorted(mixed.form[first]) == sorted(block.form[first]), mixed.position[:3]
    (True, [1, 2, 3])
    >>> order = sentence_order(7, 0, block.sent_length[0])
    >>> mixed.original_position[first] == (order + 1).tolist()
    True
    >>> bool((mixed.depth == tree_depths(mixed)).all()), mixed.sent_id == block.sent_id
    (True, True)
    >>> set(mixed.deps), any("SpaceAfter" in m for m in mixed.misc if m)
    ({None}, False)
    """
    seed = check_seed(seed)
    n = parsed.n_words
    firsts = np.asarray(parsed.sent_first, np.int64)
    lengths = np.asarray(parsed.sent_length, np.int64)
    orders = [
        first + sentence_order(seed, first_sentence + k, int(length))
        for k, (first, length) in enumerate(zip(firsts, lengths, strict=True))
    ]
    take = np.concatenate(orders) if orders else np.zeros(0, np.int64)
    if take.size != n:
        raise ValueError(f"the block's sentences hold {take.size} words, its lists {n}")
    new_index = np.empty(n, np.int64)
    new_index[take] = np.arange(n)
    first = np.repeat(firsts, lengths)
    old_head = np.asarray(parsed.head, np.int64)[take]
    head = np.where(old_head > 0, new_index[first + np.maximum(old_head, 1) - 1] - first + 1, 0)
    picks = take.tolist()
    moved: dict[str, Any] = {
        name: [getattr(parsed, name)[i] for i in picks]
        for name in ("form", "lemma", "upos", "xpos", "feats", "deprel", "line")
    }
    forms: list[str] = moved["form"]
    out = dataclasses.replace(
        parsed,
        **moved,
        position=(np.arange(n) - first + 1).tolist(),
        head=head.tolist(),
        mwt_start=[None] * n,
        mwt_end=[None] * n,
        mwt_form=[None] * n,
        deps=[None] * n,  # its IDs name the old positions
        misc=[_without_spacing(parsed.misc[i]) for i in picks],
        space_after=[True] * n,
        sent_first=list(parsed.sent_first),
        sent_length=list(parsed.sent_length),
        sent_line=list(parsed.sent_line),
        sent_text=[" ".join(forms[a : a + b]) for a, b in zip(firsts, lengths, strict=True)],
        sent_id=list(parsed.sent_id),
        sent_comments=[list(c) for c in parsed.sent_comments],
        sent_tokens=list(parsed.sent_length),  # every word its own surface token
        sent_empty=list(parsed.sent_empty),
        n_multiword=0,
        original_position=[parsed.position[i] for i in picks],
        shuffle_seed=seed,
    )
    out.depth = parsed.depth[take] if len(parsed.depth) == n else tree_depths(out)
    return out


_SPACING = ("SpaceAfter=", "SpacesAfter=")


def _without_spacing(misc: str | None) -> str | None:
    """``misc`` without the items that say what follows the word in the text, which
    a shuffled sentence no longer keeps (its words are joined by single spaces).

    Examples
    --------
    >>> _without_spacing("SpaceAfter=No|Cxn=x"), _without_spacing("SpaceAfter=No")
    ('Cxn=x', None)
    """
    if misc is None:
        return None
    kept = [item for item in misc.split("|") if not item.startswith(_SPACING)]
    return "|".join(kept) or None
