"""``actstore train``: the reference models learn (dev perplexity below a unigram model
counted here; IMAGINET's image vectors retrieved far above chance), a resumed run ends
with the weights of an uninterrupted one, and bad input is one line."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

import actstore
from actstore.cli import main
from actstore.data import corpus_path
from extractors import train_loop
from extractors.reference import build_model, load_checkpoint
from extractors.train import state_folder, train
from extractors.train_data import Images
from extractors.train_verbs import TrainOptions, TrainTarget

Sentences = dict[int, list[str]]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small models train fastest on one thread (and the CI machine has two cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ewt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3,000 sentences of EWT train (split train) and 400 of dev (split dev)."""
    path = tmp_path_factory.mktemp("train") / "ewt.actstore"
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [corpus_path("en_ewt", "train")], sentences=(0, 3000))
        actstore.ingest_conllu(store, [corpus_path("en_ewt", "dev")], sentences=(0, 400))
    return path


def sentences(store_path: Path, where: str) -> Sentences:
    with actstore.open(store_path) as store:
        rows = store.sql(f"SELECT sentence_id, form FROM tokens WHERE {where} ORDER BY row")
    out: Sentences = collections.defaultdict(list)
    for sentence, form in zip(rows.sentence_id, rows.form, strict=True):
        out[int(sentence)].append(str(form))
    return dict(out)


def sequences(found: Sentences, tokens: list[str], level: str) -> list[list[int]]:
    """Ids as the test reads the vocabulary: lowercased words, or the characters of the
    words joined by spaces; anything else is <unk> (1)."""
    index = {token: i for i, token in enumerate(tokens)}
    if level == "word":
        return [[index.get(w.lower(), 1) for w in words] for words in found.values()]
    return [[index.get(c, 1) for c in " ".join(words).lower()] for words in found.values()]


def targets(ids: list[int]) -> list[int]:
    return [*ids[1:], 2]  # each step predicts the next token, the last one </s>


def model_perplexity(model: torch.nn.Module, dev: list[list[int]]) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in dev:
            logits = model(torch.tensor([ids]))[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            total -= float(logp[torch.arange(len(ids)), torch.tensor(targets(ids))].sum())
            count += len(ids)
    return math.exp(total / count)


def unigram_perplexity(train: list[list[int]], dev: list[list[int]], n_tokens: int) -> float:
    """Add-one smoothed unigram model over the vocabulary (every token but <pad>)."""
    counts = collections.Counter(t for ids in train for t in targets(ids))
    n, size = sum(counts.values()), n_tokens - 1
    logp = [math.log((counts[t] + 1) / (n + size)) for ids in dev for t in targets(ids)]
    return math.exp(-sum(logp) / len(logp))


@pytest.mark.parametrize(
    ("architecture", "lr"), [("lstm-lm", 0.01), ("char-lm", 0.01)], ids=["word", "char"]
)
def test_language_models_beat_a_unigram_model(
    ewt: Path, tmp_path: Path, architecture: str, lr: float
) -> None:
    options = TrainOptions(epochs=2, lr=lr)
    report = train(TrainTarget(architecture, ewt, tmp_path / "lm", quiet=True), options)
    checkpoint = load_checkpoint(tmp_path / "lm")
    tokens, level = checkpoint.vocab.tokens, checkpoint.vocab.level
    train_ids = sequences(sentences(ewt, "split = 'train'"), tokens, level)
    dev_ids = sequences(sentences(ewt, "split = 'dev'"), tokens, level)
    trained = model_perplexity(checkpoint.model, dev_ids)
    torch.manual_seed(0)
    fresh = build_model(architecture, len(tokens), **checkpoint.config["model"]).eval()
    initial = model_perplexity(fresh, dev_ids)
    unigram = unigram_perplexity(train_ids, dev_ids, len(tokens))
    print(
        f"{architecture}: dev perplexity {trained:.2f}, unigram {unigram:.2f}, init {initial:.2f}"
    )
    assert trained < 0.8 * unigram < initial
    # the training code's own dev loss is the perplexity computed here
    assert report.dev_perplexity == pytest.approx(trained, rel=1e-4)
    assert checkpoint.config["training"]["dev"] == "split 'dev'"
    assert checkpoint.config["training"]["n_train_sentences"] == 3000


def synthetic_images(store_path: Path, path: Path, dim: int = 32) -> dict[int, np.ndarray]:
    """Image vectors that are a fixed linear map of each sentence's bag of words: every
    word seen twice in training turns on about 3 of ``dim`` units (by 0.3)."""
    every = sentences(store_path, "true")
    train_words = collections.Counter(
        w.lower() for words in sentences(store_path, "split = 'train'").values() for w in words
    )
    lexicon = sorted(w for w, n in train_words.items() if n >= 2)
    index = {w: i for i, w in enumerate(lexicon)}
    rng = np.random.default_rng(0)
    mapping = (rng.random((dim, len(lexicon))) < 3 / dim).astype(np.float32) * 0.3
    vectors = {}
    for sentence, words in every.items():
        bag = np.zeros(len(lexicon), np.float32)
        for w in words:
            if w.lower() in index:
                bag[index[w.lower()]] += 1
        vectors[sentence] = mapping @ bag
    ids = sorted(vectors)
    table = pa.table({"sentence_id": ids, "vector": [vectors[i].tolist() for i in ids]})
    pq.write_table(table, path)
    return vectors


def test_imaginet_learns_the_synthetic_images(ewt: Path, tmp_path: Path) -> None:
    vectors = synthetic_images(ewt, tmp_path / "images.parquet")
    short = "n_words <= 20"
    options = TrainOptions(
        images=tmp_path / "images.parquet", alpha=0.0, embedding_dim=128, hidden_size=128,
        lr=0.003, epochs=5, where=short, dev_where=f"split = 'dev' AND {short}",
    )  # fmt: skip
    train(TrainTarget("imaginet", ewt, tmp_path / "visual", quiet=True), options)
    checkpoint = load_checkpoint(tmp_path / "visual")
    dev = sentences(ewt, "split = 'dev' AND sentence_length <= 20")
    truth = np.stack([vectors[s] for s in dev])
    ids = sequences(dev, checkpoint.vocab.tokens, "word")

    def predict(model: torch.nn.Module) -> np.ndarray:
        with torch.no_grad():
            return np.stack([model(torch.tensor([x])).image[0].numpy() for x in ids])

    torch.manual_seed(0)
    fresh = build_model("imaginet", len(checkpoint.vocab), **checkpoint.config["model"]).eval()
    trained, initial = predict(checkpoint.model), predict(fresh)
    mse = float(((trained - truth) ** 2).mean())
    mse_initial = float(((initial - truth) ** 2).mean())
    mse_mean = float(((truth.mean(0) - truth) ** 2).mean())  # always the average image

    def unit(m: np.ndarray) -> np.ndarray:
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    nearest = np.argmax(unit(trained) @ unit(truth).T, axis=1)
    recall = float((nearest == np.arange(len(dev))).mean())
    print(f"imaginet: dev MSE {mse:.4f} (init {mse_initial:.4f}, mean image {mse_mean:.4f}), "
          f"R@1 {recall:.3f} among {len(dev)} (chance {1 / len(dev):.4f})")  # fmt: skip
    assert mse < 0.75 * mse_mean < mse_initial
    assert recall > 20 / len(dev)


def test_imaginet_loss_is_the_papers() -> None:
    torch.manual_seed(0)
    model = build_model("imaginet", 12, image_dim=3, embedding_dim=5, hidden_size=4)
    ids = torch.tensor([[3, 4, 5], [6, 7, 0]])
    next_words = torch.tensor([[4, 5, 2], [7, 2, -100]])
    images = torch.rand(2, 3)
    loss, _ = train_loop.batch_loss(model, ids, next_words, images, alpha=0.3)
    with torch.no_grad():
        out = model(ids)
    logp = torch.log_softmax(out.word_logits.double(), -1).detach().numpy()
    picked = [logp[b, t, int(next_words[b, t])] for b in range(2) for t in range(3) if t < 3 - b]
    textual = -float(np.mean(picked))
    visual = float(((out.image.double() - images.double()) ** 2).mean())
    assert float(loss.detach()) == pytest.approx(0.3 * textual + 0.7 * visual, rel=1e-5)


def test_imaginet_multitask_and_textual(ewt_small: Path, tmp_path: Path) -> None:
    synthetic_images(ewt_small, tmp_path / "images.parquet", dim=4)
    sizes = dict(split="*", embedding_dim=8, hidden_size=8, epochs=1)
    target = TrainTarget("imaginet", ewt_small, tmp_path / "multitask", quiet=True)
    train(target, TrainOptions(**sizes, images=tmp_path / "images.parquet", alpha=0.5))
    config = load_checkpoint(tmp_path / "multitask").config
    assert config["model"]["image_dim"] == 4 and config["training"]["alpha"] == 0.5
    assert "dev_perplexity" not in config["training"]
    target = TrainTarget("imaginet", ewt_small, tmp_path / "textual", quiet=True)
    report = train(target, TrainOptions(**sizes, alpha=1.0))  # TEXTUAL: no image needed
    assert report.dev_perplexity is not None
    assert load_checkpoint(tmp_path / "textual").config["training"]["images"] is None


def small_run(store: Path, out: Path, **changes: Any) -> tuple[TrainTarget, TrainOptions]:
    options = dict(split="*", hidden_size=16, embedding_dim=16, layers=2, dropout=0.2, patience=9)
    return TrainTarget("lstm-lm", store, out, quiet=True), TrainOptions(**{**options, **changes})


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def last_weights(out: Path) -> dict[str, torch.Tensor]:
    state = torch.load(state_folder(out) / "state.pt", weights_only=True)
    return dict(state["model"])


def test_a_resumed_run_ends_as_an_uninterrupted_one(
    ewt_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(*small_run(ewt_small, tmp_path / "whole", epochs=3))
    # stopped after epoch 1 (by epochs), then continued to 3
    assert train(*small_run(ewt_small, tmp_path / "parts", epochs=1)).epochs_run == 1
    report = train(*small_run(ewt_small, tmp_path / "parts", epochs=3))
    assert (report.epochs_run, report.new_epochs) == (3, 2)
    assert same(weights(tmp_path / "parts"), weights(tmp_path / "whole"))
    assert same(last_weights(tmp_path / "parts"), last_weights(tmp_path / "whole"))
    # killed in the middle of epoch 2, then the same command again
    calls = {"n": 0}
    real = train_loop.batch_loss

    def dies_in_epoch_two(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 7:  # epoch 1 is 4 batches of training and 1 of dev
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_loop, "batch_loss", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(*small_run(ewt_small, tmp_path / "killed", epochs=3))
    monkeypatch.setattr(train_loop, "batch_loss", real)
    report = train(*small_run(ewt_small, tmp_path / "killed", epochs=3))
    assert report.new_epochs == 2
    assert same(weights(tmp_path / "killed"), weights(tmp_path / "whole"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_early_stopping_keeps_the_best_epoch(
    ewt_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    losses = iter([3.0, 2.0, 2.5, 2.6, 1.0])
    monkeypatch.setattr(train_loop, "evaluate", lambda *args: next(losses))
    report = train(*small_run(ewt_small, tmp_path / "stopped", epochs=10, patience=2))
    assert (report.epochs_run, report.best_epoch, report.dev_loss) == (4, 2, 2.0)
    config = load_checkpoint(tmp_path / "stopped").config["training"]
    assert config["stopped_early"] and config["epochs"] == 2 and config["epochs_run"] == 4
    monkeypatch.undo()
    train(*small_run(ewt_small, tmp_path / "two", epochs=2))
    assert same(weights(tmp_path / "stopped"), weights(tmp_path / "two"))
    again = train(*small_run(ewt_small, tmp_path / "stopped", epochs=10, patience=2))
    assert again.new_epochs == 0 and again.best_epoch == 2
    assert same(weights(tmp_path / "stopped"), weights(tmp_path / "two"))


def test_where_chooses_the_sentences_holding_a_match(ewt_small: Path, tmp_path: Path) -> None:
    train(*small_run(ewt_small, tmp_path / "propn", epochs=1, where="upos = 'PROPN'"))
    config = load_checkpoint(tmp_path / "propn").config["training"]
    with actstore.open(ewt_small) as store:
        expected = store.sql(
            "SELECT count(DISTINCT sentence_id) AS n FROM tokens WHERE upos = 'PROPN'"
        ).n[0]
    assert config["n_train_sentences"] + config["n_dev_sentences"] == expected
    assert config["dev"] == "every tenth training sentence"
    assert config["n_dev_sentences"] == expected // 10


def test_the_command_line_trains_and_resumes(
    ewt_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lm"
    args = ["train", "lstm-lm", str(ewt_small), "--out", str(out), "--split", "*"]
    small = ["--hidden-size", "8", "--embedding-dim", "8", "--threads", "1"]
    assert main([*args, *small, "--epochs", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("lstm-lm: 1 epochs, best 1 (dev loss ")
    assert "epoch 1/1: train loss" in captured.err
    assert main([*args, *small, "--epochs", "2", "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert load_checkpoint(out).config["training"]["epochs_run"] == 2


def error_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("actstore: error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_one_line(
    ewt_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, out = str(ewt_small), str(tmp_path / "out")
    err = error_line(capsys, "train", "gpt", store, "--out", out)
    assert "architecture must be lstm-lm, char-lm or imaginet, got 'gpt'" in err
    err = error_line(capsys, "train", "lstm-lm", store, "--out", out)
    assert "--split 'train' is not a split of " in err and "its splits: dev" in err
    err = error_line(capsys, "train", "lstm-lm", store, "--out", out, "--split", "*",
                     "--where", "upos = 'NOPE'")  # fmt: skip
    assert "--where selects no sentence of" in err
    err = error_line(capsys, "train", "imaginet", store, "--out", out, "--split", "*")
    assert "--images is needed by imaginet" in err
    err = error_line(capsys, "train", "lstm-lm", store, "--out", out, "--images", "x.parquet")
    assert "--images are for imaginet, not lstm-lm" in err
    few = tmp_path / "few.parquet"
    pq.write_table(pa.table({"sentence_id": [0, 1, 2], "vector": [[1.0], [2.0], [3.0]]}), few)
    err = error_line(capsys, "train", "imaginet", store, "--out", out, "--split", "*",
                     "--images", str(few))  # fmt: skip
    assert f"--images {few} has no vector for 105 of the 108 training sentences" in err
    no_ids = tmp_path / "no_ids.parquet"
    pq.write_table(pa.table({"id": [0], "vector": [[1.0]]}), no_ids)
    err = error_line(capsys, "train", "imaginet", store, "--out", out, "--split", "*",
                     "--images", str(no_ids))  # fmt: skip
    assert "has no sentence_id (or sent_id) column; columns: id, vector" in err
    assert not (tmp_path / "out").exists()
    # a run resumed with other settings, and a folder that is not a run
    assert main(["train", "lstm-lm", store, "--out", out, "--split", "*", "--epochs", "1",
                 "--hidden-size", "8", "-q"]) == 0  # fmt: skip
    err = error_line(capsys, "train", "lstm-lm", store, "--out", out, "--split", "*",
                     "--hidden-size", "8", "--lr", "0.01")  # fmt: skip
    assert "holds a run with other settings (lr: 0.001 -> 0.01)" in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    err = error_line(capsys, "train", "lstm-lm", store, "--out", str(tmp_path / "mine"))
    assert "already holds files and no run to resume" in err


def test_image_files_in_both_formats(dev_store: actstore.Store, tmp_path: Path) -> None:
    matrix = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.save(tmp_path / "feats.npy", matrix)
    (tmp_path / "feats.txt").write_text("sentence_id\n4\n0\n7\n")
    images = Images.read(tmp_path / "feats.npy", None, dev_store)
    assert images.vectors_for(np.array([0, 7]), "dev").tolist() == [[2.0, 3.0], [4.0, 5.0]]
    sent_ids = dev_store.sql("SELECT sent_id FROM sentences WHERE sentence_id IN (4, 0, 7) "
                             "ORDER BY list_position([4, 0, 7], sentence_id)").sent_id  # fmt: skip
    (tmp_path / "named.txt").write_text("sent_id\n" + "\n".join(sent_ids) + "\n")
    named = Images.read(tmp_path / "feats.npy", tmp_path / "named.txt", dev_store)
    assert named.vectors_for(np.array([4, 0, 7]), "dev").tolist() == matrix.tolist()
    table = pa.table({"sent_id": list(sent_ids), "vector": matrix.tolist()})
    pq.write_table(table, tmp_path / "named.parquet")
    parquet = Images.read(tmp_path / "named.parquet", None, dev_store)
    assert parquet.vectors_for(np.array([4, 0, 7]), "dev").tolist() == matrix.tolist()
    (tmp_path / "bad.txt").write_text("id\n4\n0\n7\n")
    with pytest.raises(actstore.ParameterError, match="first line must be sentence_id or sent_id"):
        Images.read(tmp_path / "feats.npy", tmp_path / "bad.txt", dev_store)
    (tmp_path / "unknown.txt").write_text("sent_id\nnope\nx\ny\n")
    with pytest.raises(actstore.ParameterError, match="sent_id 'nope' is not in"):
        Images.read(tmp_path / "feats.npy", tmp_path / "unknown.txt", dev_store)
