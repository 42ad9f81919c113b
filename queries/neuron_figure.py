"""A :class:`~queries.neuron.NeuronView` as a matplotlib figure (for SVG and PNG):
the sentences as words in boxes coloured like :mod:`queries.neuron_render`'s HTML,
wrapped to lines by their measured width, and the top and bottom types beside them.

Everything is placed in inches from the figure's top left, after measuring each text
with the figure's own renderer, so nothing overlaps whatever the words are.

Examples
--------
>>> from queries.neuron import neuron_view
>>> figure = view_figure(neuron_view(store, "toy/layer.0", 3, [0, 1], top=3, min_count=3))
>>> len(figure.patches) >= 2 * 10
True
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle

from queries.neuron import NeuronView, TypeMean
from queries.neuron_render import STOPS, caption, colour, legend_text, text_colour, types_caption

WORD_PT = 10.0  # font size of the sentences
SMALL_PT = 7.5
PAD = 0.03  # inches inside a word's box, each side
GAP = 0.07  # inches between boxes where the text has a space (0.015 where it has none)
LINE = 0.30  # inches from one line of words to the next
GUTTER = 0.55  # inches left of the sentences, for their ids
TYPES = 3.1  # inches of the types panel


@dataclass(frozen=True)
class _Box:
    x: float  # inches from the left
    line: int
    width: float  # of the text, without padding
    word: str
    value: float


def diverging_map() -> LinearSegmentedColormap:
    """The colour map of the views, for colour bars (the HTML uses the same stops)."""
    return LinearSegmentedColormap.from_list(
        "neuron", [((t + 1) / 2, tuple(c / 255 for c in rgb)) for t, rgb in STOPS]
    )


class _Measure:
    """Widths of texts in inches, by the figure's renderer."""

    def __init__(self, figure: Figure) -> None:
        self.renderer = FigureCanvasAgg(figure).get_renderer()  # type: ignore[no-untyped-call]
        self.dpi = figure.dpi

    def __call__(self, text: str, points: float) -> float:
        if not text:
            return 0.0
        w, _, _ = self.renderer.get_text_width_height_descent(
            text, FontProperties(size=points), ismath=False
        )
        return float(w) / self.dpi

    def fit(self, text: str, points: float, width: float) -> str:
        """``text``, cut with an ellipsis until it is at most ``width`` inches wide."""
        if self(text, points) <= width:
            return text
        while text and self(text + "…", points) > width:
            text = text[:-1]
        return text + "…"


def _wrap(view: NeuronView, measure: _Measure, width: float) -> list[list[_Box]]:
    """Each sentence's words placed on lines no wider than ``width`` inches."""
    placed = []
    line = 0
    for s in view.sentences:
        boxes, x = [], 0.0
        for word, value, space in zip(s.words, s.values, s.space_after, strict=True):
            w = min(measure(word, WORD_PT), width - 2 * PAD)
            if x > 0 and x + w + 2 * PAD > width:
                line, x = line + 1, 0.0
            boxes.append(_Box(x, line, w, word, value))
            x += w + 2 * PAD + (GAP if space else 0.015)
        placed.append(boxes)
        line += 1
    return placed


def view_figure(view: NeuronView, width: float = 10.0) -> Figure:
    """The view drawn: a title, each sentence's words on coloured boxes (its id in the
    left margin), a colour bar, the top and bottom types on the right, and a caption.

    Examples
    --------
    >>> from queries.neuron import neuron_view
    >>> figure = view_figure(neuron_view(store, "toy/layer.1", 0, None, limit=3, top=0))
    >>> float(figure.get_figwidth()), figure.texts[0].get_text()
    (10.0, 'Unit 0 of toy/layer.1')
    """
    figure = Figure(figsize=(width, 2.0))
    measure = _Measure(figure)
    panel = width - GUTTER - 0.2 - (TYPES + 0.3 if view.top or view.bottom else 0.0)
    placed = _wrap(view, measure, panel)
    n_lines = (placed[-1][-1].line + 1) if placed and placed[-1] else len(placed)
    gaps = 0.12 * max(len(placed) - 1, 0)
    text_height = n_lines * LINE + gaps
    type_rows = len(view.top) + len(view.bottom)
    types_height = (type_rows + 2) * 0.19 + 1.0 if type_rows else 0.0
    notes = textwrap.wrap(f"{caption(view)} · {legend_text(view)}", int(width * 15))
    top, bottom = 0.75, 0.35 + 0.16 * len(notes)
    height = top + max(text_height + 0.95, types_height) + bottom  # 0.95: the colour bar
    figure.set_figheight(height)

    def at(x: float, y: float) -> tuple[float, float]:  # inches from the top left
        return x, height - y

    def write(x: float, y: float, text: str, **style: Any) -> None:
        figure.text(*at(x, y), text, transform=figure.dpi_scale_trans, parse_math=False, **style)

    write(0.1, 0.3, view.title, fontsize=12, fontweight="bold", va="baseline")
    y = top
    for s, boxes in zip(view.sentences, placed, strict=True):
        write(GUTTER - 0.1, y + LINE * 0.62, str(s.sentence_id), fontsize=SMALL_PT,
              color="0.4", ha="right", va="baseline")  # fmt: skip
        for box in boxes:
            rgb = colour(box.value, view.scale)
            x0, y0 = GUTTER + box.x, y + (box.line - boxes[0].line) * LINE
            figure.patches.append(
                Rectangle(at(x0, y0 + LINE * 0.85), box.width + 2 * PAD, LINE * 0.78,
                          transform=figure.dpi_scale_trans, facecolor=rgb, edgecolor="none")
            )  # fmt: skip
            word = measure.fit(box.word, WORD_PT, box.width + 1e-6)
            write(x0 + PAD, y0 + LINE * 0.62, word, fontsize=WORD_PT, va="baseline",
                  color=text_colour(rgb))  # fmt: skip
        y += (boxes[-1].line - boxes[0].line + 1) * LINE + 0.12 if boxes else LINE
    bar_y = top + text_height + 0.3
    cax = figure.add_axes((GUTTER / width, 1 - (bar_y + 0.12) / height, 2.6 / width, 0.12 / height))
    limit = view.scale if view.scale > 0 else 1.0
    bar = figure.colorbar(
        ScalarMappable(Normalize(-limit, limit), diverging_map()), cax=cax, orientation="horizontal"
    )
    bar.ax.tick_params(labelsize=SMALL_PT)
    bar.set_label(f"activation of unit {view.unit}", fontsize=SMALL_PT)
    if type_rows:
        _types(view, measure, width - TYPES - 0.1, top, write)
    write(0.1, height - 0.15 - 0.16 * len(notes), "\n".join(notes), fontsize=7, color="0.3",
          va="top", linespacing=1.35)  # fmt: skip
    return figure


def _types(view: NeuronView, measure: _Measure, x: float, y: float, write: Any) -> None:
    """The top and bottom types as a small table: rank, type on its colour, mean, n."""
    write(x, y - 0.05, f"{view.by} types by mean", fontsize=9, fontweight="bold", va="baseline")
    size = SMALL_PT + 0.5
    name_width = TYPES - 1.45

    def block(label: str, types: tuple[TypeMean, ...], y: float) -> float:
        write(x, y + 0.19, label, fontsize=size, color="0.3", va="baseline", style="italic")
        for right, head in ((TYPES - 0.5, "mean"), (TYPES - 0.05, "n")):
            write(x + right, y + 0.19, head, fontsize=size, color="0.3", ha="right", va="baseline")
        for rank, t in enumerate(types, 1):
            y += 0.19
            rgb = colour(t.mean, view.scale)
            box = {"boxstyle": "square,pad=0.12", "facecolor": rgb, "edgecolor": "none"}
            name = measure.fit(t.type, size, name_width - 2 * PAD)
            row = {"fontsize": size, "va": "baseline"}
            write(x + 0.22, y + 0.19, str(rank), ha="right", **row)
            write(x + 0.3 + PAD, y + 0.19, name, color=text_colour(rgb), bbox=box, **row)
            write(x + TYPES - 0.5, y + 0.19, f"{t.mean:.3f}", ha="right", **row)
            write(x + TYPES - 0.05, y + 0.19, f"{t.count:,}", ha="right", color="0.35", **row)
        return y + 0.3

    y = block("highest mean", view.top, y + 0.1)
    y = block("lowest mean", view.bottom, y)
    note = textwrap.wrap(types_caption(view), int(TYPES * 17))
    write(x, y + 0.1, "\n".join(note), fontsize=6.5, color="0.4", va="top")
