"""The analysis verbs of ``actstore``: probe, correlate, dynamics, measures, selectivity.

Declared here and registered as entry points (``[project.entry-points."actstore.verbs"]``);
this module is light (standard library, ``actstore.verbs``/``output`` and
:mod:`queries.options`), and a verb's work, in :mod:`queries.commands`, is imported only
when it runs. Each prints a tidy table (``--format table|csv|json``, ``-o FILE``), can
store it in the store's results (``--save NAME``, then ``actstore sql STORE "SELECT ...
FROM NAME"``) and draw it (``--plot FILE.png``); from Python a verb returns the full table.

Examples
--------
>>> PROBE.build(store="ewt.actstore", sites="minilm/*", target="upos")[1].offsets
(0,)
>>> CORRELATE.build(store="ewt.actstore", sites="*", covariate="depth")[1].spearman
True
"""

from __future__ import annotations

from actstore.output import Keep, Output
from actstore.verbs import Verb
from queries.options import (
    CorrelateOptions,
    DynamicsOptions,
    MeasuresOptions,
    ProbeOptions,
    SelectivityOptions,
    SitesParam,
)

PROBE = Verb(
    "probe",
    "train softmax probes that decode a token column from sites (accuracy, macro-F1, "
    "majority baseline, control task)",
    'actstore probe ewt.actstore --sites "minilm/layer.*" --target upos --control',
    (SitesParam, ProbeOptions, Output, Keep),
    "queries.commands:probe",
)
CORRELATE = Verb(
    "correlate",
    "correlate every unit of some sites with a token column (Pearson, exact Spearman)",
    'actstore correlate ewt.actstore --sites "minilm/layer.*" --with depth --top 5',
    (SitesParam, CorrelateOptions, Output, Keep),
    "queries.commands:correlate",
)
DYNAMICS = Verb(
    "dynamics",
    "per sentence, correlate the mean activation with word depth; average per site and language",
    'actstore dynamics ewt.actstore --sites "minilm/layer.*" --with depth',
    (SitesParam, DynamicsOptions, Output, Keep),
    "queries.commands:dynamics",
)
MEASURES = Verb(
    "measures",
    "distance reduction (dred) of a site, and zmean/keep of a GRU update-gate site, per "
    "token, reported by category (--save stores both)",
    "actstore measures ewt.actstore --sites gru/layer.0.h --gate-site gru/layer.0.gate_z",
    (SitesParam, MeasuresOptions, Output, Keep),
    "queries.commands:measures",
)
SELECTIVITY = Verb(
    "selectivity",
    "mean activation of units per word type: top and bottom types, lexical map",
    "actstore selectivity ewt.actstore --sites minilm/layer.1 --by lemma --plot map.png",
    (SitesParam, SelectivityOptions, Output, Keep),
    "queries.commands:selectivity",
)
