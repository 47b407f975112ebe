"""The text corpus of the shipped masked diffusion model: docstrings and comments of Python's standard library.

Every machine that runs Python has its standard library, so the corpus needs no download; but the library
differs slightly between Python versions, so the training corpus is extracted once
(``scripts/extract_text_corpus.py``) and shipped as ``models/weights/stdlib_text.txt.xz`` with its sha256 and the
Python version it came from in ``stdlib_text.json``.

Text. For each ``.py`` file under the standard library (sorted paths; the ``test``, ``tests``, ``idlelib``,
``lib2to3``, ``turtledemo`` and ``site-packages`` folders left out) the docstrings of the module, its classes and
functions (:mod:`ast`) and its comments (:mod:`tokenize`) are joined by single spaces. The text is
**lower-cased** (it halves the letters and doctests and prose use case inconsistently) and every run of white
space becomes one space (layout carries little meaning at a 64-character window). Each character is then mapped
to :data:`SYMBOLS`: the 26 letters, 10 digits, space and 20 punctuation marks; everything else becomes the
"other" symbol :data:`OTHER` (``~``). That is ``V = 58`` tokens; the mask token is ``58``
(:func:`~diffsample.discrete.contracts.mask_id`).

Storage. One record per source file, ``relative/path<TAB>text<NEWLINE>`` (neither tab nor newline is a symbol),
xz-compressed. The held-out split is by source file: a file is held out when ``crc32(path) % 10 == 0``
(about a tenth of the files), so no sentence of a held-out file was seen in training.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import lzma
import sys
import tokenize
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

__all__ = [
    "CORPUS_FILE",
    "OTHER",
    "SYMBOLS",
    "VOCAB_SIZE",
    "Corpus",
    "decode",
    "encode",
    "extract_file_text",
    "extract_stdlib",
    "is_heldout",
    "load_corpus",
    "normalise",
    "write_corpus",
]

SYMBOLS = "abcdefghijklmnopqrstuvwxyz0123456789 .,:;'\"()[]-_=*/!?<>`~"
"""The vocabulary, token id = index: letters, digits, space, 20 punctuation marks, and ``~`` = "other"."""

OTHER = "~"
"""The symbol every character outside :data:`SYMBOLS` becomes (its id is ``VOCAB_SIZE - 1``)."""

VOCAB_SIZE = len(SYMBOLS)
"""``V = 58``; the mask token is ``V``."""

CORPUS_FILE = Path(__file__).resolve().parent.parent / "models" / "weights" / "stdlib_text.txt.xz"
"""The shipped extract; its provenance (sha256, Python version, counts) is next to it in ``stdlib_text.json``."""

_SKIP_PARTS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__", "lib2to3", "turtledemo"}
_INDEX = {c: i for i, c in enumerate(SYMBOLS)}
_BYTE_IDS = torch.tensor([_INDEX.get(chr(b), len(SYMBOLS) - 1) for b in range(256)], dtype=torch.int64)


def normalise(text: str) -> str:
    """Lower-case, one space for each run of white space, characters outside :data:`SYMBOLS` → :data:`OTHER`."""
    words = text.lower().split()
    return "".join(c if c in _INDEX else OTHER for c in " ".join(words))


def encode(text: str) -> torch.Tensor:
    """Token ids (int64) of a normalised text; any character outside :data:`SYMBOLS` is encoded as "other"."""
    if not text.isascii():
        text = "".join(c if c in _INDEX else OTHER for c in text)
    return _BYTE_IDS[torch.frombuffer(bytearray(text.encode("ascii")), dtype=torch.uint8).long()]


def decode(tokens: torch.Tensor | list[int], mask: str = "_") -> str:
    """The text of a 1-D sequence of ids; the mask id (and anything ≥ ``V``) is shown as ``mask``."""
    ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
    return "".join(SYMBOLS[i] if 0 <= i < VOCAB_SIZE else mask for i in ids)


def extract_file_text(source: str) -> str:
    """Docstrings (module, classes, functions) and comments of one Python source, normalised and space-joined.

    A file that does not parse contributes its comments only; one that does not tokenize contributes nothing
    from :mod:`tokenize`.
    """
    pieces: list[str] = []
    try:
        tree = ast.parse(source)
        nodes = [
            tree,
            *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)),
        ]
        pieces += [doc for n in nodes if (doc := ast.get_docstring(n, clean=True))]
    except (SyntaxError, ValueError):
        pass
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                pieces.append(tok.string.lstrip("#!").strip())
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    return normalise(" ".join(p for p in pieces if p.strip()))


def extract_stdlib(root: str | Path | None = None) -> list[tuple[str, str]]:
    """``[(relative path, text)]`` for every standard-library ``.py`` file under ``root`` (module docstring)."""
    root = Path(root) if root is not None else Path(ast.__file__).resolve().parent
    records = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _SKIP_PARTS.intersection(rel.parts[:-1]):
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        text = extract_file_text(source)
        if text:
            records.append((rel.as_posix(), text))
    return records


def write_corpus(records: list[tuple[str, str]], path: str | Path = CORPUS_FILE) -> dict[str, object]:
    """Write ``records`` xz-compressed to ``path`` and its provenance JSON next to it; returns the provenance."""
    from ..files import atomic_write_bytes, atomic_write_text

    raw = "".join(f"{rel}\t{text}\n" for rel, text in records).encode("utf-8")
    data = lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
    path = Path(path)
    atomic_write_bytes(path, data)
    heldout = [r for r in records if is_heldout(r[0])]
    info = {
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "python": sys.version.split()[0],
        "files": len(records),
        "characters": sum(len(t) for _, t in records),
        "heldout_files": len(heldout),
        "heldout_characters": sum(len(t) for _, t in heldout),
        "symbols": SYMBOLS,
        "lowercase": True,
    }
    atomic_write_text(_info_path(path), json.dumps(info, indent=1) + "\n")
    return info


def _info_path(path: Path) -> Path:
    return path.with_name(path.name.split(".")[0] + ".json")


def is_heldout(rel_path: str) -> bool:
    """Whether the source file ``rel_path`` belongs to the held-out split (``crc32 % 10 == 0``)."""
    return zlib.crc32(rel_path.encode("utf-8")) % 10 == 0


@dataclass(frozen=True)
class Corpus:
    """The two splits as 1-D int64 token streams (files joined by one space) and the shipped provenance."""

    train: torch.Tensor
    heldout: torch.Tensor
    info: dict[str, object]


@lru_cache(maxsize=2)
def load_corpus(path: str | Path = CORPUS_FILE, *, verify: bool = True) -> Corpus:
    """The shipped corpus, split by source file; ``verify`` checks the file's sha256 against its JSON."""
    path = Path(path)
    data = path.read_bytes()
    info = json.loads(_info_path(path).read_text())
    if verify and hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise ValueError(f"{path} does not match the sha256 in {_info_path(path).name}")
    train: list[str] = []
    heldout: list[str] = []
    for line in lzma.decompress(data).decode("utf-8").splitlines():
        rel, _, text = line.partition("\t")
        (heldout if is_heldout(rel) else train).append(text)
    return Corpus(encode(" ".join(train)), encode(" ".join(heldout)), info)
