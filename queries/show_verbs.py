"""The verb ``actstore show``: one unit's activations over chosen sentences as
heat-coloured text, with the unit's top and bottom word types (a neuron view).

Light, like :mod:`queries.verbs` (standard library, ``actstore.verbs`` and
``actstore.output``); the work is in :mod:`queries.show_commands`, imported when the
verb runs.

Examples
--------
>>> SHOW.build(store="ewt.actstore", site="minilm/layer.3", unit=5)[1].limit
10
>>> SHOW.build(store="s", site="m/l", unit=0, sentences="3, 7")[1].sentences
'3, 7'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from actstore.errors import ParameterError
from actstore.verbs import StoreLocation, Verb, option


@dataclass(frozen=True)
class ShowParams:
    """The store, the site and the unit to show."""

    store: StoreLocation = option(positional=True, help="store directory or URL (s3://...)")
    site: str = option(help="a complete site over tokens (a name, or a glob matching one site)")
    unit: int = option(help="the unit, 0 .. n_units - 1")


@dataclass(frozen=True)
class ShowOptions:
    """Which sentences, how many types, and where the view goes."""

    sentences: str | None = option(
        None, metavar="SQL|IDS", help="the sentences shown: comma-separated integers are "
        "sentence ids (shown in that order, e.g. 3,17,42); anything else is an SQL condition "
        "over the sentences table (e.g. \"sent_id LIKE 'weblog%%'\" or \"n_words BETWEEN 8 AND "
        "20\"), of which the first --limit in sentence order are shown (default: the first "
        "sentences)"
    )  # fmt: skip
    limit: int = option(10, help="sentences shown at most")
    top: int = option(10, help="word types of highest and of lowest mean (0: none, quicker)")
    by: Literal["form", "lemma"] = option("form", help="what makes a word type (lower-cased)")
    min_count: int = option(5, help="rank only types seen at least this often")
    output: Path | None = option(
        None, short="-o", metavar="FILE", help="write the view: FILE.html or .htm (a page), "
        ".svg or .png (a figure); without it the view is printed as text"
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name, least in (("limit", 1), ("top", 0), ("min_count", 1)):
            if getattr(self, name) < least:
                raise ParameterError(name, f"must be at least {least}, got {getattr(self, name)}")


SHOW = Verb(
    "show",
    "draw one unit's activations over chosen sentences as heat-coloured text, with its top "
    "word types (HTML page, SVG or PNG; text without -o)",
    "actstore show ewt.actstore --site minilm/layer.3 --unit 5 "
    "--sentences \"sent_id LIKE 'weblog%'\" -o unit5.html",
    (ShowParams, ShowOptions),
    "queries.show_commands:show",
)
