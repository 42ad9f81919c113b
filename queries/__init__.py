"""Queries: analyses over stored sites (probes, correlations, dynamics, selectivity ...).

Every analysis runs on one engine (:mod:`queries.engine`): a ``Selection`` of sites
and rows (SQL over the annotations) cut into blocks, and a deterministic map-reduce
over the lazy arrays of ``Store.acts``. Results are typed tidy tables with provenance
(:mod:`queries.results`), saved with ``Store.write_result``. The verbs of the command
line are declared in :mod:`queries.verbs`.
"""
