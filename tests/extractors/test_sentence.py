"""Sentence-level sites (``sentence.mean.layer.6`` ...) against the word sites and direct
Hugging Face forwards of MiniLM-L6, and the extractor contract for them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import actstore
from extractors.base import Extractor
from extractors.choice import CombinedReport
from extractors.sentence import SentenceExtractor
from extractors.testing import ExtractorContract, clone, site_bytes
from extractors.transformer import ExtractOptions, extract
from tests.extractors.test_transformer import loaded_minilm, minilm_options

SITES = "layer.6,blocks.2.mlp_out,sentence.*.layer.6,sentence.mean.blocks.2.mlp_out"


@pytest.fixture(scope="module")
def sentence_run(ewt_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Word and sentence sites of MiniLM over the 120 sentences, one call."""
    store = clone(ewt_small, tmp_path_factory.mktemp("sentences") / "s")
    report = extract(store, minilm_options(sites=SITES), loaded=loaded_minilm())
    assert isinstance(report, CombinedReport) and len(report.parts) == 2
    lines = report.summary().splitlines()
    assert lines[0].startswith("extracted 2 sites (minilm/layer.6 .. minilm/blocks.2.mlp_out)")
    assert lines[1].startswith("extracted 5 sites (minilm/sentence.mean.layer.6 .. ")
    assert "over 120 rows" in lines[1]
    return store


def _word_means(store: actstore.Store, word_site: str) -> np.ndarray:
    """Each sentence's mean of the stored word vectors, in float64."""
    bounds = store.sql("SELECT first_row, n_words FROM sentences ORDER BY row")
    words = store.acts(word_site).values.astype(np.float64)
    return np.stack([words[a : a + n].mean(axis=0) for a, n in bounds.itertuples(index=False)])


def test_mean_is_the_mean_of_the_word_vectors(sentence_run: Path) -> None:
    with actstore.open(sentence_run) as store:
        for component in ("layer.6", "blocks.2.mlp_out"):
            site = store.site(f"minilm/sentence.mean.{component}")
            assert (site.table, site.n_rows) == ("sentences", 120)
            assert site.provenance["pool"] == "mean" and site.provenance["align"] == "mean"
            means = store.acts(f"minilm/sentence.mean.{component}").values
            expected = _word_means(store, f"minilm/{component}")
            np.testing.assert_allclose(means, expected, rtol=2e-3, atol=2e-3, err_msg=component)


def test_first_last_cls_equal_a_direct_forward(sentence_run: Path) -> None:
    """Each sentence alone through the model with its [CLS] and [SEP]: position 0 is
    sentence.cls, 1 sentence.first, the one before [SEP] sentence.last."""
    tokenizer, model = loaded_minilm()
    with actstore.open(sentence_run) as store:
        texts = store.sql("SELECT text FROM sentences ORDER BY row")["text"].tolist()
        n_pieces = store.sql(
            "SELECT max(piece_last) + 1 AS n FROM align_minilm GROUP BY sentence_id "
            "ORDER BY sentence_id"
        )["n"].tolist()
        stored = {
            p: store.acts(f"minilm/sentence.{p}.layer.6").values for p in ("cls", "first", "last")
        }
        assert store.site("minilm/sentence.cls.layer.6").provenance["token"] == "[CLS]"
        assert "align" not in store.site("minilm/sentence.cls.layer.6").provenance
    compared = 0
    for s, text in enumerate(texts):
        ids = tokenizer(text)["input_ids"]  # type: ignore[operator]
        if len(ids) - 2 != n_pieces[s]:
            continue  # the text is not what the words spell (SpaceAfter=No, say)
        compared += 1
        with torch.inference_mode():
            hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[6][0]  # type: ignore[operator]
        for pool, position in (("cls", 0), ("first", 1), ("last", len(ids) - 2)):
            np.testing.assert_allclose(
                stored[pool][s], hidden[position].numpy(), rtol=2e-3, atol=2e-3, err_msg=pool
            )
    assert compared >= 100


def test_windowed_sentences(ewt_small: Path, tmp_path: Path) -> None:
    """With a 16-piece limit: first and cls come from the first window, last from the
    last, the mean from the word vectors (each from its own window)."""
    tokenizer, model = loaded_minilm()
    store_path = clone(ewt_small, tmp_path / "s")
    extract(store_path, minilm_options(sites="layer.6,sentence.*.layer.6", max_length=16),
            loaded=(tokenizer, model))  # fmt: skip
    with actstore.open(store_path) as store:
        texts = store.sql("SELECT text FROM sentences ORDER BY row")["text"].tolist()
        n_pieces = store.sql(
            "SELECT max(piece_last) + 1 AS n FROM align_minilm GROUP BY sentence_id "
            "ORDER BY sentence_id"
        )["n"].tolist()
        prov = store.site("minilm/sentence.first.layer.6").provenance
        stored = {
            p: store.acts(f"minilm/sentence.{p}.layer.6").values
            for p in ("cls", "first", "last", "mean")
        }
        expected_means = _word_means(store, "minilm/layer.6")
    assert prov["n_windowed_sentences"] > 50 and "first window" in prov["windows"]
    np.testing.assert_allclose(stored["mean"], expected_means, rtol=2e-3, atol=2e-3)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id  # type: ignore[attr-defined]

    def layer6(window: list[int]) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.tensor([[cls, *window, sep]]), output_hidden_states=True)  # type: ignore[operator]
        return np.asarray(out.hidden_states[6][0].numpy())

    compared = 0
    for s, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
        if len(ids) != n_pieces[s] or len(ids) <= 14:
            continue
        compared += 1
        first, last = layer6(ids[:14]), layer6(ids[-14:])  # windows flush with each end
        for pool, expected in (("cls", first[0]), ("first", first[1]), ("last", last[14])):
            np.testing.assert_allclose(stored[pool][s], expected, rtol=2e-3, atol=2e-3)
    assert compared > 50


def test_where_picks_the_sentences(ewt_small: Path, tmp_path: Path) -> None:
    """With word sites, --where is over tokens and the sentence sites cover the sentences
    holding a matching word; alone, it is over sentences."""
    store_path = clone(ewt_small, tmp_path / "s")
    both = "layer.0,sentence.first.layer.0"
    extract(store_path, minilm_options(sites=both, where="upos = 'NUM'"), loaded=loaded_minilm())
    extract(store_path, minilm_options(sites="sentence.last.layer.0", where="n_words > 30"),
            loaded=loaded_minilm())  # fmt: skip
    with actstore.open(store_path) as store:
        with_num = store.sql("SELECT DISTINCT sentence_id FROM tokens WHERE upos = 'NUM'")
        long = store.sql("SELECT row FROM sentences WHERE n_words > 30")

        def rows(name: str) -> list[int]:
            return [r for a, b in store.site(name).covers for r in range(a, b)]

        assert rows("minilm/sentence.first.layer.0") == sorted(with_num["sentence_id"])
        assert rows("minilm/sentence.last.layer.0") == sorted(long["row"])
        assert 0 < len(long) < 60 and 0 < len(with_num) < 60


def test_sentence_sites_are_listed_and_refused_by_name(ewt_small: Path, tmp_path: Path) -> None:
    extractor = SentenceExtractor(minilm_options(), loaded=loaded_minilm())
    names = [s.name for s in extractor.sites()]
    assert len(names) == 4 * 43 and names[0] == "minilm/sentence.mean.layer.0"
    assert "minilm/sentence.cls.blocks.5.mlp.post" in names
    with pytest.raises(actstore.ActStoreError, match=r"sentence\.\{mean,first,last,cls\}"):
        extract(tmp_path, minilm_options(sites="sentence.max.*"), loaded=loaded_minilm())


class TestSentenceContract(ExtractorContract):
    chunk_rows = 32

    def make_extractor(self) -> Extractor:
        return SentenceExtractor(self.options(), loaded=loaded_minilm())

    def options(self) -> ExtractOptions:
        return minilm_options(sites="sentence.*.layer.[06]", chunk_rows=self.chunk_rows)

    @pytest.fixture(scope="class")
    @classmethod
    def template(cls, ewt_small: Path) -> Path:
        return ewt_small

    def command(self, store: Path) -> list[str]:
        return [
            sys.executable, "-m", "actstore.cli", "extract", str(store), "--model", "minilm",
            "--chunk-rows", str(self.chunk_rows), "--device", "cpu",
            "--sites", "sentence.*.layer.[06]",
        ]  # fmt: skip


@pytest.mark.gpu
def test_cuda_hooks_and_sentences_match_cpu(
    sentence_run: Path, ewt_small: Path, tmp_path: Path
) -> None:
    """On CUDA (bfloat16 autocast, one pinned buffer per batch for sites of mixed widths)
    hooked and sentence sites are deterministic and agree with the CPU run."""
    runs = []
    for name in ("gpu1", "gpu2"):
        store_path = clone(ewt_small, tmp_path / name)
        extract(store_path, minilm_options(sites=SITES + ",blocks.1.mlp.post", device="cuda"))
        runs.append(store_path)
    assert site_bytes(runs[0]) == site_bytes(runs[1])
    with actstore.open(runs[0]) as gpu, actstore.open(sentence_run) as cpu:
        for name in cpu.sites:
            a, b = gpu.acts(name).values, cpu.acts(name).values
            cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            assert cosine.min() > 0.98, name
        assert gpu.acts("minilm/blocks.1.mlp.post").shape[1] == 1536
