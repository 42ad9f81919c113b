"""Choosing what an analysis reads: sites by glob."""

from __future__ import annotations

import fnmatch

import actstore
from actstore.errors import SiteNotFoundError


def resolve_sites(store: actstore.Store, pattern: str) -> list[str]:
    """Complete sites whose name matches a glob (comma-separated globs allowed), sorted
    naturally (``layer.2`` before ``layer.10``)."""
    complete = [name for name, site in store.sites.items() if site.status == "complete"]
    globs = [p.strip() for p in pattern.split(",") if p.strip()]
    chosen = [n for n in complete if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if not chosen:
        raise SiteNotFoundError(
            f"no complete site matches {pattern!r}; sites: {', '.join(sorted(complete)) or 'none'}"
        )
    return sorted(chosen, key=_natural)


def _natural(name: str) -> list[object]:
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
