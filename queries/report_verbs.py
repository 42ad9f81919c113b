"""The verb ``actstore report``: one HTML page of a store.

Light, like :mod:`queries.verbs` (standard library and ``actstore.verbs``); the work is
in :mod:`queries.report_commands`, imported when the verb runs.

Examples
--------
>>> params = REPORT.build(store=Path("s.actstore"), output=Path("r.html"), neurons="m/layer.1:7")
>>> params[0].output, params[0].neuron_pairs()
(PosixPath('r.html'), [('m/layer.1', 7)])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from actstore.errors import ParameterError
from actstore.verbs import StoreLocation, Verb, option


@dataclass(frozen=True)
class ReportParams:
    """The store, the page, and what goes in it."""

    store: StoreLocation = option(positional=True, help="store directory or URL (s3://...)")
    output: Path = option(
        Path("report.html"), short="-o", metavar="FILE.html", help="the page to write"
    )
    open: bool = option(False, help="open the page in the default browser once written")
    verify: bool = option(
        True, flag="--no-verify", help="skip checking every chunk against its checksum "
        "(for a store too large to read through)"
    )  # fmt: skip
    neurons: str | None = option(
        None, metavar="SITE:UNIT,...", help="units drawn as neuron views (default: the unit "
        "most correlated with its covariate in each saved correlation result)"
    )  # fmt: skip
    sentences: str | None = option(
        None, metavar="SQL", help="SQL over the sentences table choosing the sentences of "
        "the neuron views (default: n_words BETWEEN 8 AND 25)"
    )  # fmt: skip
    top_rows: int = option(20, metavar="N", help="rows of each result shown in the page")

    def neuron_pairs(self) -> list[tuple[str, int]] | None:
        """``--neurons`` as (site, unit) pairs (None: not given)."""
        if self.neurons is None:
            return None
        pairs = []
        for item in self.neurons.split(","):
            site, colon, unit = item.strip().rpartition(":")
            if not colon or not site or not unit.isdigit():
                raise ParameterError("neurons", f"expected SITE:UNIT (e.g. minilm/layer.3:17), "
                                     f"got {item.strip()!r}")  # fmt: skip
            pairs.append((site, int(unit)))
        return pairs


REPORT = Verb(
    "report",
    "one self-contained HTML page of a store: corpus, sites, every saved result with its "
    "table and figure, neuron views, warnings",
    "actstore report runs/demo.actstore -o runs/report.html --open",
    (ReportParams,),
    "queries.report_commands:report",
)
