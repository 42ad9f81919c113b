"""Transformer extraction against MiniLM-L6 and SmolLM2-135M, the real packaged models."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import actstore
from extractors import models
from extractors.base import Extractor
from extractors.testing import ExtractorContract, clone, site_bytes
from extractors.transformer import ExtractOptions, TransformerExtractor, extract

CHUNK_ROWS = "256"


@functools.cache
def loaded_minilm() -> tuple[object, object]:
    return models.load(models.resolve_model("minilm"))


def minilm_options(**kwargs: object) -> ExtractOptions:
    base: dict[str, object] = {
        "model": "minilm", "sites": "layer.*", "chunk_rows": int(CHUNK_ROWS), "device": "cpu",
    }  # fmt: skip
    return ExtractOptions(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def template(ewt_slice: Path) -> Path:
    return ewt_slice


@pytest.fixture(scope="session")
def minilm_run(ewt_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM over the slice, one uninterrupted run: what every other run must equal."""
    store = clone(ewt_slice, tmp_path_factory.mktemp("extracted") / "s")
    extract(store, minilm_options())
    return store


@pytest.fixture(scope="session")
def extracted(minilm_run: Path) -> Path:
    return minilm_run


@pytest.fixture(scope="session")
def minilm() -> tuple[object, object]:
    return loaded_minilm()


class TestMiniLMContract(ExtractorContract):
    def make_extractor(self) -> Extractor:
        return TransformerExtractor(self.options(), loaded=loaded_minilm())

    def options(self) -> ExtractOptions:
        return minilm_options()

    @pytest.fixture(scope="class")
    @classmethod
    def template(cls, ewt_slice: Path) -> Path:
        return ewt_slice

    @pytest.fixture(scope="class")
    @classmethod
    def extracted(cls, minilm_run: Path) -> Path:
        return minilm_run

    def command(self, store: Path) -> list[str]:
        return [
            sys.executable, "-m", "actstore.cli", "extract", str(store),
            "--model", "minilm", "--chunk-rows", CHUNK_ROWS, "--device", "cpu",
        ]  # fmt: skip


def _sentences(store: actstore.Store, limit: int) -> list[dict[str, object]]:
    """Surface tokens of the first sentences, each word's token index and, inside a
    multiword token its words spell (``do`` + ``n't`` = ``don't``, ignoring case), the
    word's characters within the token (else None), from the tables."""
    rows = store.sql(
        "SELECT sentence_id, t.row, position, form, mwt_start, mwt_form, text FROM tokens t "
        "JOIN sentences USING (sentence_id) WHERE sentence_id < ? ORDER BY t.row",
        [limit],
    ).to_dict("records")
    out: dict[int, dict[str, object]] = {}
    for r in rows:
        s: dict[str, list[object]] = out.setdefault(  # type: ignore[assignment]
            int(r["sentence_id"]),
            {"tokens": [], "word_token": [], "rows": [], "chars": [], "text": r["text"]},
        )
        mwt = r["mwt_start"]
        inside = mwt is not None and mwt == mwt  # NaN-safe NULL test
        if not inside or r["position"] == mwt:
            s["tokens"].append(r["mwt_form"] if inside else r["form"])
        s["word_token"].append(len(s["tokens"]) - 1)
        s["rows"].append(int(r["row"]))
        s["chars"].append(r if inside else None)
    for s in out.values():  # words of a spelled multiword token: their own characters
        chars: list[object] = s["chars"]  # type: ignore[assignment]
        for token in set(s["word_token"]):  # type: ignore[call-overload]
            members = [i for i, t in enumerate(s["word_token"]) if t == token]  # type: ignore[call-overload]
            if chars[members[0]] is None:
                continue
            forms = [chars[i]["form"] for i in members]  # type: ignore[index]
            surface = s["tokens"][token]  # type: ignore[index]
            spelled = "".join(forms).lower() == str(surface).lower()
            start = 0
            for i, form in zip(members, forms, strict=True):
                chars[i] = (start, start + len(form)) if spelled else None
                start += len(form)
    return list(out.values())


def test_vectors_equal_a_direct_single_sentence_call(
    extracted: Path, minilm: tuple[object, object]
) -> None:
    """Batching and padding change nothing: each of 300 sentences run alone through the
    model, aligned by Hugging Face's own word_ids() (and, inside a multiword token its
    words spell, the pieces its per-word character offsets put over each word), gives
    the stored vectors (float16 tolerance)."""
    tokenizer, model = minilm
    with actstore.open(extracted) as store:
        sentences = _sentences(store, 300)
        align = store.sql(
            "SELECT count(*) FILTER (mwt_start IS NOT NULL) AS mwt, "
            "count(*) FILTER (n_pieces >= 4) AS long "
            "FROM align_minilm a JOIN tokens t USING (row) WHERE t.sentence_id < 300"
        )
        assert align["mwt"].item() > 10 and align["long"].item() > 10  # the hard cases are in
        acts = {name: store.acts(name).values for name in store.sites}
    compared = split = 0
    for sentence in sentences:
        encoded = tokenizer(  # type: ignore[operator]
            sentence["tokens"], is_split_into_words=True, return_tensors="pt",
            return_offsets_mapping=True,
        )  # fmt: skip
        offsets = encoded.pop("offset_mapping")[0].numpy()  # within each surface token
        whole = tokenizer(sentence["text"])["input_ids"]  # type: ignore[operator]
        if encoded["input_ids"][0].tolist() != whole:
            continue  # e.g. "cocker|spaniel" with SpaceAfter=No: word_ids() cannot align it
        compared += 1
        with torch.inference_mode():
            hidden = model(**encoded, output_hidden_states=True).hidden_states  # type: ignore[operator]
        word_ids = np.array([-1 if w is None else w for w in encoded.word_ids()])
        pieces = []
        for token, chars in zip(sentence["word_token"], sentence["chars"], strict=True):  # type: ignore[call-overload]
            mine = word_ids == token
            if chars is not None:
                mine &= (offsets[:, 0] < chars[1]) & (offsets[:, 1] > chars[0])
                split += 1
            pieces.append(mine)
        for layer, name in enumerate(sorted(acts)):
            states = hidden[layer][0].numpy()
            for row, mine in zip(sentence["rows"], pieces, strict=True):  # type: ignore[call-overload]
                expected = states[mine].mean(axis=0)
                np.testing.assert_allclose(acts[name][row], expected, rtol=2e-3, atol=2e-3)
    assert compared >= 250 and split > 10


def test_alignment_table_is_queryable(extracted: Path) -> None:
    with actstore.open(extracted) as store:
        frame = store.sql(
            "SELECT t.form, t.mwt_form, a.piece_first, a.piece_last, a.in_mwt, a.shared_piece "
            "FROM align_minilm a JOIN tokens t USING (row) WHERE t.mwt_form = 'don''t' LIMIT 2"
        )
    # "don't" is one surface token; WordPiece cuts it into don + ' + t: "do" gets the
    # piece over its characters, "n't" the three over its own (don is shared by both)
    assert frame["form"].tolist() == ["do", "n't"]
    assert not frame["in_mwt"].any() and frame["shared_piece"].all()
    assert (frame["piece_last"] - frame["piece_first"]).tolist() == [0, 2]


def test_provenance_and_different_model_refused(ewt_small: Path, tmp_path: Path) -> None:
    store_path = clone(ewt_small, tmp_path / "s")
    extract(store_path, minilm_options(sites="layer.6"))
    with actstore.open(store_path) as store:
        prov = store.sites["minilm/layer.6"].provenance
    assert (
        prov["weights_sha256"]["model.safetensors"]
        == models.sha256_files(models.resolve_model("minilm").weight_files)["model.safetensors"]
    )
    assert (prov["align"], prov["dtype"], prov["hidden_state"]) == ("mean", "float16", 6)
    assert len(prov["corpus_sha256"]) == 64 and prov["n_windowed_sentences"] == 0
    before = (store_path / "manifest.json").read_bytes()
    with pytest.raises(actstore.SiteError, match=r"other settings \(align: mean → first\)"):
        extract(store_path, minilm_options(sites="layer.6", align="first"))
    assert (store_path / "manifest.json").read_bytes() == before  # its alignment too
    extract(store_path, minilm_options(sites="layer.6", align="first", overwrite=True))
    with actstore.open(store_path) as store:
        assert store.sites["minilm/layer.6"].provenance["align"] == "first"


def test_random_initialisation_is_a_seeded_baseline(ewt_small: Path, tmp_path: Path) -> None:
    """--random-init SEED: the same architecture with fresh weights, under its own site
    names, the same bytes for the same seed, others for another; provenance says so."""
    stores = [clone(ewt_small, tmp_path / f"s{i}") for i in range(2)]
    for path, seed in zip(stores, (3, 3), strict=True):
        extract(path, minilm_options(sites="layer.3", random_init=seed))
    extract(stores[0], minilm_options(sites="layer.3"))
    extract(stores[1], minilm_options(sites="layer.3", random_init=4))
    with actstore.open(stores[0]) as a, actstore.open(stores[1]) as b:
        random = a.acts("minilm-random3/layer.3", dtype=None).values
        np.testing.assert_array_equal(random, b.acts("minilm-random3/layer.3", dtype=None).values)
        assert not np.array_equal(random, b.acts("minilm-random4/layer.3", dtype=None).values)
        assert not np.allclose(random, a.acts("minilm/layer.3", dtype=None).values, atol=0.1)
        made = a.site("minilm-random3/layer.3").provenance
        assert (
            made["random_init"] == 3 and a.site("minilm/layer.3").provenance["random_init"] is None
        )


def test_long_sentences_are_windowed_not_truncated(
    ewt_small: Path, tmp_path: Path, minilm: tuple[object, object]
) -> None:
    """With a 16-piece limit most sentences need windows; every word still gets the vector
    of one full window of its sentence, never of a truncated input."""
    tokenizer, model = minilm
    store_path = clone(ewt_small, tmp_path / "s")
    extract(store_path, minilm_options(sites="layer.6", max_length=16))
    with actstore.open(store_path) as store:
        texts = store.sql("SELECT text FROM sentences ORDER BY row")["text"].tolist()
        prov = store.sites["minilm/layer.6"].provenance
        acts = store.acts("minilm/layer.6").values
        align = store.sql("SELECT * FROM align_minilm ORDER BY row")
        first_rows = store.sql("SELECT first_row, n_words FROM sentences ORDER BY row")
    long = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) > 14 for t in texts]  # type: ignore[operator]
    assert prov["n_windowed_sentences"] == sum(long) > 50
    assert np.isfinite(acts).all() and (np.abs(acts).sum(axis=1) > 0).all()
    # A windowed sentence: each word equals the mean of its pieces in one of the windows.
    s = long.index(True)
    lo, n = (int(x) for x in first_rows.iloc[s])
    ids = tokenizer(texts[s], add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    outputs = []
    # documented layout: windows half a window (7) apart, the last one flush with the end
    for start in [*range(0, len(ids) - 14, 7), len(ids) - 14]:
        window = [tokenizer.cls_token_id, *ids[start : start + 14], tokenizer.sep_token_id]  # type: ignore[attr-defined]
        with torch.inference_mode():
            hidden = model(torch.tensor([window]), output_hidden_states=True).hidden_states[6]  # type: ignore[operator]
        outputs.append((start, hidden[0].numpy()))
    for row in range(lo, lo + n):
        a, b = int(align.piece_first[row]), int(align.piece_last[row])
        assert align.windowed[row]
        candidates = [
            out[a - start + 1 : b - start + 2].mean(axis=0)
            for start, out in outputs
            if start <= a and b < start + 14
        ]
        assert any(np.allclose(acts[row], c, rtol=2e-3, atol=2e-3) for c in candidates), row


def test_two_shards_equal_one_process(extracted: Path, template: Path, tmp_path: Path) -> None:
    store_path = clone(template, tmp_path / "sharded")
    procs = [
        subprocess.Popen([*TestMiniLMContract().command(store_path), "--shard", f"{i}/2"])
        for i in range(2)
    ]
    assert [p.wait() for p in procs] == [0, 0]
    with actstore.open(store_path) as store:
        assert {s.status for s in store.sites.values()} == {"complete"}
    assert site_bytes(store_path) == site_bytes(extracted)


def test_cli_reports_and_rejects_bad_options(
    ewt_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from actstore.cli import main

    store_path = clone(ewt_small, tmp_path / "s")
    assert main(["extract", str(store_path), "--sites", "layer.99"]) == 2
    assert "--sites 'layer.99' matches none of minilm/layer.0" in capsys.readouterr().err
    assert main(["extract", str(store_path), "--shard", "2/2"]) == 2
    assert "--shard I/N needs 0 <= I < N" in capsys.readouterr().err
    assert main(["extract", str(store_path), "--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    actstore.create(tmp_path / "empty").close()
    assert main(["extract", str(tmp_path / "empty")]) == 2
    assert "has no tokens yet: run `actstore ingest` first" in capsys.readouterr().err
    assert main(["extract", str(store_path), "--sites", "layer.0", "--dtype", "bfloat16"]) == 0
    assert "extracted 1 sites (minilm/layer.0" in capsys.readouterr().out


def test_smollm2_alignment_covers_each_word() -> None:
    """GPT-2-style BPE: pieces carry their leading space ('Ġknow') and may span two words
    ('".'); each word's pieces, decoded, contain its surface form."""
    spec = models.resolve_model("smollm2")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.folder, gguf_file=spec.gguf_file)
    import pyarrow as pa

    from extractors.align import SHARED_PIECE, Words, align

    forms = ["I", "do", "n't", "know", ",", '"', "really", '"', "."]
    table = pa.table(
        {
            "row": np.arange(9),
            "sentence_id": np.zeros(9, np.int64),
            "position": np.arange(1, 10),
            "form": forms,
            "mwt_start": [None, 2, 2, None, None, None, None, None, None],
            "mwt_form": [None, "don't", "don't", None, None, None, None, None, None],
            "space_after": [True, True, True, False, True, False, False, False, True],
        }
    )
    words = Words.from_arrow(table)
    result = align(words, np.array([[0, 9]]), tokenizer, 8192, [], [])
    ids = result.segment_ids[0]
    assert tokenizer.decode(ids) == 'I don\'t know, "really".'
    for i, form in enumerate(forms):
        decoded = tokenizer.decode(ids[result.first[i] : result.last[i] + 1])
        assert form in decoded, (form, decoded)
    assert result.flags[7] & SHARED_PIECE and result.flags[8] & SHARED_PIECE  # the '".' piece


@pytest.mark.slow
def test_smollm2_vectors_equal_a_direct_call(ewt_small: Path, tmp_path: Path) -> None:
    store_path = clone(ewt_small, tmp_path / "s")
    extract(store_path, ExtractOptions(model="smollm2", sites="layer.*", device="cpu"))
    tokenizer, model = models.load(models.resolve_model("smollm2"))
    with actstore.open(store_path) as store:
        texts = store.sql("SELECT text, first_row, n_words FROM sentences ORDER BY row")
        align = store.sql("SELECT piece_first, piece_last FROM align_smollm2 ORDER BY row")
        layers = [store.acts(f"smollm2/layer.{i}").values for i in (0, 15, 30)]
    base = model.base_model
    for text, lo, n in texts.itertuples(index=False):
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        with torch.inference_mode():
            hidden = base(torch.tensor([ids]), output_hidden_states=True).hidden_states
        for values, layer in zip(layers, (0, 15, 30), strict=True):
            for row in range(lo, lo + n):
                a, b = align.piece_first[row], align.piece_last[row]
                expected = hidden[layer][0, a : b + 1].mean(0).numpy()
                np.testing.assert_allclose(values[row], expected, rtol=5e-3, atol=5e-3)


@pytest.mark.gpu
def test_cuda_extraction_matches_cpu(extracted: Path, template: Path, tmp_path: Path) -> None:
    """The CUDA path (bfloat16 autocast, pinned copies, background writer) agrees with
    the float32 CPU run within bfloat16 precision, and is itself deterministic."""
    runs = []
    for name in ("gpu1", "gpu2"):
        store_path = clone(template, tmp_path / name)
        extract(store_path, minilm_options(device="cuda"))
        runs.append(store_path)
    assert site_bytes(runs[0]) == site_bytes(runs[1])
    with actstore.open(runs[0]) as gpu, actstore.open(extracted) as cpu:
        assert gpu.sites["minilm/layer.6"].provenance["compute"] == "cuda autocast bfloat16"
        for name in cpu.sites:
            a, b = gpu.acts(name).values, cpu.acts(name).values
            cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            assert cosine.min() > 0.98, name


def _conllu_sentence(sent_id: str, forms: list[str]) -> str:
    lines = [f"# sent_id = {sent_id}", f"# text = {' '.join(forms)}"]
    for i, form in enumerate(forms, 1):
        head, deprel = (0, "root") if i == 1 else (1, "dep")
        lines.append(f"{i}\t{form}\t{form}\tX\t_\t_\t{head}\t{deprel}\t_\t_")
    return "\n".join(lines) + "\n\n"


def test_odd_words_are_flagged_not_fatal(
    ewt_dev: Path, tmp_path: Path, minilm: tuple[object, object]
) -> None:
    """A sentence the tokenizer reads as nothing, a word of more pieces than the model's
    window, an [UNK] word and a dropped character extract (through the CLI); each word is
    flagged in align_minilm and the count is reported."""
    from tests.conftest import first_sentences

    tokenizer, model = minilm
    blob = "x" * 60  # 30 WordPiece pieces: more than the 14-piece window of --max-length 16
    odd = [
        ["Hello", "\u200b", "world", "."],  # the zero-width space gives no piece: borrowed
        ["\u200b", "\u2060"],  # the whole sentence gives no piece: the model sees [UNK]
        ["I", "saw", "\U0001f99c", "today"],  # a parrot emoji: [UNK]
        ["see", blob, "now"],  # windowed, and the blob is clipped to one window
    ]
    corpus = tmp_path / "odd.conllu"
    corpus.write_text(
        first_sentences(ewt_dev, 5)
        + "".join(_conllu_sentence(f"odd-{i}", forms) for i, forms in enumerate(odd)),
        encoding="utf-8",
    )
    store_path = tmp_path / "odd.actstore"
    cli = [sys.executable, "-m", "actstore.cli"]
    ingest = subprocess.run([*cli, "ingest", str(corpus), "--store", str(store_path)], check=False)
    assert ingest.returncode == 0
    proc = subprocess.run(
        [*cli, "extract", str(store_path), "--sites", "layer.6", "--max-length", "16"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "1 borrowed, 1 clipped, 1 unknown, 2 no_pieces" in proc.stdout, proc.stdout
    with actstore.open(store_path) as store:
        flags = store.sql(
            "SELECT t.form, a.borrowed, a.clipped, a.unknown, a.no_pieces, a.windowed "
            "FROM align_minilm a JOIN tokens t USING (row) WHERE t.sentence_id >= 5 ORDER BY row"
        )
        acts = store.acts("minilm/layer.6", store.rows("sentence_id >= 5")).values
    marked = {
        "\u200b": ("borrowed",), "\u2060": ("no_pieces",), "\U0001f99c": ("unknown",),
    }  # fmt: skip
    for record in flags.to_dict("records")[:-3]:  # the long sentence's words
        form = record.pop("form")
        expected = marked.get(form, ())
        if form == "\u200b" and record["no_pieces"]:
            expected = ("no_pieces",)  # the first word of the sentence of nothing
        assert {k for k, v in record.items() if v} == set(expected), form
    assert np.isfinite(acts).all()

    def layer6(ids: list[int]) -> np.ndarray:
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id  # type: ignore[attr-defined]
        with torch.inference_mode():
            out = model(torch.tensor([[cls, *ids, sep]]), output_hidden_states=True)  # type: ignore[operator]
        return np.asarray(out.hidden_states[6][0].numpy())

    rows = {form: i for i, form in enumerate(flags["form"]) if form != "\u200b"}
    # the sentence of nothing: both words get [UNK]'s vector in [CLS] [UNK] [SEP]
    np.testing.assert_allclose(acts[rows["\u2060"]], layer6([tokenizer.unk_token_id])[1],  # type: ignore[attr-defined]
                               rtol=2e-3, atol=2e-3)  # fmt: skip
    # windows of 14 pieces start at 0, 7, 14 and 18 (flush with the end of the 32 pieces);
    # the blob (pieces 1..30) is held 13, 14, 14 and 13 times: it pools window 7, all of it
    ids = tokenizer(f"see {blob} now", add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    assert len(ids) == 32
    assert flags.iloc[-3:][["windowed", "clipped"]].values.tolist() == [
        [True, False], [True, True], [True, False]
    ]  # fmt: skip
    np.testing.assert_allclose(acts[rows[blob]], layer6(ids[7:21])[1:15].mean(axis=0),
                               rtol=2e-3, atol=2e-3)  # fmt: skip
