"""Neuron view pages with hostile text: a 3000-letter word wraps instead of widening the
page, and a right-to-left override (U+202E) in a form, a type or a sent_id stays inside
its own box. Checked on the markup: every word box, type cell and sentence label
carries the isolation and the wrapping, whatever the words are."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import actstore
from queries.neuron import neuron_view
from queries.neuron_render import view_html

RLO = "\u202e"
LONG = "x" * 3000
FORMS = (LONG, f"{RLO}evil", "after", "words")
SENT_ID = f"s{RLO}1"


class _Texts(HTMLParser):
    """Every text of a fragment with the (tag, style) of the elements around it."""

    VOID = frozenset({"wbr", "br", "meta"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.texts: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append((tag, dict(attrs).get("style") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID:
            assert self.stack.pop()[0] == tag

    def handle_data(self, data: str) -> None:
        self.texts.append((data, list(self.stack)))


def _texts(fragment: str) -> list[tuple[str, list[tuple[str, str]]]]:
    parser = _Texts()
    parser.feed(fragment)
    assert not parser.stack
    return parser.texts


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    lines = [f"# sent_id = {SENT_ID}", "# text = " + " ".join(FORMS)]
    lines += [
        f"{i}\t{form}\t{form}\tX\t_\t_\t{int(i > 1)}\t{'dep' if i > 1 else 'root'}\t_\t_"
        for i, form in enumerate(FORMS, 1)
    ]
    conllu = folder / "hostile.conllu"
    conllu.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    path = folder / "h.actstore"
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [conllu])
        writer = store.create_site("toy/layer.0", n_units=2, dtype="float32")
        writer.write(0, np.arange(len(FORMS) * 2, dtype=np.float32).reshape(-1, 2))
        writer.commit()
    return path


def test_every_word_type_and_label_is_isolated_and_wraps(hostile_store: Path) -> None:
    with actstore.open(hostile_store) as store:
        view = neuron_view(store, "toy/layer.0", 1, None, top=4, min_count=1)
    texts = _texts(view_html(view))
    words = [(t, s) for t, s in texts if s[-1][0] == "span" and "td" not in dict(s)]
    words = [(t, s) for t, s in words if t in FORMS]
    assert [t for t, _ in words] == list(FORMS)
    for _, stack in words:
        style = stack[-1][1]
        assert "unicode-bidi:isolate" in style and "overflow-wrap:anywhere" in style, style
        container = next(st for tag, st in stack if tag == "div" and "flex:1 1" in st)
        assert "overflow-wrap:anywhere" in container and "min-width:0" in container
    types = [(t, s) for t, s in texts if "td" in dict(s)]
    typed = [t for t, _ in types if t in {f.lower() for f in FORMS}]
    assert sorted(typed) == sorted([f.lower() for f in FORMS] * 2)  # highest and lowest
    for text, stack in types:
        if text in typed:
            assert "unicode-bidi:isolate" in stack[-1][1] and "max-width:20em" in stack[-1][1]
            assert "overflow-wrap:anywhere" in dict(stack)["td"]
    label = [s for t, s in texts if t == SENT_ID]
    assert len(label) == 1 and label[0][-1] == ("bdi", "")
    assert "unicode-bidi:isolate" in dict(label[0])["small"]
