"""The reference models: IMAGINET's steep GRU against its formula worked by hand, the
vocabulary against counts made here, checkpoints that load back exactly, and one-line
errors for folders that are not checkpoints."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import actstore
from actstore.errors import ModelError
from extractors.imaginet import Imaginet, SteepGRU
from extractors.reference import (
    Vocabulary,
    build_model,
    load_checkpoint,
    save_checkpoint,
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def steep_gru_by_hand(
    gru: SteepGRU, x: np.ndarray, h0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The states of a one-layer steep GRU, written from the formula in float64:
    r, z = sigmoid(3.75 (W x + b + U h + b')), n = clip(W_n x + b_n + r * (U_n h + b'_n), 0, 5),
    h = (1 - z) * h_prev + z * n (the IMAGINET paper's equation 1); also the candidate
    before its clip."""
    w = {name: p.detach().double().numpy() for name, p in gru.named_parameters()}
    w_ir, w_iz, w_in = np.split(w["weight_ih_l0"], 3)
    w_hr, w_hz, w_hn = np.split(w["weight_hh_l0"], 3)
    b_ir, b_iz, b_in = np.split(w["bias_ih_l0"], 3)
    b_hr, b_hz, b_hn = np.split(w["bias_hh_l0"], 3)
    h = h0.astype(np.float64)
    states, unclipped = [], []
    for t in range(x.shape[1]):
        xt = x[:, t].astype(np.float64)
        r = sigmoid(3.75 * (xt @ w_ir.T + b_ir + h @ w_hr.T + b_hr))
        z = sigmoid(3.75 * (xt @ w_iz.T + b_iz + h @ w_hz.T + b_hz))
        candidate = xt @ w_in.T + b_in + r * (h @ w_hn.T + b_hn)
        h = (1 - z) * h + z * np.clip(candidate, 0.0, 5.0)
        states.append(h)
        unclipped.append(candidate)
    return np.stack(states, axis=1), np.stack(unclipped, axis=1)


def test_steep_gru_one_step_by_hand() -> None:
    torch.manual_seed(1)
    gru = SteepGRU(5, 4)
    with torch.no_grad():  # larger weights, so that the clip at 5 and at 0 both act
        for p in gru.parameters():
            p.mul_(6.0)
    x = torch.randn(3, 1, 5)
    h0 = torch.rand(1, 3, 4) * 2
    output, h_n = gru(x, h0)
    expected, candidate = steep_gru_by_hand(gru, x.numpy(), h0[0].numpy())
    np.testing.assert_allclose(output.detach().numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(h_n[0].detach().numpy(), expected[:, -1], atol=1e-5)
    assert (candidate < 0).any() and (candidate > 5).any(), "both clips should act"
    # several steps from zeros
    x = torch.randn(2, 6, 5)
    output, _ = gru(x)
    expected, _ = steep_gru_by_hand(gru, x.numpy(), np.zeros((2, 4)))
    np.testing.assert_allclose(output.detach().numpy(), expected, atol=1e-5)


def test_steep_gru_looks_like_nn_gru_to_the_unroller() -> None:
    gru, fused = SteepGRU(7, 5, num_layers=2), nn.GRU(7, 5, num_layers=2, batch_first=True)
    mine = {name: tuple(p.shape) for name, p in gru.named_parameters()}
    assert mine == {name: tuple(p.shape) for name, p in fused.named_parameters()}
    assert gru.actstore_recurrent == "gru" and gru.gate_convention == "cho"
    assert (gru.num_layers, gru.hidden_size, gru.bidirectional, gru.batch_first) == (
        2,
        5,
        False,
        True,
    )
    z = torch.tensor([-1.0, 0.0, 0.4])
    np.testing.assert_allclose(gru.gate_activation(z).numpy(), sigmoid(3.75 * z.numpy()), rtol=1e-6)
    assert gru.candidate_activation(torch.tensor([-2.0, 3.0, 9.0])).tolist() == [0.0, 3.0, 5.0]
    # layer 1 reads layer 0's states: the same as two one-layer GRUs in a row
    first, second = SteepGRU(7, 5), SteepGRU(5, 5)
    with torch.no_grad():
        for k, layer in enumerate((first, second)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(layer, f"{name}_l0").copy_(getattr(gru, f"{name}_l{k}"))
    x = torch.randn(2, 4, 7)
    output, h_n = gru(x)
    middle, h_first = first(x)
    np.testing.assert_allclose(output.detach(), second(middle)[0].detach(), atol=1e-6)
    np.testing.assert_allclose(h_n[0].detach(), h_first[0].detach(), atol=1e-6)


def test_imaginet_reads_each_sentence_to_its_last_word() -> None:
    torch.manual_seed(0)
    model = Imaginet(30, image_dim=6, embedding_dim=8, hidden_size=7, image_activation="linear")
    long, short = [5, 6, 7, 8], [9, 10]
    batch = model(torch.tensor([long, [*short, 0, 0]]))
    alone = model(torch.tensor([short]))
    np.testing.assert_allclose(batch.image[1].detach(), alone.image[0].detach(), atol=1e-6)
    np.testing.assert_allclose(
        batch.word_logits[1, :2].detach(), alone.word_logits[0].detach(), atol=1e-6
    )
    # the image comes from the visual pathway's final state, the words from the textual one
    states, _ = model.visual(model.embedding(torch.tensor([long])))
    np.testing.assert_allclose(
        batch.image[0].detach(), model.to_image(states[0, -1]).detach(), atol=1e-6
    )
    words, _ = model.textual(model.embedding(torch.tensor([long])))
    np.testing.assert_allclose(
        batch.word_logits[0].detach(), model.to_word(words[0]).detach(), atol=1e-6
    )
    clipped = Imaginet(30, image_dim=6, embedding_dim=8, hidden_size=7)
    image = clipped(torch.tensor([long])).image.detach()
    assert float(image.min()) >= 0 and float(image.max()) <= 5


def test_vocabulary_from_the_store_words(dev_store: actstore.Store) -> None:
    forms = [str(f) for f in dev_store.sql("SELECT form FROM tokens ORDER BY row").form]
    sentences = dev_store.sql("SELECT sentence_id, form FROM tokens ORDER BY row")
    words = [list(g.form) for _, g in sentences.groupby("sentence_id", sort=True)]
    vocab = Vocabulary.build(words, level="word", lowercase=True, min_count=3)
    counts = Counter(f.lower() for f in forms)
    kept = {w for w, n in counts.items() if n >= 3}
    assert set(vocab.tokens[3:]) == kept and vocab.tokens[:3] == ["<pad>", "<unk>", "</s>"]
    assert [counts[t] for t in vocab.tokens[3:]] == sorted((counts[t] for t in kept), reverse=True)
    assert vocab.encode(["The", "THE", "zzzqx"]) == [vocab.tokens.index("the")] * 2 + [vocab.unk]
    capped = Vocabulary.build(words, level="word", lowercase=False, max_size=100, min_count=1)
    cased = Counter(forms)
    assert capped.tokens[3:] == sorted(cased, key=lambda w: (-cased[w], w))[:97]
    assert "The" in capped.tokens and "the" in capped.tokens
    chars = Vocabulary.build(words, level="char", lowercase=True, min_count=1)
    assert set(chars.tokens[3:]) == set("".join(" ".join(w) for w in words).lower())
    ids, ends = chars.encode_sentence(["Go", "on"])
    assert [chars.tokens[i] for i in ids] == ["g", "o", " ", "o", "n"] and ends == [1, 4]
    with pytest.raises(ModelError, match="single characters"):
        chars.encode(["go"])


def small_models() -> dict[str, tuple[nn.Module, Vocabulary]]:
    words = Vocabulary.build([["a", "b", "c", "a"]], level="word", min_count=1)
    chars = Vocabulary.build([["abc", "d"]], level="char", min_count=1)
    torch.manual_seed(3)
    return {
        "lstm-lm": (build_model("lstm-lm", len(words), num_layers=2, dropout=0.1), words),
        "char-lm": (build_model("char-lm", len(chars), hidden_size=16), chars),
        "imaginet": (
            build_model("imaginet", len(words), image_dim=5, embedding_dim=6, hidden_size=4),
            words,
        ),
    }


@pytest.mark.parametrize("architecture", ["lstm-lm", "char-lm", "imaginet"])
def test_save_load_round_trip(tmp_path: Path, architecture: str) -> None:
    model, vocab = small_models()[architecture]
    training = {"training": {"corpus": ["en_ewt"], "epochs": 3, "seed": 7, "dev_loss": 1.5}}
    save_checkpoint(tmp_path / "ck", model, vocab, training)
    loaded = load_checkpoint(tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["architecture"] == architecture and config["batch_first"] is True
    assert config["level"] == vocab.level and config["lowercase"] is True
    assert config["training"] == training["training"] and loaded.config == config
    assert json.loads((tmp_path / "ck" / "vocab.json").read_text())["tokens"] == vocab.tokens
    assert loaded.vocab == vocab and not loaded.model.training
    ids = torch.tensor([[3, 4, 5], [4, 3, 0]])
    model.eval()
    with torch.no_grad():
        before, after = model(ids), loaded.model(ids)
    for a, b in zip(before if isinstance(before, tuple) else [before],
                    after if isinstance(after, tuple) else [after], strict=True):  # fmt: skip
        assert torch.equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary folder left


def test_save_replaces_a_checkpoint_but_not_a_foreign_folder(tmp_path: Path) -> None:
    model, vocab = small_models()["lstm-lm"]
    save_checkpoint(tmp_path / "ck", model, vocab, {"training": {"epochs": 1}})
    save_checkpoint(tmp_path / "ck", model, vocab, {"training": {"epochs": 2}})
    assert load_checkpoint(tmp_path / "ck").config["training"]["epochs"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ModelError, match="exists and is not a checkpoint folder"):
        save_checkpoint(tmp_path / "notes", model, vocab, {})
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    with pytest.raises(ModelError, match="config 'architecture' is 'lstm-lm' for this model"):
        save_checkpoint(tmp_path / "x", model, vocab, {"architecture": "imaginet"})


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def test_load_refuses_what_is_not_a_checkpoint(tmp_path: Path) -> None:
    model, vocab = small_models()["lstm-lm"]
    folder = tmp_path / "ck"
    save_checkpoint(folder, model, vocab, {})
    with pytest.raises(ModelError, match="no such folder") as exc:
        load_checkpoint(tmp_path / "nowhere")
    one_line(exc)
    with pytest.raises(ModelError, match=r"is not a checkpoint folder: no config.json") as exc:
        load_checkpoint(tmp_path)
    one_line(exc)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architecture": "transformer"}))
    with pytest.raises(
        ModelError, match=r"unknown architecture 'transformer'.*lstm-lm, char-lm"
    ) as exc:
        load_checkpoint(folder)
    one_line(exc)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON") as exc:
        load_checkpoint(folder)
    one_line(exc)
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(str(folder / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if k != "output.bias"}, str(folder / "model.safetensors")
    )
    with pytest.raises(ModelError, match=r"weights do not fit.*missing output\.bias") as exc:
        load_checkpoint(folder)
    one_line(exc)
    bigger = {**weights, "embedding.weight": torch.zeros(len(vocab) + 2, 64)}
    save_file(bigger, str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match=r"wrong shape embedding.weight \(8, 64\)") as exc:
        load_checkpoint(folder)
    one_line(exc)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="not a safetensors file") as exc:
        load_checkpoint(folder)
    one_line(exc)
    save_file(weights, str(folder / "model.safetensors"))
    chars = Vocabulary.build([["ab"]], level="char", min_count=1)
    (folder / "vocab.json").write_text(json.dumps(chars.to_json()))
    with pytest.raises(ModelError, match="a char-level vocabulary, but lstm-lm reads words") as exc:
        load_checkpoint(folder)
    one_line(exc)
