"""Extractors: run models over a store's corpus and write token-aligned sites.

They use only the public ``actstore`` API (``Store.create_site`` and its
``SiteWriter``); see ``docs/FORMAT.md`` for the writer contract.
"""
