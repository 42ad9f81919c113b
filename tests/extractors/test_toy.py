"""A toy extractor, written against the base alone, passes the shipped contract."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import actstore
from extractors.base import Block, Extractor, SiteSpec
from extractors.testing import ExtractorContract


class HashedForms(Extractor):
    """A fixed seeded random projection of one-hot hashed word forms (1024 buckets)."""

    name = "hashed-forms"
    row_unit = "words"

    def sites(self) -> list[SiteSpec]:
        return [SiteSpec("toy/proj", n_units=8, provenance={"seed": 0, "buckets": 1024})]

    def prepare(self, store: actstore.Store, sites: Any, device: Any) -> None:
        forms = store.columns(["form"]).column("form").to_pylist()
        self.ids = np.array([zlib.crc32(f.encode()) % 1024 for f in forms])
        self.projection = np.random.default_rng(0).standard_normal((1024, 8), np.float32)

    def compute(self, batch: tuple[int, int]) -> Block:
        lo, hi = batch
        return Block(np.arange(lo, hi), [self.projection[self.ids[lo:hi]]])


class TestHashedFormsContract(ExtractorContract):
    def make_extractor(self) -> Extractor:
        return HashedForms()

    @pytest.fixture(scope="class")
    @classmethod
    def template(cls, ewt_small: Path) -> Path:
        return ewt_small
