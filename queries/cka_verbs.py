"""The ``actstore cka`` verb: linear CKA between sites (declared here, light: standard
library, ``actstore.verbs``/``output`` and :mod:`queries.options`; the work is in
:mod:`queries.cka_commands`, imported only when the verb runs).

Examples
--------
>>> CKA.build(store="ewt.actstore", sites="minilm/layer.*", debiased=True)[1]
CKAOptions(against=None, where=None, debiased=True)
"""

from __future__ import annotations

from dataclasses import dataclass

from actstore.output import Keep, Output
from actstore.verbs import Verb, option
from queries.options import SitesParam


@dataclass(frozen=True)
class CKAOptions:
    """Which sites ``--sites`` is compared with, over which rows, and which estimator."""

    against: str | None = option(
        None, metavar="GLOB", help="compare --sites with these sites (default: --sites "
        "with each other, site x site)"
    )  # fmt: skip
    where: str | None = option(None, help="SQL condition selecting rows of the sites' table")
    debiased: bool = option(
        False, help="debiased CKA (the unbiased HSIC estimator; streams like the plain one)"
    )


CKA = Verb(
    "cka",
    "linear CKA between sites over the same rows (site x site), from one streaming pass",
    'actstore cka ewt.actstore --sites "minilm/layer.*" --plot cka.png',
    (SitesParam, CKAOptions, Output, Keep),
    "queries.cka_commands:cka",
)
