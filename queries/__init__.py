"""Queries: analyses over stored sites (probes, correlations, RSA, CKA ...).

They select rows with ``Store.rows`` (SQL over annotations) and stream the lazy
arrays from ``Store.acts``; results are tidy tables saved with ``Store.append_table``.
"""
