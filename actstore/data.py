"""Where the shared real data lives (UD treebanks, word-similarity sets).

The data stays outside the project, in ``../shared/data`` beside the checkout; the
environment variable ``ACTSTORE_DATA`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from actstore.errors import DataNotFoundError

ENV_VAR = "ACTSTORE_DATA"
DEFAULT_CORPUS = ("en_ewt", "dev")


def data_dir() -> Path:
    """The shared data directory, checked to exist.

    Looks at ``$ACTSTORE_DATA``, then ``../shared/data`` from the current directory
    and from the source checkout this package was installed from.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        if not (path / "ud").is_dir():
            raise DataNotFoundError(
                f"{ENV_VAR}={env} does not hold the shared data (no ud/ folder)"
            )
        return path
    here = Path(__file__).resolve().parent.parent
    for base in (Path.cwd(), here):
        for parent in (base, *base.parents):
            candidate = parent.parent / "shared" / "data"
            if (candidate / "ud").is_dir():
                return candidate
    raise DataNotFoundError(
        "shared data not found: expected ../shared/data beside the checkout; "
        f"set {ENV_VAR} to its location"
    )


SAMPLE = Path(__file__).resolve().parent / "sample" / "en_ewt-ud-dev.conllu.gz"


def demo_corpus() -> Path:
    """UD English-EWT dev from the shared data; without it, the 200-sentence sample of
    it that actstore ships (``actstore/sample``, CC BY-SA 4.0, see its NOTICE.md).

    Examples
    --------
    >>> demo_corpus().name
    'en_ewt-ud-dev.conllu'
    """
    try:
        return corpus_path(*DEFAULT_CORPUS)
    except DataNotFoundError:
        return SAMPLE


def corpus_path(treebank: str, split: str) -> Path:
    """Path of a UD treebank split in the shared data, e.g. ``("en_ewt", "dev")``."""
    path = data_dir() / "ud" / treebank / f"{treebank}-ud-{split}.conllu"
    if not path.is_file():
        available = sorted(p.name for p in (data_dir() / "ud").glob("*/*.conllu"))
        raise DataNotFoundError(f"{path} not found; available: {', '.join(available)}")
    return path
