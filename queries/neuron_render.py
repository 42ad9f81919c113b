"""A :class:`~queries.neuron.NeuronView` as HTML, as text, or written to a file.

Every word is a box coloured by the unit's activation on a diverging scale centred at
0 (negative blue, positive red, as in the LSTM probing paper), symmetric, its limit the
largest absolute value among the words shown; the exact value is the box's ``title``
(a tooltip). Beside the sentences: the word types of highest and lowest mean.

Examples
--------
>>> from queries.neuron import neuron_view
>>> view = neuron_view(store, "toy/layer.0", 3, [0], top=2, min_count=3)
>>> fragment = view_html(view)
>>> fragment.startswith('<figure class="actstore-neuron"'), fragment.count("title=")
(True, 7)
>>> write_view(view, tmp / "unit3.html")
>>> (tmp / "unit3.html").read_text(encoding="utf-8")[:15]
'<!DOCTYPE html>'
"""

from __future__ import annotations

import html
import itertools
import textwrap
from pathlib import Path

import numpy as np

from actstore.errors import ParameterError
from actstore.output import check_output_path, emit
from queries.neuron import NeuronView, TypeMean

# RdBu's five stops: blue below 0, near white at 0, red above
STOPS = (
    (-1.0, (0x21, 0x66, 0xAC)),
    (-0.5, (0x92, 0xC5, 0xDE)),
    (0.0, (0xF7, 0xF7, 0xF7)),
    (0.5, (0xF4, 0xA5, 0x82)),
    (1.0, (0xB2, 0x18, 0x2B)),
)
VIEW_FORMATS = {".html": "html", ".htm": "html", ".svg": "svg", ".png": "png"}
_FONT = "font-family:system-ui,sans-serif;font-size:14px"
# each word and label its own bidi run (a U+202E in a form reverses nothing after it),
# and a word of 3000 letters wraps rather than widening the page
_BOX = "unicode-bidi:isolate;overflow-wrap:anywhere"


def colour(value: float, scale: float) -> tuple[float, float, float]:
    """The RGB colour (0..1) of ``value`` on the symmetric scale ``-scale..scale``.

    Examples
    --------
    >>> hex_colour(colour(-2.0, 2.0)), hex_colour(colour(0.0, 2.0)), hex_colour(colour(5, 2))
    ('#2166ac', '#f7f7f7', '#b2182b')
    """
    t = float(np.clip(value / scale, -1.0, 1.0)) if scale > 0 else 0.0
    for (a, ca), (b, cb) in itertools.pairwise(STOPS):
        if t <= b:
            w = (t - a) / (b - a)
            return tuple((x + w * (y - x)) / 255 for x, y in zip(ca, cb, strict=True))  # type: ignore[return-value]
    return tuple(c / 255 for c in STOPS[-1][1])  # type: ignore[return-value]


def hex_colour(rgb: tuple[float, float, float]) -> str:
    """``#rrggbb`` of an RGB colour (0..1)."""
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def text_colour(rgb: tuple[float, float, float]) -> str:
    """Black or white, whichever contrasts more with the background ``rgb`` (WCAG).

    Examples
    --------
    >>> text_colour(colour(-1, 1)), text_colour(colour(0.2, 1))
    ('#ffffff', '#000000')
    """
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#000000" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#ffffff"


def exact(value: float) -> str:
    """A value as read (float32) in the fewest digits that give it back exactly.

    Examples
    --------
    >>> exact(float(np.float32(0.1))), exact(-2.0)
    ('0.1', '-2.0')
    """
    return str(np.float32(value))


def legend_text(view: NeuronView) -> str:
    """The colour scale in words."""
    text = f"colour: activation of unit {view.unit}, -{view.scale:.3g} (blue) to "
    text += f"+{view.scale:.3g} (red), the largest |value| shown"
    if view.percentiles is not None:
        low, high = view.percentiles
        text += f"; 1st and 99th percentile over the table: {low:.3g}, {high:.3g}"
    return text


def caption(view: NeuronView) -> str:
    """What the view shows: site, model, sentences, how many."""
    n = len(view.sentences)
    shown = f"{n} of {view.n_matched:,} shown" if view.n_matched > n else f"{n} shown"
    return f"model {view.model} · site {view.site} ({view.n_units} units) · {view.chosen} · {shown}"


def types_caption(view: NeuronView) -> str:
    """The ranking of word types in words."""
    return (
        f"mean activation per {view.by} (lower-cased) over the table; {view.n_types:,} "
        f"types seen at least {view.min_count} times"
    )


def _span(word: str, value: float, scale: float, space: bool) -> str:
    rgb = colour(value, scale)
    style = f"background:{hex_colour(rgb)};color:{text_colour(rgb)};padding:0.1em 0.15em;{_BOX}"
    # a space where the text has one, else a break opportunity: spans alone never wrap
    after = " " if space else "<wbr>"
    style += "" if space else ";margin-right:0.1em"
    return f'<span style="{style}" title="{exact(value)}">{html.escape(word)}</span>{after}'


def _types_table(view: NeuronView) -> str:
    def rows(label: str, types: tuple[TypeMean, ...]) -> list[str]:
        out = [f'<tr><th colspan="4" style="text-align:left;padding-top:0.5em">{label}</th></tr>']
        for rank, t in enumerate(types, 1):
            rgb = colour(t.mean, view.scale)
            style = f"background:{hex_colour(rgb)};color:{text_colour(rgb)};padding:0 0.2em"
            # an inline block no wider than 20em: a long type wraps inside it
            style += f";display:inline-block;max-width:20em;{_BOX}"
            out.append(
                f'<tr><td style="text-align:right">{rank}</td>'
                f'<td style="{_BOX}"><span style="{style}">{html.escape(t.type)}</span></td>'
                f'<td style="text-align:right">{t.mean:.3f}</td>'
                f'<td style="text-align:right;color:#555">{t.count:,}</td></tr>'
            )
        return out

    head = (
        '<tr><th></th><th style="text-align:left">type</th><th style="text-align:right">mean'
        '</th><th style="text-align:right">n</th></tr>'
    )
    body = [head, *rows("highest mean", view.top), *rows("lowest mean", view.bottom)]
    return (
        '<table class="types" style="border-collapse:collapse;font-size:13px;flex:0 0 auto">'
        f'<caption style="caption-side:bottom;font-size:12px;color:#555;max-width:22em;'
        f'text-align:left">{html.escape(types_caption(view))}</caption>'
        + "".join(body)
        + "</table>"
    )


def view_html(view: NeuronView) -> str:
    """The view as an HTML fragment (a ``<figure>``, inline styles, no script), to embed
    in a page: the sentences as coloured ``<span>`` boxes whose ``title`` is the exact
    value, the colour legend, and the table of top and bottom word types.

    Examples
    --------
    >>> from queries.neuron import neuron_view
    >>> fragment = view_html(neuron_view(store, "toy/layer.0", 3, [0], top=0))
    >>> "<table" in fragment, fragment.count("title=")
    (False, 7)
    """
    paragraphs = []
    for s in view.sentences:
        spans = "".join(
            _span(w, v, view.scale, a)
            for w, v, a in zip(s.words, s.values, s.space_after, strict=True)
        )
        label = f"sentence {s.sentence_id}"
        if s.sent_id:
            label += f" (<bdi>{html.escape(s.sent_id)}</bdi>)"
        paragraphs.append(
            f'<p style="margin:0 0 0.6em 0"><small style="color:#555;display:block;{_BOX}">'
            f"{label}</small>"
            f"{spans}</p>"
        )
    gradient = ", ".join(hex_colour(tuple(c / 255 for c in rgb)) for _, rgb in STOPS)  # type: ignore[arg-type]
    legend = (
        f'<div class="legend" style="margin-top:0.8em;font-size:12px;color:#333">'
        f'<div style="display:flex;align-items:center;gap:0.5em"><span>-{view.scale:.3g}</span>'
        f'<span style="display:inline-block;width:12em;height:0.8em;'
        f'background:linear-gradient(to right, {gradient})"></span>'
        f"<span>+{view.scale:.3g}</span></div>{html.escape(legend_text(view))}</div>"
    )
    sentences = (
        f'<div class="sentences" style="flex:1 1 28em;min-width:0;line-height:2;'
        f'overflow-wrap:anywhere">{"".join(paragraphs)}'
        f"{legend}</div>"
    )
    table = _types_table(view) if view.top or view.bottom else ""
    return (
        f'<figure class="actstore-neuron" style="margin:1em 0;{_FONT}">'
        f'<figcaption style="font-weight:600;margin-bottom:0.5em">{html.escape(view.title)}'
        f'<br><small style="font-weight:400;color:#555">{html.escape(caption(view))}</small>'
        f"</figcaption>"
        f'<div style="display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start">'
        f"{sentences}{table}</div></figure>"
    )


def page_html(view: NeuronView) -> str:
    """A whole HTML document (UTF-8) around :func:`view_html`.

    Examples
    --------
    >>> from queries.neuron import neuron_view
    >>> page = page_html(neuron_view(store, "toy/layer.0", 3, [0], top=0))
    >>> '<html lang="en">' in page, '<meta charset="utf-8">' in page
    (True, True)
    """
    title = html.escape(f"{view.title} · actstore")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n</head>\n"
        f'<body style="margin:2em;max-width:70em">\n{view_html(view)}\n</body>\n</html>\n'
    )


def view_text(view: NeuronView, width: int = 100) -> str:
    """The view as text for a terminal: each sentence as words over their values, then
    the top and bottom types.

    Examples
    --------
    >>> from queries.neuron import neuron_view
    >>> print(view_text(neuron_view(store, "toy/layer.0", 3, [0], top=0)), end="")
    Unit 3 of toy/layer.0
    model toy · site toy/layer.0 (16 units) · sentence 0 · 1 shown
    colour: activation of unit 3, -1.4 (blue) to +1.4 (red), the largest |value| shown
    <BLANKLINE>
    sentence 0 (weblog-blogspot.com_nominations_20041117172713_ENG_20041117_172713-0001)
       From    the     AP   comes   this   story       :
      0.105  1.043  0.355  -1.208  1.320  -1.091  -1.401
    """
    lines = [view.title, caption(view), legend_text(view)]
    for s in view.sentences:
        lines += ["", f"sentence {s.sentence_id}" + (f" ({s.sent_id})" if s.sent_id else "")]
        words, values = "", ""
        for word, value in zip(s.words, s.values, strict=True):
            shown = f"{value:.3f}"
            cell = max(len(word), len(shown)) + 2
            if words and len(words) + cell > width:
                lines += [words.rstrip(), values.rstrip()]
                words, values = "", ""
            words += word.rjust(cell)
            values += shown.rjust(cell)
        lines += [words.rstrip(), values.rstrip()]
    if view.top or view.bottom:
        lines += ["", textwrap.fill(types_caption(view), width)]
        for label, types in (("highest mean", view.top), ("lowest mean", view.bottom)):
            size = max(len(label), *(len(t.type) for t in types))
            lines.append(f"  {label.ljust(size)}      mean        n")
            lines += [f"  {t.type.ljust(size)} {t.mean:9.3f} {t.count:8,}" for t in types]
    return "\n".join(lines) + "\n"


def view_format(path: Path, parameter: str = "output") -> str:
    """``html``, ``svg`` or ``png`` by the extension of ``path``, once the path is checked
    writable (not in a store, not a folder), so that a bad path fails before the work.

    Examples
    --------
    >>> view_format(Path("unit.HTM")), view_format(Path("unit.svg"))
    ('html', 'svg')
    >>> view_format(Path("unit.pdf"))
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: output unit.pdf: the extension chooses the format: ...
    """
    fmt = VIEW_FORMATS.get(path.suffix.lower())
    if fmt is None:
        valid = ".html or .htm (a page), .svg or .png (a figure)"
        raise ParameterError(parameter, f"{path}: the extension chooses the format: {valid}")
    check_output_path(path, parameter)
    return fmt


def write_view(view: NeuronView, path: Path) -> None:
    """Write the view by the extension of ``path``: ``.html``/``.htm`` a page
    (:func:`page_html`), ``.svg``/``.png`` a figure (:func:`queries.neuron_figure.view_figure`).
    """
    path = Path(path)
    if view_format(path) == "html":
        path.parent.mkdir(parents=True, exist_ok=True)
        emit(page_html(view), path)
        return
    from queries.neuron_figure import view_figure
    from queries.plots import save

    save(view_figure(view), path)
