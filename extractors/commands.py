"""What ``actstore extract`` runs: pick the extractor for the model, run the driver.

Transformers and recurrent models (a checkpoint folder or a factory,
:mod:`extractors.recurrent`) today; a new family (CNNs, static vectors) adds a branch
to :func:`extractor_for` that recognises its models. A transformer runs through
:func:`extractors.transformer.extract`, which adds its sentence sites (a second driver
run, over the ``sentences`` table) when asked.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import sys
from pathlib import Path

from actstore.manifest import atomic_write
from extractors.base import Extractor
from extractors.driver import ExtractReport, run
from extractors.verbs import ExtractOptions, ExtractTarget, is_image_model, is_recurrent_model

# where set, `extract` also writes its report there as JSON: how the processes that
# `--workers` starts (with --quiet) tell it what they did
REPORT_ENV = "ACTSTORE_EXTRACT_REPORT"


def extractor_class(options: ExtractOptions) -> type[Extractor]:
    """The class of extractor that runs ``options.model``: the CNN one for an image
    model (:func:`~extractors.verbs.is_image_model`), the recurrent one for a checkpoint
    folder or a factory with a vocabulary, else a transformer's. Loads no model.

    Examples
    --------
    >>> extractor_class(ExtractOptions(model="minilm")).__name__
    'TransformerExtractor'
    """
    if is_image_model(options.model, options.vocab):
        from extractors.cnn import CNNExtractor

        return CNNExtractor
    if is_recurrent_model(options.model):
        from extractors.recurrent import RecurrentExtractor

        return RecurrentExtractor
    from extractors.transformer import TransformerExtractor

    return TransformerExtractor


def extractor_for(options: ExtractOptions) -> Extractor:
    """The extractor that runs ``options.model`` (:func:`extractor_class`), loaded."""
    # every extractor class takes the options first
    return extractor_class(options)(options)  # type: ignore[call-arg]


def return_large_frees(threshold: int = 1 << 20) -> bool:
    """Have glibc map blocks over ``threshold`` bytes and unmap them when freed.

    By default glibc raises its mmap threshold to the largest block freed so far (up
    to 32 MiB), after which a forward pass's activation-sized temporaries are carved
    from the heap and stay resident, fragmented: about 100 MiB of the peak of
    ``actstore extract`` on CPU. A fixed threshold gives them back at once. Only the
    command does this (it owns its process); returns False where it cannot.

    Examples
    --------
    >>> return_large_frees() in (True, False)
    True
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold = -3
    return bool(libc.mallopt(m_mmap_threshold, threshold))


def list_sites(extractor: Extractor) -> str:
    """The sites ``extractor`` can write, a line each: name, units, shape, module.

    Examples
    --------
    >>> from extractors.base import SiteSpec
    >>> class Two(Extractor):
    ...     def sites(self):
    ...         return [SiteSpec("m/a", 4, {"module": "x.0", "output_shape": [1, 2, 2]}),
    ...                 SiteSpec("m/logits", 10)]
    ...     def compute(self, batch):
    ...         raise NotImplementedError
    >>> print(list_sites(Two()))
    m/a       4 units  output (1, 2, 2)  module x.0
    m/logits 10 units
    """
    specs = extractor.sites()
    width = max((len(s.name) for s in specs), default=0)
    digits = max((len(str(s.n_units)) for s in specs), default=0)
    lines = []
    for spec in specs:
        line = f"{spec.name:<{width}} {spec.n_units:>{digits}} units"
        shape = spec.unit_shape or spec.provenance.get("output_shape")
        if shape:
            line += f"  {'maps' if spec.unit_shape else 'output'} {tuple(shape)}"
        if spec.provenance.get("module"):
            line += f"  module {spec.provenance['module']}"
        lines.append(line)
    return "\n".join(lines)


def extract(target: ExtractTarget, options: ExtractOptions) -> ExtractReport | None:
    """Run the extraction ``options`` describe into ``target.store``; print its summary.

    With ``options.workers`` above 1 the shards run as that many processes
    (:func:`extractors.workers.run_workers`) and the summary is theirs together.

    Examples
    --------
    >>> store.close()
    >>> options = ExtractOptions(sites="layer.0")
    >>> report = extract(ExtractTarget(store_path), options)  # doctest: +SKIP
    extracted 1 sites (minilm/layer.0 .. minilm/layer.0) over 698 rows, 775 model tokens, ...
    """
    options.check()
    if options.workers > 1 and not target.list_sites:  # N processes, one shard each
        from extractors.workers import run_workers

        report = run_workers(target.store, options)
    else:
        found = _extract_here(target, options)
        if found is None:
            return None
        report = found
    if os.environ.get(REPORT_ENV):
        save_report(report, Path(os.environ[REPORT_ENV]))
    if not target.quiet:
        print(report.summary())
    return report


def _extract_here(target: ExtractTarget, options: ExtractOptions) -> ExtractReport | None:
    """The extraction in this process (None: the sites were listed instead)."""
    return_large_frees()
    from extractors.cnn import CNNExtractor
    from extractors.cnn import extract as images
    from extractors.transformer import TransformerExtractor
    from extractors.transformer import extract as transformer

    extractor = extractor_for(options)
    if target.list_sites:
        print(list_sites(extractor))
        return None
    if isinstance(extractor, TransformerExtractor):  # word and sentence sites
        return transformer(target.store, options, loaded=extractor)
    if isinstance(extractor, CNNExtractor):  # and the predictions
        return images(target.store, options, loaded=extractor)
    return run(target.store, extractor, options)


def save_report(report: ExtractReport, path: Path) -> None:
    """Write ``report`` to ``path`` as JSON: ``{"parts": [...]}``, one per driver run
    (word sites, sentence sites), each the fields of an :class:`ExtractReport`.

    Examples
    --------
    >>> save_report(ExtractReport(["m/layer.0"], 698, 1, 1.0, "cpu"), tmp / "r.json")
    >>> json.loads((tmp / "r.json").read_text())["parts"][0]["rows"]
    698
    """
    parts = getattr(report, "parts", None) or [report]
    fields = [
        {f.name: getattr(p, f.name) for f in dataclasses.fields(ExtractReport)} for p in parts
    ]
    atomic_write(path, json.dumps({"parts": fields}).encode())
