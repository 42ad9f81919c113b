"""CNN layers over the images table: EfficientNet-Lite0 on real photos, pooling,
spatial maps, predictions, the command line, and the contract suite on a small CNN.

Expected values come from a forward pass written here: the test's own preprocessing
(PIL resize and crop, ImageNet normalisation, as ``shared/docs/DATA.md`` says) and its
own hooks on the model, independent of :mod:`extractors.cnn`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import actstore
from actstore import cli
from extractors.cnn import CNNExtractor, extract
from extractors.image_models import ImageModel, Preprocess, load_image_model
from extractors.testing import ExtractorContract, clone
from extractors.verbs import ExtractOptions

skimage_data = pytest.importorskip("skimage.data")
Image = pytest.importorskip("PIL.Image")
pytest.importorskip("efficientnet_lite_pytorch")

PHOTOS = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket", "astronaut": "astronaut"}
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of the four scikit-image photos (JPEG, PNG) in class folders."""
    folder = tmp_path_factory.mktemp("photos")
    for label, name in PHOTOS.items():
        (folder / label).mkdir()
        suffix = ".png" if label == "rocket" else ".jpg"
        Image.fromarray(getattr(skimage_data, name)()).save(folder / label / f"{name}{suffix}")
    store = tmp_path_factory.mktemp("stores") / "photos.actstore"
    with actstore.create(store) as new:
        actstore.ingest_images(new, folder)
    return store


@pytest.fixture(scope="module")
def effnet() -> ImageModel:
    return load_image_model("effnet-lite0")


@pytest.fixture(scope="module")
def extracted(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = clone(photos, tmp_path_factory.mktemp("effnet") / "s")
    options = ExtractOptions(model="effnet-lite0", device="cpu", pool="block.15=none,avg")
    extract(store, options)
    return store


def reference_forward(paths: list[str], module: torch.nn.Module) -> dict[str, np.ndarray]:
    """Module outputs of the test's own preprocessing and hooks, float32."""
    batch = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        w, h = image.size
        s = 256 / min(w, h)
        image = image.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR)
        w, h = image.size
        left, top = (w - 224) // 2, (h - 224) // 2
        pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255
        batch.append(((pixels - MEAN) / STD).transpose(2, 0, 1))
    seen: dict[str, np.ndarray] = {}
    named = {"stem": "_conv_stem", "head": "_conv_head", "block.3": "_blocks.3"}
    named["block.15"] = "_blocks.15"
    hooks = [
        module.get_submodule(path).register_forward_hook(
            lambda _m, _i, out, site=site: seen.__setitem__(site, out.numpy().copy())
        )
        for site, path in named.items()
    ]
    with torch.inference_mode():
        seen["logits"] = module.eval()(torch.from_numpy(np.stack(batch))).numpy()
    for hook in hooks:
        hook.remove()
    return seen


def test_predictions_name_the_photos(extracted: Path) -> None:
    with actstore.open(extracted) as store:
        top = store.sql(
            "SELECT i.label, p.class, p.class_name, p.probability FROM images i "
            "JOIN predictions_effnet_lite0 p USING (row) WHERE p.rank = 1 ORDER BY i.label"
        ).set_index("label")
        ranks = store.sql(
            "SELECT row, list(rank ORDER BY rank) AS r FROM predictions_effnet_lite0 GROUP BY row"
        )
    assert top.loc["cat", "class"] in range(281, 286)  # tabby .. Egyptian cat
    assert (top.loc["coffee", "class"], top.loc["coffee", "class_name"]) == (967, "espresso")
    assert all(list(r) == [1, 2, 3, 4, 5] for r in ranks.r)


def test_sites_equal_a_forward_with_hooks(extracted: Path, effnet: ImageModel) -> None:
    with actstore.open(extracted) as store:
        paths = store.sql("SELECT path FROM images ORDER BY row").path.tolist()
        expected = reference_forward(paths, effnet.module)
        for site in ("stem", "block.3", "head"):
            got = store.acts(f"effnet-lite0/{site}").values
            want = expected[site].mean(axis=(2, 3))
            np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * np.abs(want).max())
        maps = store.acts("effnet-lite0/block.15")
        assert maps.dims == ("row", "channel", "y", "x")
        assert maps.shape == (4, 320, 7, 7)
        want = expected["block.15"]
        np.testing.assert_allclose(maps.values, want, rtol=2e-2, atol=2e-2 * np.abs(want).max())
        logits = store.acts("effnet-lite0/logits").values
        np.testing.assert_allclose(logits, expected["logits"], atol=0.05)
        info = store.site("effnet-lite0/block.15")
        assert info.unit_shape == (320, 7, 7) and info.shape == (4, 320, 7, 7)
        assert info.provenance["pooling"] == "none"
        assert info.provenance["preprocess"]["crop"] == 224
        assert store.site("effnet-lite0/stem").provenance["module"] == "_conv_stem"


def test_pooling_max_and_flatten(photos: Path, tmp_path: Path, effnet: ImageModel) -> None:
    store = clone(photos, tmp_path / "s")
    options = ExtractOptions(
        model="effnet-lite0", device="cpu", sites="block.3,head", pool="head=max,flatten"
    )
    extract(store, options, loaded=CNNExtractor(options, effnet))
    with actstore.open(store) as opened:
        paths = opened.sql("SELECT path FROM images ORDER BY row").path.tolist()
        expected = reference_forward(paths, effnet.module)
        head = opened.acts("effnet-lite0/head").values
        flat = opened.acts("effnet-lite0/block.3").values
        assert sorted(opened.sites) == [
            "effnet-lite0/block.3",
            "effnet-lite0/head",
            "effnet-lite0/logits",
        ]
    np.testing.assert_allclose(head, expected["head"].max(axis=(2, 3)), rtol=2e-2, atol=0.05)
    want = expected["block.3"].reshape(4, -1)
    np.testing.assert_allclose(flat, want, rtol=2e-2, atol=2e-2 * np.abs(want).max())


def test_command_line(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = clone(photos, tmp_path / "s")
    assert cli.main(["extract", str(store), "--model", "effnet-lite0", "--list-sites"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 20  # stem, 16 blocks, head, pool, logits
    assert listed[0].split()[:3] == ["effnet-lite0/stem", "32", "units"]
    assert "output (320, 7, 7)" in listed[16] and "module _blocks.15" in listed[16]
    args = ["extract", str(store), "--model", "effnet-lite0", "--sites", "block.1*", "-q"]
    assert cli.main([*args, "--pool", "mean"]) == 2
    assert "--pool must name avg, max, flatten or none" in capsys.readouterr().err
    assert cli.main([*args, "--device", "cpu"]) == 0
    with actstore.open(store) as opened:
        assert len(opened.sites) == 8  # block.1, block.10 .. block.15, logits
        assert "predictions_effnet_lite0" in opened.results
    assert cli.main([*args, "--device", "cpu", "--pool", "max"]) == 2
    assert "pooling: avg → max" in capsys.readouterr().err


def test_needs_an_images_table(
    ewt_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = clone(ewt_small, tmp_path / "s")
    assert cli.main(["extract", str(store), "--model", "effnet-lite0", "--device", "cpu"]) == 2
    assert "has no images table: `actstore ingest" in capsys.readouterr().err


def test_a_changed_image_is_refused(photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs" / "cat"
    folder.mkdir(parents=True)
    Image.fromarray(skimage_data.chelsea()).save(folder / "a.png")
    store = tmp_path / "s.actstore"
    with actstore.create(store) as new:
        actstore.ingest_images(new, tmp_path / "imgs")
    Image.fromarray(skimage_data.coffee()).save(folder / "a.png")
    with pytest.raises(actstore.ActStoreError, match=r"a.png \(images row 0\): changed since"):
        extract(store, ExtractOptions(model="effnet-lite0", device="cpu", sites="stem"))


# -- the contract suite, on a small seeded CNN over 700 digit images -------------------
class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.block = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.block(self.conv(x)).mean(dim=(2, 3)))
        return out


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_digits

    loaded = load_digits()
    images = (loaded.images[:700] * (255 / 16)).astype(np.uint8)
    big = np.kron(images, np.ones((4, 4), np.uint8))  # 32 x 32
    store = tmp_path_factory.mktemp("digits") / "digits.actstore"
    with actstore.create(store) as new:
        actstore.ingest_images(new, big, labels=[str(t) for t in loaded.target[:700]])
    return store


@pytest.mark.usefixtures("one_thread")  # a forked run with torch's thread pool could hang
class TestSmallCNNContract(ExtractorContract):
    def make_extractor(self) -> CNNExtractor:
        return CNNExtractor(self.options(), small_model([str(i) for i in range(10)]))

    def options(self) -> ExtractOptions:
        return ExtractOptions(
            device="cpu", chunk_rows=self.chunk_rows, pool="conv=none,avg", batch_images=50
        )

    @pytest.fixture(scope="class")
    @classmethod
    def template(cls, digits: Path) -> Path:
        return digits


@pytest.mark.usefixtures("one_thread")
def test_grows_with_the_images_table_and_takes_where(digits: Path, tmp_path: Path) -> None:
    contract = TestSmallCNNContract()
    whole = clone(digits, tmp_path / "whole")
    contract.run(whole)
    with actstore.open(digits) as store:
        paths = store.sql("SELECT path, label FROM images ORDER BY row")
    grown = tmp_path / "grown.actstore"
    first, rest = paths.iloc[:300], paths.iloc[300:]
    with actstore.create(grown) as store:
        # the same PNG files, by a list (paths inside the digits store)
        first.assign(path=[str(digits / p) for p in first.path]).to_csv(tmp_path / "a.csv")
        actstore.ingest_images(store, tmp_path / "a.csv")
    contract.run(grown, where="label = '3'")  # only some rows: images need no sentences
    with actstore.open(grown) as store:
        threes = store.rows("label = '3'", table="images")
        assert store.site("small/conv").n_covered == len(threes) < 300
    contract.run(grown)
    with actstore.open(grown, mode="a") as store:
        rest.assign(path=[str(digits / p) for p in rest.path]).to_csv(tmp_path / "b.csv")
        actstore.ingest_images(store, tmp_path / "b.csv")
    report = contract.run(grown)
    assert 400 <= report.rows <= 400 + contract.chunk_rows  # the new rows and one old chunk
    assert contract.run(grown).nothing_to_do
    for name in ("small/conv", "small/block", "small/logits"):
        with actstore.open(grown) as a, actstore.open(whole) as b:
            np.testing.assert_array_equal(a.acts(name).values, b.acts(name).values)


def small_model(classes: list[str] | None = None) -> ImageModel:
    sites = {"conv": "conv", "block": "block", "logits": ""}
    names = classes if classes is not None else [f"imagenet {i}" for i in range(1000)]
    return ImageModel("small", SmallCNN(), Preprocess(resize=32, crop=28), sites, names, {})


@pytest.mark.usefixtures("one_thread")
def test_named_runs_keep_their_own_predictions(digits: Path, tmp_path: Path) -> None:
    store = clone(digits, tmp_path / "s")
    digit_names = [f"digit {i}" for i in range(10)]
    options = ExtractOptions(device="cpu", sites="block", batch_images=100)
    extract(store, options, loaded=CNNExtractor(options, small_model(digit_names)))
    named = replace(options, name="mine")
    report = extract(store, named, loaded=CNNExtractor(named, small_model()))  # 1000 names
    assert report.summary().endswith("; top-5 predictions in predictions_mine")
    with actstore.open(store) as opened:
        assert sorted(opened.sites) == ["mine/block", "mine/logits", "small/block", "small/logits"]
        logits = opened.acts("mine/logits").values.astype(np.float64)
        ours = opened.sql("SELECT * FROM predictions_mine WHERE rank = 1 ORDER BY row")
        theirs = opened.sql("SELECT * FROM predictions_small WHERE rank = 1 ORDER BY row")
    np.testing.assert_array_equal(ours["class"], logits.argmax(axis=1))
    assert ours.class_name.isna().all()  # the model names 1000 classes, not its 10 outputs
    assert set(theirs.class_name) <= set(digit_names)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(ours.probability, softmax.max(axis=1) / softmax.sum(axis=1))


def test_pool_rules_must_name_maps(digits: Path) -> None:
    for rule, why in (("blok=none", "a typo"), ("logits=max", "logits give \\(N, units\\)")):
        options = ExtractOptions(device="cpu", pool=rule)
        with pytest.raises(actstore.ActStoreError, match=f"pool {rule} matches none .*{why}"):
            CNNExtractor(options, small_model()).sites()


def test_provenance_hashes_the_images_ingested(digits: Path, photos: Path) -> None:
    from extractors.driver import corpus_sha256

    with actstore.open(digits) as a, actstore.open(photos) as b:
        assert corpus_sha256(a, "images") != corpus_sha256(b, "images")
        assert corpus_sha256(a, "images") != corpus_sha256(a, "tokens")


@pytest.mark.usefixtures("one_thread")
def test_analyses_over_images(digits: Path, tmp_path: Path) -> None:
    from queries.correlate import unit_correlations
    from queries.options import ProbeOptions
    from queries.probe import probe

    store = clone(digits, tmp_path / "s")
    options = ExtractOptions(device="cpu", sites="block", batch_images=100)
    extract(store, options, loaded=CNNExtractor(options, small_model()))
    with actstore.open(store) as opened:
        with pytest.raises(actstore.ActStoreError, match="over table images: this analysis"):
            probe(opened, "small/block", ProbeOptions("label"))
        table = unit_correlations(opened, "small/block", "row", "label <> '0'")
        rows = opened.rows("label <> '0'", table="images")
        values = opened.acts("small/block", rows).values.astype(np.float64)
    pearson = table[table.metric == "pearson"].sort_values("unit")
    want = [np.corrcoef(values[:, u], rows)[0, 1] for u in range(values.shape[1])]
    np.testing.assert_allclose(pearson.value, want, rtol=1e-6, atol=1e-9)
