"""Images through a CNN beside word vectors of the same concepts, end to end: the
design of the CNN/word-vector paper (Dharmaretnam & Fyshe) on data that ships in PyPI
packages (docs/IMAGES.md says why these images).

1. An image folder of nameable concepts: scikit-learn's digits (classes ``zero`` ..
   ``nine``, upscaled from 8x8) and scikit-image's photos (``cat``, ``coffee``,
   ``rocket``, ``astronaut``, ``motorcycle``), written as PNG files in class folders.
2. ``actstore ingest STORE images FOLDER``; ``actstore extract STORE --model
   effnet-lite0 --sites "block.*,pool"``: every block of EfficientNet-Lite0, globally
   averaged, with the model's top-5 predictions in ``predictions_effnet_lite0``.
3. ``actstore ingest STORE vectors --glove``: GloVe 6B 50d over the ``words`` table.
4. Report: the predictions for the photos, the digits' top-1 classes, and for each
   block the Spearman correlation between its class-mean dissimilarities (1 - Pearson
   r between the classes' mean activations) and GloVe's for the class names: a first
   look at the paper's question, which layers relate to the words' meaning (issue 15
   brings the real RSA with permutation tests).

Run from the repository root (about a minute on 2 CPU cores)::

    .venv/bin/python docs/examples/images_end_to_end.py runs/images

``--per-class N`` sets how many digits of each class (default 30).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import actstore
from actstore.names import match_names
from actstore.verbs import verb

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PHOTOS = {
    "cat": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
    "astronaut": "astronaut",
    "motorcycle": "stereo_motorcycle",
}


def image_folder(folder: Path, per_class: int) -> Path:
    """Digits (64x64, nearest-neighbour upscaled) and photos in class folders."""
    from skimage import data
    from sklearn.datasets import load_digits

    images = folder / "images"
    shutil.rmtree(images, ignore_errors=True)
    digits = load_digits()
    seen = dict.fromkeys(range(10), 0)
    for pixels, target in zip(digits.images, digits.target, strict=True):
        if seen[target] == per_class:
            continue
        seen[target] += 1
        grey = (pixels * (255 / 16)).astype(np.uint8)
        (images / DIGITS[target]).mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(grey).resize((64, 64), Image.Resampling.NEAREST)
        big.save(images / DIGITS[target] / f"{seen[target]:03d}.png")
    for label, name in PHOTOS.items():
        pixels = getattr(data, name)()
        pixels = pixels[0] if isinstance(pixels, tuple) else pixels  # the stereo pair's left
        (images / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(images / label / f"{name}.png")
    return images


def rdm(vectors: np.ndarray) -> np.ndarray:
    """Upper triangle of 1 - Pearson r between rows."""
    upper: np.ndarray = 1 - np.corrcoef(vectors)[np.triu_indices(len(vectors), k=1)]
    return upper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-class", type=int, default=30)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    store = args.folder / "images.actstore"
    shutil.rmtree(store, ignore_errors=True)
    images = image_folder(args.folder, args.per_class)
    common = {"store": store, "quiet": True}
    verb("ingest")(store=store, files=(Path("images"), images))
    verb("extract")(**common, model="effnet-lite0", sites="block.*,pool", device="auto")
    verb("ingest")(store=store, files=(Path("vectors"),), glove=True)

    with actstore.open(store) as opened:
        photos = opened.sql(
            "SELECT i.label, p.rank, p.class, p.class_name, round(p.probability, 3) AS p "
            "FROM images i JOIN predictions_effnet_lite0 p USING (row) "
            f"WHERE i.label IN ({', '.join(repr(k) for k in PHOTOS)}) AND p.rank <= 3 "
            "ORDER BY i.label, p.rank"
        )
        digits = opened.sql(
            "SELECT i.label, p.class_name, count(*) AS n FROM images i "
            "JOIN predictions_effnet_lite0 p USING (row) WHERE p.rank = 1 AND i.label IN "
            f"({', '.join(repr(d) for d in DIGITS)}) GROUP BY i.label, p.class_name "
            "QUALIFY row_number() OVER (PARTITION BY i.label ORDER BY n DESC, p.class_name) = 1 "
            "ORDER BY i.label"
        )
        labels = [*DIGITS, *PHOTOS]
        in_labels = f"word IN ({', '.join(repr(w) for w in labels)})"
        glove = opened.acts("glove/vectors", where=in_labels, coords=["word"])
        glove = glove.swap_dims({"row": "word"}).sel(word=sorted(labels))
        digit_words = sorted(DIGITS)
        per_block = []
        for site in match_names(opened.sites, "effnet-lite0/block.*,effnet-lite0/pool"):
            means = opened.acts(site, coords=["label"]).groupby("label").mean().compute()
            row: dict[str, str | float] = {"site": site}
            for column, chosen in (("all_15", sorted(labels)), ("digits_10", digit_words)):
                model_rdm = pd.Series(rdm(means.sel(label=chosen).values))
                glove_rdm = pd.Series(rdm(glove.sel(word=chosen).values))
                row[column] = round(float(model_rdm.corr(glove_rdm, method="spearman")), 3)
            per_block.append(row)

    print("Photos, top-3 predictions:\n", photos.to_string(index=False))
    print("\nDigits, the most frequent top-1 class:\n", digits.to_string(index=False))
    table = pd.DataFrame(per_block)
    print("\nSpearman rho, class-mean RDM of each block against GloVe's (all 15 concepts;")
    print("the 10 digits alone, free of the digits-versus-photos split):")
    print(table.to_string(index=False))
    table.to_csv(args.folder / "block_vs_glove.csv", index=False)


if __name__ == "__main__":
    main()
