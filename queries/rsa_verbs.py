"""The ``actstore rsa`` verb: representational similarity between sites.

Declared here and registered as an entry point (``rsa = "queries.rsa_verbs:RSA"``);
light (standard library, ``actstore.verbs``/``output`` and :mod:`queries.options`), the work is in
:mod:`queries.rsa_commands`, imported when the verb runs.

Examples
--------
>>> options = RSA.build(store="ewt.actstore", sites="minilm/*", against="glove/vectors")[1]
>>> options.by, options.against_by, options.method
('lemma', None, 'spearman')
>>> RSAOptions(permutations=-1)
Traceback (most recent call last):
...
actstore.errors.ParameterError: permutations must be at least 0, got -1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from actstore.errors import ParameterError
from actstore.output import Keep, Output
from actstore.verbs import Verb, option
from queries.options import SitesParam

Test = Literal["rsa", "2v2", "1v2"]
Metric = Literal["correlation", "cosine", "euclidean", "sqeuclidean"]
Method = Literal["spearman", "pearson", "kendall"]


@dataclass(frozen=True)
class RSAOptions:
    """Conditions, dissimilarity, comparison and inference of an RSA (or of the 2 vs 2
    and 1 vs 2 tests)."""

    test: Test = option(
        "rsa", help="rsa: RDMs compared; 2v2: the 2 vs 2 test between --sites and --against "
        "over their shared conditions; 1v2: misclassified images (--sites: an image site "
        "with its predictions table) against word vectors (--against)"
    )  # fmt: skip
    against: str | None = option(
        None, help="site glob(s) to compare with (default: every site against every site)"
    )
    by: str = option("lemma", help="column or SQL expression of the sites' table: the conditions")
    against_by: str | None = option(
        None, help="conditions of the --against sites (default: --by), e.g. word for glove/vectors"
    )
    where: str | None = option(None, help="SQL condition selecting rows of the sites' table")
    against_where: str | None = option(
        None, help="SQL condition for the --against sites (default: --where if same table)"
    )
    min_count: int = option(20, help="leave out conditions with fewer rows")
    against_min_count: int | None = option(
        None, help="the same for the --against sites (default: --min-count if same table, else 1)"
    )
    metric: Metric = option("correlation", help="dissimilarity of condition vectors")
    method: Method = option("spearman", help="comparison of RDMs (kendall: tau-a)")
    permutations: int = option(1000, help="permutations of conditions for p (0: none)")
    bootstrap: int = option(0, help="bootstrap samples of conditions for a 95 percent CI (0: none)")
    seed: int = option(0, help="seeds the permutations and the bootstrap")

    def __post_init__(self) -> None:
        for name in ("permutations", "bootstrap"):
            if getattr(self, name) < 0:
                raise ParameterError(name, f"must be at least 0, got {getattr(self, name)}")
        for name in ("min_count", "against_min_count"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ParameterError(name, f"must be at least 1, got {value}")


RSA = Verb(
    "rsa",
    "representational similarity: RDMs of condition means (e.g. per lemma) compared "
    "between sites (Spearman, Pearson, Kendall tau-a) with permutation p-values",
    'actstore rsa ewt.actstore --sites "minilm/layer.*" --against glove/vectors '
    '--by "lower(form)" --against-by word --plot profile.png',
    (SitesParam, RSAOptions, Output, Keep),
    "queries.rsa_commands:rsa",
)
