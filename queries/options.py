"""The parameters of the analyses, declared once for the library and the command line.

Each class is a frozen dataclass whose :func:`~actstore.verbs.option` fields are the
flags of its verb (``actstore probe --target upos``) and the keyword arguments of the
Python call (``verb("probe")(target="upos")``); the library functions take the same
objects or default to the same values. Light: standard library and ``actstore.verbs``
only, so ``actstore --help`` imports nothing heavy.

Examples
--------
>>> ProbeOptions("upos", offsets="-1,0,1,0").offsets
(-1, 0, 1)
>>> ProbeOptions("upos", offsets="0,x")
Traceback (most recent call last):
...
actstore.errors.ParameterError: offsets takes comma-separated integers ...; got '0,x'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from actstore.errors import ParameterError
from actstore.verbs import StoreLocation, option

_WHERE = "SQL condition selecting tokens"
MAX_OFFSET = 100  # longer than any sentence a probe would sensibly look across


@dataclass(frozen=True)
class SitesParam:
    """The store and the sites an analysis runs on, by glob."""

    store: StoreLocation = option(positional=True, help="store directory or URL (s3://...)")
    sites: str = option(help="glob(s) over site names, comma-separated")


def parse_offsets(offsets: str | tuple[int, ...]) -> tuple[int, ...]:
    """Word offsets from text (``"-2,-1,0"``) or integers, without repeats.

    Examples
    --------
    >>> parse_offsets("-2, -1,0,-1")
    (-2, -1, 0)
    """
    offsets = _integers("offsets", offsets, "comma-separated integers such as -2,-1,0,1,2")
    if not offsets:
        raise ParameterError("offsets", "names no offset")
    return tuple(dict.fromkeys(offsets))


def _integers(name: str, values: str | tuple[int, ...], expected: str) -> tuple[int, ...]:
    """Integers from comma-separated text or a sequence; the error names ``name``."""
    if not isinstance(values, str):
        return tuple(int(v) for v in values)
    try:
        return tuple(int(v) for v in values.split(",") if v.strip())
    except ValueError:
        raise ParameterError(name, f"takes {expected}; got {values!r}") from None


@dataclass(frozen=True)
class ProbeOptions:
    """What a probe decodes and how it trains. ``target`` is any column of ``tokens``.

    The fields without a flag are the training schedule's finer settings.
    """

    target: str | None = option(None, help="token column: upos, deprel, Gender ...")
    where: str | None = option(None, help=_WHERE)
    offsets: tuple[int, ...] = option(
        (0,), metavar="K,K,...", help="decode word w+k from w, e.g. -2,-1,0,1,2"
    )
    control: bool = option(False, help="also run the control task")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")
    seed: int = option(0, help="seeds the split, batches and control")
    epochs: float = option(10.0, help="passes over the training words, at most")
    patience: int = option(
        3, help="stop after this many epochs without improvement on held-out training "
        "words (0: no early stopping, train all epochs)"
    )  # fmt: skip
    max_steps: int = option(20_000, help="Adam steps, at most")
    kind: Literal["auto", "classify", "regress"] = option(
        "auto", help="classify (softmax) or regress (ridge; R2, Spearman); auto: regress a "
        "numeric target (depth, position, head_distance, sentence_length ...)"
    )  # fmt: skip
    scoring: Literal["feature", "raw"] = option(
        "feature", help="feature: words carrying the feature are predicted among its real "
        "values; raw: an N/A prediction counts as wrong (the LSTM probing paper)"
    )  # fmt: skip
    per_class: bool = option(False, help="also report the accuracy of every class")
    l1: float = option(
        0.0, help="L1 penalty on the standardised weights (with the L2: an elastic net), "
        "for a sparse probe whose weight sits on few units"
    )  # fmt: skip
    top_units: tuple[int, ...] = option(
        (), metavar="K,K,...", help="also train on the K units of most weight mass only and "
        "report their accuracy, e.g. 1,5,10,50"
    )  # fmt: skip
    apply: str | None = option(
        None, help="label the selected words with this saved probe (from --save NAME: "
        "NAME_weights) instead of training one"
    )  # fmt: skip
    apply_store: StoreLocation | None = option(
        None, help="the store holding the --apply probe (default: this store)"
    )
    folds: int = option(
        0, help="cross-validate over this many folds of whole sentences (0: one split)"
    )
    test_where: str | None = option(
        None, help="SQL condition choosing the test words (default: a random tenth of the "
        "sentences), e.g. \"split = 'test'\""
    )  # fmt: skip
    memory_gib: float = option(
        1.0,
        help="read the training words into memory once if they fit in this many GiB "
        "(else stream them from the store every epoch)",
    )
    control_type: str = "form"
    test_fraction: float = 0.1
    min_steps: int = 0
    batch_size: int = 512
    learning_rate: float = 0.01
    alpha: float = 1e-4

    def __post_init__(self) -> None:
        object.__setattr__(self, "offsets", parse_offsets(self.offsets))
        if self.target is None and self.apply is None:
            raise ParameterError("target", "is needed (the token column to probe)")
        if not 0 < self.test_fraction < 1:
            raise ParameterError(
                "test_fraction", f"must lie between 0 and 1, got {self.test_fraction}"
            )
        far = [k for k in self.offsets if abs(k) > MAX_OFFSET]
        if far:
            raise ParameterError("offsets", f"must lie within ±{MAX_OFFSET} words, got {far[0]}")
        for name in ("epochs", "learning_rate"):
            _positive(name, getattr(self, name))
        _at_least("batch_size", self.batch_size, 1)
        _at_least("min_steps", self.min_steps, 0)
        _at_least("max_steps", self.max_steps, 1)
        _at_least("patience", self.patience, 0)
        if self.folds == 1 or self.folds < 0:
            raise ParameterError("folds", f"must be 0 (one split) or at least 2, got {self.folds}")
        if self.folds and self.test_where:
            raise ParameterError("folds", "cannot be combined with test_where (a fixed split)")
        if self.kind not in ("auto", "classify", "regress"):
            raise ParameterError("kind", f"must be auto, classify or regress, got {self.kind!r}")
        if self.scoring not in ("feature", "raw"):
            raise ParameterError("scoring", f"must be 'feature' or 'raw', got {self.scoring!r}")
        object.__setattr__(self, "top_units", _counts(self.top_units))
        for name in ("alpha", "memory_gib", "l1"):  # 0 is allowed: no penalty, always stream
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ParameterError(name, f"must be a finite number >= 0, got {value}")


@dataclass(frozen=True)
class CorrelateOptions:
    """Which token column the units are correlated with, and what is shown."""

    covariate: str = option(flag="--with", help="numeric tokens column")
    where: str | None = option(None, help=_WHERE)
    top: int = option(5, help="units per site and metric (0 = all)")
    spearman: bool = option(True, flag="--no-spearman", help="Pearson only (one pass)")

    def __post_init__(self) -> None:
        _at_least("top", self.top, 0)


@dataclass(frozen=True)
class DynamicsOptions:
    """Sentence dynamics: the column followed through each sentence."""

    covariate: str = option("depth", flag="--with", help="numeric tokens column")
    where: str | None = option(None, help=_WHERE)
    min_words: int = option(3, help="skip shorter sentences")

    def __post_init__(self) -> None:
        _at_least("min_words", self.min_words, 2)


@dataclass(frozen=True)
class MeasuresOptions:
    """dred (and zmean, keep) of a site per token, reported by category."""

    gate_site: str | None = option(
        None,
        help="site (or glob matching one) of the update gates (declares "
        "gate_convention; default: the one a GRU's hidden-state site names)",
    )
    name: str = option("measures", help="results table for the per-token values (with --save)")
    by: tuple[str, ...] = option(("upos", "deprel"), help="token columns to report by")
    min_count: int = option(500, help="smallest category reported")
    where: str | None = option(None, help="SQL condition selecting the tokens reported")

    def __post_init__(self) -> None:
        _at_least("min_count", self.min_count, 1)
        if not self.by:
            raise ParameterError("by", "names no token column")


@dataclass(frozen=True)
class SelectivityOptions:
    """Mean activation per word type: which types, units and lexical map."""

    by: str = option("form", help="token column defining word types")
    where: str | None = option(None, help=_WHERE)
    min_count: int = option(5, help="leave out rarer types")
    top: int = option(10, help="types per unit and direction")
    units: str | None = option(
        None, help="comma-separated units to report, or 'all' (default: 5 most selective)"
    )
    map_site: str | None = option(
        None,
        help="site whose type means place words on the lexical map (default: the site of "
        "the same model at hidden state 0, else --sites)",
    )
    function_words: bool = option(
        False, help="keep function words (closed-class UPOS) and punctuation on the lexical map"
    )

    def __post_init__(self) -> None:
        _at_least("min_count", self.min_count, 1)
        _at_least("top", self.top, 0)


def _counts(values: str | tuple[int, ...]) -> tuple[int, ...]:
    """Positive unit counts from text (``"1,5,10"``) or integers, sorted, without repeats."""
    counts = _integers("top_units", values, "comma-separated counts such as 1,5,10,50")
    if any(v < 1 for v in counts):
        raise ParameterError("top_units", f"counts must be at least 1, got {list(counts)}")
    return tuple(sorted(set(counts)))


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ParameterError(name, f"must be at least {low}, got {value}")


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(name, f"must be a finite number > 0, got {value}")
