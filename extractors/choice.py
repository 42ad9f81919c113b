"""Which sites a ``--sites`` pattern chooses from a model's word and sentence sites,
and one report for the runs that wrote them (one driver run per table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actstore.errors import ParameterError, SiteNotFoundError
from actstore.names import match_names
from extractors import hooks
from extractors.driver import ExtractReport

if TYPE_CHECKING:
    from extractors.transformer import TransformerExtractor

# what ``sites="*"`` (the default) stands for: the sites a bare extraction always wrote
DEFAULT_SITES = "layer.*"


@dataclass
class CombinedReport(ExtractReport):
    """The reports of runs over several tables (word sites, then sentence sites): the
    sites, rows, chunks and seconds of all of them; a summary line for each.

    Examples
    --------
    >>> a = ExtractReport(["m/layer.0"], 698, 1, 1.0, "cpu")
    >>> b = ExtractReport(["m/sentence.cls.layer.0"], 30, 1, 0.5, "cpu")
    >>> print(combine([a, b]).summary())
    extracted 1 sites (m/layer.0 .. m/layer.0) over 698 rows, 1 chunks on cpu in 1.0 s
    extracted 1 sites (m/sentence.cls.layer.0 .. m/sentence.cls.layer.0) over 30 rows, ...
    """

    parts: list[ExtractReport] = field(default_factory=list)

    def summary(self) -> str:
        """One line per run."""
        return "\n".join(part.summary() for part in self.parts)


def combine(reports: Sequence[ExtractReport]) -> ExtractReport:
    """One report for runs over several tables (the only one if there is one)."""
    if len(reports) == 1:
        return reports[0]
    return CombinedReport(
        sites=[name for r in reports for name in r.sites],
        rows=sum(r.rows for r in reports),
        chunks_done=sum(r.chunks_done for r in reports),
        seconds=sum(r.seconds for r in reports),
        device=reports[0].device,
        stats=dict(reports[0].stats),
        nothing_to_do=all(r.nothing_to_do for r in reports),
        parts=list(reports),
    )


def choose(extractors: Sequence[TransformerExtractor], pattern: str) -> list[list[str]]:
    """The site names ``pattern`` chooses from each extractor's sites (its table's).

    ``pattern`` holds comma-separated globs over names or components, as everywhere;
    a glob ``*`` on its own stands for ``layer.*`` (the default: the sites a bare
    extraction has always written), and only globs containing ``sentence`` choose
    sentence sites (so ``*mlp_out`` means the word sites).

    Examples
    --------
    >>> from extractors.base import SiteSpec
    >>> class Sites:
    ...     def __init__(self, *names):
    ...         self.names = names
    ...     def sites(self):
    ...         return [SiteSpec(n, 4) for n in self.names]
    >>> words = Sites("m/layer.0", "m/blocks.0.mlp_out")
    >>> sentences = Sites("m/sentence.cls.layer.0", "m/sentence.cls.blocks.0.mlp_out")
    >>> choose([words, sentences], "*")
    [['m/layer.0'], []]
    >>> choose([words, sentences], "*mlp_out,sentence.*.layer.0")
    [['m/blocks.0.mlp_out'], ['m/sentence.cls.layer.0']]
    """
    globs = [DEFAULT_SITES if g.strip() == "*" else g.strip() for g in pattern.split(",")]
    chosen = []
    for k, extractor in enumerate(extractors):
        mine = [g for g in globs if g and (k == 0 or "sentence" in g)]
        names = [s.name for s in extractor.sites()]
        try:
            chosen.append(match_names(names, ",".join(mine)) if mine else [])
        except SiteNotFoundError:
            chosen.append([])
    if not any(chosen):
        raise ParameterError("sites", f"{pattern!r} matches none of {describe_sites(extractors)}")
    return chosen


def describe_sites(extractors: Sequence[TransformerExtractor]) -> str:
    """The site names the extractors offer, in short.

    Examples
    --------
    >>> describe_sites([TransformerExtractor(ExtractOptions())])  # doctest: +SKIP
    'minilm/layer.0 .. minilm/layer.6, minilm/blocks.{0..5}.{resid_pre,attn_out,...}'
    """
    words = extractors[0]
    model = words.model_name
    n_layers = sum(name.startswith("layer.") for name in words.components)
    parts = [f"{model}/layer.0 .. {model}/layer.{n_layers - 1}"]
    if len(words.components) > n_layers:
        parts.append(f"{model}/blocks.{{0..{n_layers - 2}}}.{{{','.join(hooks.BLOCK_COMPONENTS)}}}")
    for extractor in extractors[1:]:
        pools = ",".join(dict.fromkeys(s.component.split(".")[1] for s in extractor.sites()))
        parts.append(f"{model}/sentence.{{{pools}}}.<any of those>")
    return ", ".join(parts)
