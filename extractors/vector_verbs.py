"""The ``types`` verb, declared light (standard library and ``actstore.verbs`` only).

``actstore types STORE --sites "minilm/layer.*" --by form --min-count 5`` writes the
mean activation per word type of each token site as a site over the ``words`` table
(:mod:`extractors.typemeans`, imported when the verb runs).

Examples
--------
>>> TYPES.build(store="ewt.actstore", sites="minilm/layer.3")[0].min_count
5
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from actstore.verbs import Verb, option


@dataclass(frozen=True)
class TypesParams:
    """What ``actstore types`` takes; see ``docs/EXTRACTION.md`` (Static vectors)."""

    store: Path = option(positional=True, help="store directory with token sites")
    sites: str = option(help="comma-separated globs of token sites, e.g. 'minilm/layer.*'")
    by: Literal["form", "lemma"] = option("form", help="a word type is a form or a lemma")
    min_count: int = option(5, help="types seen fewer times (in the site's rows) get no row")
    lowercase: bool = option(True, flag="--cased", help="keep case (default: lower-case)")
    name: str | None = option(
        None, help="model name of the sites written (default: <model>-types, <model>-lemmas, "
        "+ '-cased')"
    )  # fmt: skip
    dtype: Literal["float16", "bfloat16", "float32"] = option("float32", help="stored dtype")
    overwrite: bool = option(False, help="replace sites written with other settings")
    quiet: bool = option(False, short="-q", help="print no summary line")


TYPES = Verb(
    "types",
    "mean activation per word type of token sites, as sites over the words table",
    'actstore types ewt.actstore --sites "minilm/layer.*" --by form --min-count 5',
    (TypesParams,),
    "extractors.typemeans:types_command",
)
