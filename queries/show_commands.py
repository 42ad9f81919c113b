"""What ``actstore show`` does (declared in :mod:`queries.show_verbs`): build the
neuron view of one unit and write it (HTML page, SVG, PNG) or print it as text.

Examples
--------
>>> store.close()  # the verb opens the store itself
>>> view = show(ShowParams(store_path, "toy/layer.0", 2), ShowOptions("3,0", output=tmp / "u.svg"))
>>> [s.sentence_id for s in view.sentences], (tmp / "u.svg").read_text()[:5]
([3, 0], '<?xml')
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

import actstore
from actstore.errors import ParameterError
from queries.neuron import NeuronView, neuron_view
from queries.neuron_render import view_format, view_text, write_view
from queries.show_verbs import ShowOptions, ShowParams

_IDS = re.compile(r"\s*[-+]?\d+\s*(,\s*[-+]?\d+\s*)*,?\s*")


def parse_sentences(text: str | None) -> str | Sequence[int] | None:
    """``--sentences`` as sentence ids when it is comma-separated integers, else the SQL
    condition it is (None: the first sentences). Negative ids are refused, not read as SQL.

    Examples
    --------
    >>> parse_sentences("3, 17,42"), parse_sentences("n_words > 5"), parse_sentences(" ")
    ([3, 17, 42], 'n_words > 5', None)
    >>> parse_sentences("4, -1")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: sentences has a negative id, -1: sentence ids run from 0
    """
    if text is None or not text.strip():
        return None
    if _IDS.fullmatch(text):
        ids = [int(v) for v in text.split(",") if v.strip()]
        negative = [i for i in ids if i < 0]
        if negative:
            many = "negative ids" if len(negative) > 1 else "a negative id"
            shown = ", ".join(map(str, negative))
            raise ParameterError("sentences", f"has {many}, {shown}: sentence ids run from 0")
        return ids
    return text


def show(chosen: ShowParams, options: ShowOptions) -> NeuronView:
    """``actstore show``: the view, written to ``--output`` (said on stderr) or printed as
    text; returns it."""
    if options.output is not None:
        view_format(options.output)  # a bad extension or path fails before the work
    with actstore.open(chosen.store) as store:
        view = neuron_view(
            store, chosen.site, chosen.unit, parse_sentences(options.sentences),
            limit=options.limit, top=options.top, by=options.by, min_count=options.min_count,
        )  # fmt: skip
    if options.output is None:
        sys.stdout.write(view_text(view))
    else:
        write_view(view, options.output)
        n = len(view.sentences)
        sys.stderr.write(
            f"wrote unit {view.unit} of {view.site} over {n} sentence{'s' * (n != 1)} "
            f"to {options.output}\n"
        )
    return view
