"""A toy extractor, written against the base alone, passes the shipped contract."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import actstore
from extractors.base import Block, Extractor, SiteSpec
from extractors.driver import run
from extractors.testing import ExtractorContract, clone, site_bytes
from extractors.verbs import ExtractOptions


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

    def test_where_computes_only_its_sentences(
        self, extracted: Path, template: Path, tmp_path: Path
    ) -> None:
        path = clone(template, tmp_path / "where")
        where = "sentence_id BETWEEN 40 AND 59 AND upos = 'VERB'"
        with actstore.open(path) as store:
            spans = store.sql(
                "SELECT min(row) AS lo, max(row) + 1 AS hi FROM tokens WHERE sentence_id IN "
                f"(SELECT sentence_id FROM tokens WHERE {where}) GROUP BY sentence_id ORDER BY lo"
            )
            n = store.n_rows()
        wanted = sum(spans.hi - spans.lo)
        report = self.run(path, where=where)
        assert report.rows == wanted < n
        with actstore.open(path) as store:
            site = store.site("toy/proj")
            assert site.n_covered == wanted and site.status == "complete"
            inside = store.rows(where)
            outside = np.array([int(spans.lo.iloc[0]) - 1])
            with pytest.raises(actstore.SiteError, match="run actstore extract to extend it"):
                store.acts("toy/proj", outside)
            values = store.acts("toy/proj", inside).values
        with actstore.open(extracted) as store:
            np.testing.assert_array_equal(values, store.acts("toy/proj", inside).values)
        self.run(path)  # every row now
        assert site_bytes(path) == site_bytes(extracted)
        assert self.run(path).summary().startswith("nothing to do: 1 sites (toy/proj")

    def test_name_keeps_sites_of_other_settings_apart(self, template: Path, tmp_path: Path) -> None:
        path = clone(template, tmp_path / "named")
        self.run(path)
        self.run(path, name="toy-b", dtype="float32")
        with actstore.open(path) as store:
            assert sorted(store.sites) == ["toy-b/proj", "toy/proj"]
            assert store.site("toy-b/proj").dtype == "float32"
        with pytest.raises(actstore.SiteError, match=r"other settings \(dtype: float16 → float32"):
            self.run(path, dtype="float32")


class TwoWidths(HashedForms):
    """HashedForms beside a wider site: the wider picks the chunking of new sites."""

    def sites(self) -> list[SiteSpec]:
        return [*super().sites(), SiteSpec("toy/wide", n_units=64)]

    def compute(self, batch: tuple[int, int]) -> Block:
        block = super().compute(batch)
        narrow = block.values[0]
        return Block(block.rows, [narrow, np.tile(narrow, (1, 8))])


def test_old_and_new_sites_extracted_together_keep_the_old_chunking(
    tmp_path: Path, ewt_dev: Path
) -> None:
    path = tmp_path / "g.actstore"
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [ewt_dev], sentences=(0, 400))
    run(path, HashedForms(), ExtractOptions(device="cpu"))
    with actstore.open(path, mode="a") as store:
        actstore.ingest_conllu(store, [ewt_dev], sentences=(400, 1500))
        chunk_rows = store.site("toy/proj").chunk_rows
    run(path, TwoWidths(), ExtractOptions(device="cpu"))
    with actstore.open(path) as store:
        assert {s.chunk_rows for s in store.sites.values()} == {chunk_rows}
        assert {s.n_covered for s in store.sites.values()} == {store.n_rows()}
