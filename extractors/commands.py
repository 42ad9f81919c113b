"""What ``actstore extract`` runs: pick the extractor for the model, run the driver.

Transformers and recurrent models (a checkpoint folder or a factory,
:mod:`extractors.recurrent`) today; a new family (CNNs, static vectors) adds a branch
to :func:`extractor_for` that recognises its models. A transformer runs through
:func:`extractors.transformer.extract`, which adds its sentence sites (a second driver
run, over the ``sentences`` table) when asked.
"""

from __future__ import annotations

import ctypes
import sys

from extractors.base import Extractor
from extractors.driver import ExtractReport, run
from extractors.verbs import ExtractOptions, ExtractTarget, is_image_model, is_recurrent_model


def extractor_for(options: ExtractOptions) -> Extractor:
    """The extractor that runs ``options.model``: the CNN one for an image model
    (:func:`~extractors.verbs.is_image_model`), the recurrent one for a checkpoint
    folder or a factory with a vocabulary, else a transformer's."""
    if is_image_model(options.model, options.vocab):
        from extractors.cnn import CNNExtractor

        return CNNExtractor(options)
    if is_recurrent_model(options.model):
        from extractors.recurrent import RecurrentExtractor

        return RecurrentExtractor(options)
    from extractors.transformer import TransformerExtractor

    return TransformerExtractor(options)


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

    Examples
    --------
    >>> store.close()
    >>> options = ExtractOptions(sites="layer.0")
    >>> report = extract(ExtractTarget(store_path), options)  # doctest: +SKIP
    extracted 1 sites (minilm/layer.0 .. minilm/layer.0) over 698 rows, 775 model tokens, ...
    """
    options.check()
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
        report = transformer(target.store, options, loaded=extractor)
    elif isinstance(extractor, CNNExtractor):  # and the predictions
        report = images(target.store, options, loaded=extractor)
    else:
        report = run(target.store, extractor, options)
    if not target.quiet:
        print(report.summary())
    return report
