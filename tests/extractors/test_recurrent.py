"""The recurrent extractor: the shipped contract, stored gates against a float64
reference, character alignment by hand, checkpoints, IMAGINET, one-line refusals."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import actstore
from actstore import cli
from actstore.errors import ModelError, ParameterError
from extractors.base import Extractor
from extractors.recurrent import RecurrentExtractor, extract
from extractors.testing import ExtractorContract, clone
from extractors.verbs import ExtractOptions
from extractors.vocab import Vocabulary

FACTORIES = '''
import torch
from torch import nn


class Tagger(nn.Module):
    """Embeddings, a recurrent module, a linear head: called as model(ids)."""

    def __init__(self, n_vocab, rnn):
        super().__init__()
        self.embedding = nn.Embedding(n_vocab, rnn.input_size, padding_idx=0)
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size * (1 + rnn.bidirectional), 5)

    def forward(self, ids):
        return self.head(self.rnn(self.embedding(ids))[0])


def word_bilstm():
    torch.manual_seed(0)
    return Tagger(N_WORDS, nn.LSTM(8, 6, num_layers=2, bidirectional=True, batch_first=True))


def char_lstm():
    torch.manual_seed(1)
    return Tagger(N_CHARS, nn.LSTM(5, 4, batch_first=True))


def no_rnn():
    return nn.Sequential(nn.Embedding(N_WORDS, 4), nn.Linear(4, 2))


def wrong_vocab():
    return Tagger(N_WORDS + 5, nn.GRU(8, 6, batch_first=True))


class SortingTagger(Tagger):
    """Sorts its batch by length before packing (code from before enforce_sorted=False)."""

    def forward(self, ids):
        lengths, order = (ids != 0).sum(1).sort(descending=True)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids[order]), lengths.cpu(), batch_first=True
        )
        return self.rnn(packed)


def sorting_lstm():
    torch.manual_seed(2)
    return SortingTagger(N_WORDS, nn.LSTM(8, 6, batch_first=True))
'''


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/extractors/conftest.py


@pytest.fixture(scope="session")
def factories(ewt_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding ``rnn_factories.py`` (on sys.path), vocabularies of EWT's first
    120 sentences (words, characters) and each factory's seeded weights."""
    folder = tmp_path_factory.mktemp("factories")
    with actstore.open(ewt_small) as store:
        forms = store.columns(["form"]).column("form").to_pylist()
    words = Vocabulary.build([forms], level="word", min_count=2)
    chars = Vocabulary.build([forms], level="char", lowercase=False, min_count=1)
    for name, vocab in (("words", words), ("chars", chars)):
        (folder / f"{name}.json").write_text(json.dumps(vocab.to_json()), encoding="utf-8")
    source = FACTORIES.replace("N_WORDS", str(len(words))).replace("N_CHARS", str(len(chars)))
    (folder / "rnn_factories.py").write_text(source, encoding="utf-8")
    sys.path.insert(0, str(folder))
    import rnn_factories  # type: ignore[import-not-found]

    for name in ("word_bilstm", "char_lstm", "wrong_vocab", "no_rnn", "sorting_lstm"):
        torch.save(getattr(rnn_factories, name)().state_dict(), folder / f"{name}.pt")
    yield folder
    sys.path.remove(str(folder))


def factory_options(folder: Path, name: str, vocab: str, **changes: Any) -> ExtractOptions:
    base = ExtractOptions(
        model=f"rnn_factories:{name}",
        weights=folder / f"{name}.pt",
        vocab=folder / f"{vocab}.json",
        device="cpu",
        dtype="float32",
    )
    return replace(base, **changes)


class TestRecurrentContract(ExtractorContract):
    """A seeded random 2-layer bidirectional word LSTM through the factory path."""

    folder: Path

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _factories(cls, factories: Path) -> None:
        cls.folder = factories

    def options(self) -> ExtractOptions:
        return factory_options(self.folder, "word_bilstm", "words", chunk_rows=self.chunk_rows)

    def make_extractor(self) -> Extractor:
        return RecurrentExtractor(self.options())

    @pytest.fixture(scope="class")
    @classmethod
    def template(cls, ewt_small: Path) -> Path:
        return ewt_small

    def test_stored_gates_equal_a_float64_reference(self, extracted: Path, factories: Path) -> None:
        import rnn_factories

        model = rnn_factories.word_bilstm()
        model.load_state_dict(torch.load(factories / "word_bilstm.pt", weights_only=True))
        weights = {k: v.double().numpy() for k, v in model.rnn.state_dict().items()}
        table = model.embedding.weight.detach().double().numpy()
        vocab = Vocabulary.from_json(json.loads((factories / "words.json").read_text()))
        with actstore.open(extracted) as store:
            bounds = store.sql("SELECT first_row, n_words FROM sentences ORDER BY sentence_id")
            forms = store.columns(["form"]).column("form").to_pylist()
            ends = (bounds.first_row + bounds.n_words).to_numpy()
            straddling = int(np.searchsorted(ends, 256, side="right"))  # holds rows 255, 256
            assert bounds.first_row[straddling] < 256 < ends[straddling]
            for sentence in (0, straddling, 57, 119):
                lo = int(bounds.first_row[sentence])
                hi = lo + int(bounds.n_words[sentence])
                x = table[vocab.encode(forms[lo:hi])]
                expected = reference_lstm(weights, x, layers=2)
                for (layer, direction), gates in expected.items():
                    reverse = ".reverse" if direction else ""
                    for gate, values in gates.items():
                        site = f"word_bilstm/layer.{layer}{reverse}.{gate}"
                        stored = store.acts(site, np.arange(lo, hi)).values
                        np.testing.assert_allclose(stored, values, atol=1e-5, err_msg=site)
            provenance = store.site("word_bilstm/layer.1.reverse.f").provenance
        assert provenance["direction"] == "reverse" and provenance["gate"] == "f"
        assert provenance["architecture"] == "factory" and provenance["level"] == "word"
        assert provenance["vocab_size"] == len(vocab) and provenance["align"] == "word"
        assert provenance["compute"] == "cpu float32"
        assert set(provenance["weights_sha256"]) == {"word_bilstm.pt"}


def reference_lstm(
    weights: dict[str, np.ndarray], x: np.ndarray, layers: int
) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """Every gate of a bidirectional LSTM over one sentence, float64, step by step."""

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-v))

    out: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    inputs = x
    for layer in range(layers):
        hs = []
        for direction, suffix in enumerate(("", "_reverse")):
            w_ih, w_hh = (
                weights[f"weight_ih_l{layer}{suffix}"],
                weights[f"weight_hh_l{layer}{suffix}"],
            )
            bias = weights[f"bias_ih_l{layer}{suffix}"] + weights[f"bias_hh_l{layer}{suffix}"]
            size = w_hh.shape[1]
            h, c = np.zeros(size), np.zeros(size)
            gates = {g: np.zeros((len(x), size)) for g in "ifgoch"}
            steps = range(len(x)) if direction == 0 else range(len(x) - 1, -1, -1)
            for t in steps:
                pre = w_ih @ inputs[t] + w_hh @ h + bias
                i, f = sigmoid(pre[:size]), sigmoid(pre[size : 2 * size])
                g, o = np.tanh(pre[2 * size : 3 * size]), sigmoid(pre[3 * size :])
                c = f * c + i * g
                h = o * np.tanh(c)
                for name, value in zip("ifgoch", (i, f, g, o, c, h), strict=True):
                    gates[name][t] = value
            out[layer, direction] = gates
            hs.append(gates["h"])
        inputs = np.concatenate(hs, axis=1)
    return out


def test_characters_aligned_by_hand(factories: Path, ewt_small: Path, tmp_path: Path) -> None:
    """Sentence 0 is 'From the AP comes this story :': its characters, words joined by
    one space, span From 0-3, the 5-7, AP 9-10, comes 12-16, this 18-21, story 23-27,
    : 29."""
    spans = [(0, 3), (5, 7), (9, 10), (12, 16), (18, 21), (23, 27), (29, 29)]
    path = clone(ewt_small, tmp_path / "chars")
    where = "sentence_id = 0"
    options = factory_options(factories, "char_lstm", "chars", where=where, sites="layer.0.h")
    extract(path, options)
    extract(path, replace(options, align="mean", name="chars-mean"))
    import rnn_factories

    model = rnn_factories.char_lstm()
    model.load_state_dict(torch.load(factories / "char_lstm.pt", weights_only=True))
    vocab = Vocabulary.from_json(json.loads((factories / "chars.json").read_text()))
    text = "From the AP comes this story :"
    with torch.no_grad():
        states, _ = model.rnn(model.embedding(torch.tensor([vocab.encode(list(text))])))
    states = states[0].numpy()
    with actstore.open(path) as store:
        rows = store.rows(where)
        last = store.acts("char_lstm/layer.0.h", rows).values
        mean = store.acts("chars-mean/layer.0.h", rows).values
        assert store.site("char_lstm/layer.0.h").provenance["align"] == "last"
        assert store.site("chars-mean/layer.0.h").provenance["align"] == "mean"
    assert len(rows) == len(spans)
    for j, (a, b) in enumerate(spans):
        np.testing.assert_allclose(last[j], states[b], atol=1e-6)
        np.testing.assert_allclose(mean[j], states[a : b + 1].mean(axis=0), atol=1e-6)


@pytest.fixture(scope="module")
def checkpoints(ewt_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A word LSTM LM and an IMAGINET checkpoint (seeded, untrained), saved as
    ``actstore train`` saves them."""
    reference = pytest.importorskip("extractors.reference")
    folder = tmp_path_factory.mktemp("checkpoints")
    with actstore.open(ewt_small) as store:
        forms = store.columns(["form"]).column("form").to_pylist()
    vocab = Vocabulary.build([forms], level="word", min_count=2)
    torch.manual_seed(2)
    lm = reference.build_model("lstm-lm", len(vocab), hidden_size=6, embedding_dim=4, num_layers=2)
    reference.save_checkpoint(folder / "lm", lm, vocab, {})
    imaginet = reference.build_model(
        "imaginet", len(vocab), image_dim=3, embedding_dim=4, hidden_size=5
    )
    reference.save_checkpoint(folder / "imaginet", imaginet, vocab, {})
    return folder


def test_checkpoint_folder_word_lm(checkpoints: Path, ewt_small: Path, tmp_path: Path) -> None:
    from extractors.reference import load_checkpoint

    path = clone(ewt_small, tmp_path / "lm")
    options = ExtractOptions(model=str(checkpoints / "lm"), device="cpu", dtype="float32")
    report = extract(path, replace(options, sites="layer.1.h,layer.0.c", where="sentence_id < 4"))
    assert report.sites == ["lm/layer.0.c", "lm/layer.1.h"]
    checkpoint = load_checkpoint(checkpoints / "lm")
    with actstore.open(path) as store:
        rows = store.rows("sentence_id = 3")
        forms = store.columns(["form"]).column("form").to_pylist()
        stored = store.acts("lm/layer.1.h", rows).values
        provenance = store.site("lm/layer.1.h").provenance
    ids = torch.tensor([checkpoint.vocab.encode([forms[r] for r in rows])])
    with torch.no_grad():
        states, _ = checkpoint.model.lstm(checkpoint.model.embedding(ids))
    np.testing.assert_allclose(stored, states[0].numpy(), atol=1e-5)
    assert provenance["architecture"] == "lstm-lm" and provenance["model_path"].endswith("lm")


def test_imaginet_sites_and_measures(
    checkpoints: Path, ewt_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from queries.measures import token_measures

    path = clone(ewt_small, tmp_path / "imaginet")
    options = ExtractOptions(model=str(checkpoints / "imaginet"), device="cpu", dtype="float32")
    report = extract(path, replace(options, sites="visual.*"))
    assert report.sites == [f"imaginet/visual.layer.0.{g}" for g in "rznh"]
    with actstore.open(path) as store:
        h = store.site("imaginet/visual.layer.0.h").provenance
        z = store.site("imaginet/visual.layer.0.z").provenance
        assert h["update_gate_site"] == "imaginet/visual.layer.0.z"
        assert z["gate_convention"] == h["gate_convention"] == "cho"
        assert z["gate_activation"] == "extractors.imaginet.steep_sigmoid"
        gates = store.acts("imaginet/visual.layer.0.z").values
        measures = token_measures(store, "imaginet/visual.layer.0.h", h["update_gate_site"])
    np.testing.assert_allclose(measures.zmean, gates.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(measures.keep, 1 - measures.zmean)  # cho: z weighs the new
    args = ["measures", str(path), "--sites", "visual.layer.0.h", "--by", "lang"]
    assert cli.main([*args, "--min-count", "1", "--format", "csv"]) == 0  # no --gate-site
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    zmean = {r[3]: float(r[4]) for r in rows}["zmean"]
    assert zmean == pytest.approx(float(gates.astype(np.float64).mean()), abs=1e-6)


def test_command_line_routes_to_the_recurrent_extractor(
    factories: Path, ewt_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = clone(ewt_small, tmp_path / "cli")
    args = ["extract", str(path), "--model", "rnn_factories:word_bilstm", "--sites", "layer.0.f"]
    files = [
        "--weights",
        str(factories / "word_bilstm.pt"),
        "--vocab",
        str(factories / "words.json"),
    ]
    assert cli.main([*args, *files, "--where", "sentence_id < 3", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("extracted 1 sites (word_bilstm/layer.0.f")
    assert cli.main([*args, "--vocab", str(factories / "words.json"), "--device", "cpu"]) == 2
    assert "--weights is needed with the recurrent model" in capsys.readouterr().err
    assert cli.main([*args, "--device", "cpu"]) == 2  # no --vocab: taken for an image model
    assert "needs --vocab and --weights" in capsys.readouterr().err


def test_refusals_are_one_clear_line(factories: Path, ewt_small: Path, tmp_path: Path) -> None:
    cases: list[tuple[ExtractOptions, str]] = [
        (factory_options(factories, "wrong_vocab", "words"), "vocabulary mismatch: .* has "),
        (factory_options(factories, "word_bilstm", "chars"), "vocabulary mismatch"),
        (
            factory_options(factories, "word_bilstm", "words", weights=factories / "char_lstm.pt"),
            "char_lstm.pt: weights do not fit rnn_factories:word_bilstm",
        ),
        (
            factory_options(factories, "word_bilstm", "words", max_length=20),
            "max_length is for transformers",
        ),
    ]
    no_rnn = factory_options(factories, "no_rnn", "words")
    cases.append((no_rnn, "^Sequential has no recurrent layer to unroll"))
    wrong = tmp_path / "not-a-reference"
    wrong.mkdir()
    (wrong / "config.json").write_text('{"architecture": "resnet"}', encoding="utf-8")
    (wrong / "vocab.json").write_text((factories / "words.json").read_text(), encoding="utf-8")
    (wrong / "model.safetensors").write_bytes(b"")
    cases.append((ExtractOptions(model=str(wrong)), "unknown architecture 'resnet'"))
    for options, message in cases:
        with pytest.raises((ModelError, ParameterError), match=message) as caught:
            RecurrentExtractor(options)
        assert "\n" not in str(caught.value), str(caught.value)
    with pytest.raises(ParameterError, match="weights goes with a factory model"):
        ExtractOptions(model="minilm", weights=Path("w.pt")).check()
    sorting = factory_options(factories, "sorting_lstm", "words", sites="layer.0.h")
    with pytest.raises(ModelError, match=r"reorders or cuts its batch .* enforce_sorted=False"):
        extract(clone(ewt_small, tmp_path / "sorting"), sorting)  # rows would be swapped


@pytest.mark.gpu
def test_cuda_equals_cpu(factories: Path, ewt_small: Path, tmp_path: Path) -> None:
    options = factory_options(factories, "word_bilstm", "words", where="sentence_id < 40")
    stores = {device: clone(ewt_small, tmp_path / device) for device in ("cpu", "cuda")}
    for device, path in stores.items():
        extract(path, replace(options, device=device))
    with actstore.open(stores["cpu"]) as cpu, actstore.open(stores["cuda"]) as cuda:
        rows = cpu.rows("sentence_id < 40")
        for name in cpu.sites:
            np.testing.assert_allclose(
                cuda.acts(name, rows).values, cpu.acts(name, rows).values, atol=1e-5
            )
        assert cuda.site("word_bilstm/layer.0.h").provenance["compute"] == "cuda float32"


def test_random_init_is_a_seeded_baseline(factories: Path, ewt_small: Path, tmp_path: Path) -> None:
    path = clone(ewt_small, tmp_path / "random")
    options = factory_options(factories, "word_bilstm", "words", sites="layer.1.h")
    options = replace(options, where="sentence_id < 5")
    extract(path, options)
    for _ in range(2):  # the same seed: the same bytes (the second run finds nothing to do)
        report = extract(path, replace(options, random_init=3))
    assert report.nothing_to_do and report.sites == ["word_bilstm-random3/layer.1.h"]
    with actstore.open(path) as store:
        rows = store.rows("sentence_id < 5")
        trained = store.acts("word_bilstm/layer.1.h", rows).values
        fresh = store.acts("word_bilstm-random3/layer.1.h", rows).values
        assert store.site("word_bilstm-random3/layer.1.h").provenance["random_init"] == 3
    assert np.abs(trained - fresh).max() > 0.05
    again = clone(ewt_small, tmp_path / "again")
    extract(again, replace(options, random_init=3))
    with actstore.open(again) as store:
        np.testing.assert_array_equal(
            store.acts("word_bilstm-random3/layer.1.h", rows).values, fresh
        )
