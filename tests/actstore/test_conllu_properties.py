"""Property-based ingest: generated CoNLL-U round-trips; every mutation that breaks it is
refused in one line and leaves the store byte-identical.

The generator builds each document from a model (words, a random tree, multiword
tokens, empty nodes, features), and that model is the reference the stored columns
are checked against: depth is walked up the generated heads, token counts and
``SpaceAfter`` follow the UD rules written out here, not the reader's code.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actstore
from actstore.cli import main
from tests.conftest import first_sentences

# derandomized: the same examples on every run and machine (no example database)
SETTINGS = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FORM = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), exclude_characters="\ufeff"),
    min_size=1,
    max_size=5,
)
FEATURES = {
    "Case": ["Acc", "Nom"],
    "Number": ["Plur", "Sing"],
    "Number[psor]": ["Sing"],
    "PronType": ["Int,Rel", "Prs"],
}


@dataclass
class Word:
    form: str
    lemma: str
    upos: str | None
    feats: dict[str, str]
    head: int
    deprel: str
    no_space: bool


@dataclass
class Sentence:
    sent_id: str
    words: list[Word]
    mwts: list[tuple[int, int, str, bool]] = field(default_factory=list)  # a, b, form, no space
    empty_after: set[int] = field(default_factory=set)  # word positions followed by n.1

    def lines(self, *, with_mwts: bool = True) -> tuple[list[str], dict[int, int]]:
        """The sentence's lines, and the line index of each word position."""
        out = [f"# sent_id = {self.sent_id}", "# text = " + " ".join(w.form for w in self.words)]
        where: dict[int, int] = {}
        starts = {m[0]: m for m in self.mwts} if with_mwts else {}
        for i, word in enumerate(self.words, 1):
            if i in starts:
                a, b, form, no_space = starts[i]
                out.append(f"{a}-{b}\t{form}\t_\t_\t_\t_\t_\t_\t_\t{_misc(no_space)}")
            feats = "|".join(f"{k}={v}" for k, v in sorted(word.feats.items())) or "_"
            where[i] = len(out)
            out.append(
                f"{i}\t{word.form}\t{word.lemma}\t{word.upos or '_'}\t_\t{feats}\t{word.head}\t"
                f"{word.deprel}\t_\t{_misc(word.no_space)}"
            )
            if i in self.empty_after:
                out.append(f"{i}.1\t{word.form}\t_\t_\t_\t_\t_\t_\t{i}:dep\t_")
        return out, where


def _misc(no_space: bool) -> str:
    return "SpaceAfter=No" if no_space else "_"


@st.composite
def sentence(draw: Any, index: int) -> Sentence:
    n = draw(st.integers(1, 7))
    order = draw(st.permutations(range(n)))
    heads = [0] * n
    for k in range(1, n):  # each word hangs from one placed before it: a tree
        heads[order[k]] = order[draw(st.integers(0, k - 1))] + 1
    words = []
    for i in range(n):
        keys = draw(st.lists(st.sampled_from(sorted(FEATURES)), unique=True, max_size=3))
        words.append(
            Word(
                form=draw(FORM),
                lemma=draw(FORM),
                upos=draw(st.sampled_from(["NOUN", "VERB", "ADJ", None])),
                feats={k: draw(st.sampled_from(FEATURES[k])) for k in keys},
                head=heads[i],
                deprel="root" if heads[i] == 0 else draw(st.sampled_from(["nsubj", "nmod:poss"])),
                no_space=draw(st.booleans()),
            )
        )
    result = Sentence(f"s{index}", words)
    position = 1
    while position < n:
        if draw(st.integers(0, 3)) == 0:
            end = draw(st.integers(position + 1, min(position + 2, n)))
            result.mwts.append((position, end, draw(FORM), draw(st.booleans())))
            position = end + 1
        else:
            position += 1
    inside = {i for a, b, _, _ in result.mwts for i in range(a, b)}  # not within a token
    free = [i for i in range(1, n + 1) if i not in inside]
    result.empty_after = set(draw(st.sets(st.sampled_from(free), max_size=1)))
    return result


@st.composite
def document(draw: Any) -> list[Sentence]:
    return [draw(sentence(i)) for i in range(draw(st.integers(1, 4)))]


def render(doc: list[Sentence]) -> str:
    return "".join("\n".join(s.lines()[0]) + "\n\n" for s in doc)


def depth(words: list[Word], i: int) -> int:
    steps = 1
    while words[i].head:
        i, steps = words[i].head - 1, steps + 1
    return steps


def expected_columns(doc: list[Sentence]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {k: [] for k in (
        "sentence_id", "position", "form", "lemma", "upos", "feats", "head", "deprel",
        "deprel_base", "depth", "head_distance", "mwt_start", "mwt_end", "mwt_form",
        "space_after", "Case", "Number", "Number_psor", "PronType",
    )}  # fmt: skip
    for s, sent in enumerate(doc):
        covering = {i: m for m in sent.mwts for i in range(m[0], m[1] + 1)}
        for i, word in enumerate(sent.words, 1):
            mwt = covering.get(i)
            feats = "|".join(f"{k}={v}" for k, v in sorted(word.feats.items())) or None
            values = {
                "sentence_id": s, "position": i, "form": word.form, "lemma": word.lemma,
                "upos": word.upos, "feats": feats, "head": word.head, "deprel": word.deprel,
                "deprel_base": word.deprel.split(":")[0], "depth": depth(sent.words, i - 1),
                "head_distance": word.head - i if word.head else None,
                "mwt_start": mwt[0] if mwt else None, "mwt_end": mwt[1] if mwt else None,
                "mwt_form": mwt[2] if mwt else None,
                "space_after": not (mwt[3] if mwt else word.no_space),
                "Case": word.feats.get("Case"), "Number": word.feats.get("Number"),
                "Number_psor": word.feats.get("Number[psor]"),
                "PronType": word.feats.get("PronType"),
            }  # fmt: skip
            for k, v in values.items():
                cols[k].append(v)
    return cols


@SETTINGS
@given(document())
def test_valid_documents_round_trip(doc: list[Sentence]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gen.conllu"
        path.write_text(render(doc), encoding="utf-8")
        with actstore.create(Path(tmp) / "s.actstore") as store:
            actstore.ingest_conllu(store, [path])
            expected = expected_columns(doc)
            stored = set(store.sql("SELECT * FROM tokens LIMIT 0").columns)
            present = [c for c in expected if c in stored]
            got = store.columns(present).to_pydict()
            sentences = store.sql("SELECT sent_id, n_words, n_tokens, n_empty_nodes FROM sentences")
    for column in expected:
        if column in present:
            assert got[column] == expected[column], column
        else:  # a feature no word of the document has
            assert all(v is None for v in expected[column]), column
    n_tokens = [len(s.words) - sum(b - a for a, b, _, _ in s.mwts) for s in doc]
    assert sentences.to_dict("list") == {
        "sent_id": [s.sent_id for s in doc],
        "n_words": [len(s.words) for s in doc],
        "n_tokens": n_tokens,
        "n_empty_nodes": [len(s.empty_after) for s in doc],
    }


def _set(lines: list[str], at: int, column: int, value: str) -> None:
    cols = lines[at].split("\t")
    cols[column] = value
    lines[at] = "\t".join(cols)


MUTATIONS = (
    "head out of range", "head syntax", "id syntax", "nine columns", "two roots", "no root",
    "duplicate id", "comment inside", "bad utf-8", "feature twice", "lowercase feature",
    "unsorted features", "overlapping multiword", "multiword past the end",
)  # fmt: skip


@st.composite
def mutated(draw: Any, kind: str) -> bytes:
    """A generated document with one error of ``kind`` in one sentence."""
    doc = draw(document())
    target = draw(st.integers(0, len(doc) - 1))
    sent = doc[target]
    n = len(sent.words)
    if n == 1 and kind in ("two roots", "no root", "comment inside", "overlapping multiword"):
        kind = "head out of range"
    plain = kind in ("overlapping multiword", "multiword past the end")
    lines, where = sent.lines(with_mwts=not plain)
    k = draw(st.integers(1, n))
    root = next(i for i, w in enumerate(sent.words, 1) if w.head == 0)
    other = next(i for i in range(1, n + 1) if i != root) if n > 1 else root
    if kind == "head out of range":
        _set(lines, where[k], 6, str(n + draw(st.integers(1, 3))))
    elif kind == "head syntax":
        _set(lines, where[k], 6, draw(st.sampled_from(["+1", "01", "\u0663", "1.0", " 1", "-1"])))
    elif kind == "id syntax":
        _set(lines, where[k], 0, draw(st.sampled_from([f"0{k}", f"{k}a", f"+{k}", "\u0661"])))
    elif kind == "nine columns":
        lines[where[k]] = lines[where[k]].rsplit("\t", 1)[0]
    elif kind == "two roots":
        _set(lines, where[other], 6, "0")
    elif kind == "no root":
        _set(lines, where[root], 6, str(other))  # the root now hangs from a word below it
    elif kind == "duplicate id":
        lines.insert(where[k] + 1, lines[where[k]])
    elif kind == "comment inside":
        lines.insert(where[n], "# a comment among the words")
    elif kind == "bad utf-8":
        _set(lines, where[k], 1, sent.words[k - 1].form + "\x00")
    elif kind in ("feature twice", "lowercase feature", "unsorted features"):
        feats = {"feature twice": "Case=Acc|Case=Nom", "lowercase feature": "case=Nom",
                 "unsorted features": "Number=Sing|Case=Nom"}[kind]  # fmt: skip
        _set(lines, where[k], 5, feats)
    elif kind == "overlapping multiword":
        a = draw(st.integers(1, n - 1))
        lines.insert(where[a + 1], f"{a + 1}-{a + 2}\tyz\t_\t_\t_\t_\t_\t_\t_\t_")
        lines.insert(where[a], f"{a}-{a + 1}\txy\t_\t_\t_\t_\t_\t_\t_\t_")
    else:  # multiword past the end
        lines.insert(where[n], f"{n}-{n + 1}\txy\t_\t_\t_\t_\t_\t_\t_\t_")
    body = [*doc[:target], None, *doc[target + 1 :]]
    text = "".join(
        "\n".join(lines if s is None else s.lines()[0]) + "\n\n" for s in body
    )  # fmt: skip
    return text.encode("utf-8").replace(b"\x00", b"\xff")


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a digest of its bytes (folders too)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def one_store(tmp_path_factory: pytest.TempPathFactory, ewt_dev: Path) -> Path:
    tmp = tmp_path_factory.mktemp("props")
    start = tmp / "start.conllu"
    start.write_text(first_sentences(ewt_dev, 5), encoding="utf-8")
    store = tmp / "s.actstore"
    assert main(["ingest", str(start), "--store", str(store)]) == 0
    return store


@pytest.mark.parametrize("kind", MUTATIONS)
def test_broken_documents_are_refused_and_change_nothing(one_store: Path, kind: str) -> None:
    before = _tree(one_store)

    @settings(SETTINGS, max_examples=10)
    @given(data=mutated(kind))
    def refused(data: bytes) -> None:
        path = one_store.parent / f"broken-{next(_files)}.conllu"
        path.write_bytes(data)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(["ingest", str(path), "--store", str(one_store)])
        message = err.getvalue()
        assert status == 2, data.decode("utf-8", "replace")
        assert message.startswith(f"actstore: error: {path}:") and message.count("\n") == 1
        assert _tree(one_store) == before
        # in blocks of 3 words, parts are written before the error is met: all removed
        with actstore.open(one_store, mode="a") as store, pytest.raises(actstore.CorpusError):
            actstore.ingest_conllu(store, [path], block_words=3)
        assert _tree(one_store) == before

    refused()


_files = itertools.count()
