"""Results kept on disk between runs: one directory rule, keyed file names and atomic writes.

Every disk cache of diffsample and of its benchmark harness goes through here (the exact ODE references of
:func:`~diffsample.testbeds.reference_solution`, the benchmarks' model references, tuned plans and
statistics):

* **where**: ``$DIFFSAMPLE_CACHE/<kind>`` when that variable is set, else ``~/.cache/diffsample/<kind>``
  (:func:`cache_dir`), unless the caller names a folder;
* **which file**: a SHA-256 of the settings (JSON, sorted keys) and the bytes of the inputs
  (:func:`key_digest`), so a file is only ever reused for exactly the same question;
* **how**: through :func:`diffsample.files.atomic_write` (the library's one home for atomic writes: a temporary
  file in the same folder, flushed, then moved into place with :func:`os.replace`), so a reader never sees a
  half-written file and concurrent writers of the same key simply replace one another's identical result.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from . import files

__all__ = ["cache_dir", "cache_root", "cached", "key_digest"]

T = TypeVar("T")


def cache_root() -> Path:
    """``$DIFFSAMPLE_CACHE`` if that variable is set, else ``~/.cache/diffsample``."""
    root = os.environ.get("DIFFSAMPLE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "diffsample"


def cache_dir(kind: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """``folder`` when given, else ``cache_root() / kind``."""
    return Path(folder) if folder is not None else cache_root() / kind


def key_digest(settings: object, *blobs: bytes) -> str:
    """Hex SHA-256 of ``settings`` as JSON (sorted keys) followed by ``blobs`` (e.g. an input array's bytes)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for blob in blobs:
        h.update(blob)
    return h.hexdigest()


def cached(
    path: str | os.PathLike[str] | None,
    compute: Callable[[], T],
    load: Callable[[Path], T],
    save: Callable[[T, IO[bytes]], object],
) -> T:
    """``load(path)`` when the file exists, else ``compute()``, saved atomically to ``path`` (unless it is ``None``)
    by ``save(value, handle)`` writing to a binary file object."""
    if path is not None and Path(path).exists():
        return load(Path(path))
    value = compute()
    if path is not None:
        files.atomic_write_bytes(path, lambda handle: save(value, handle))
    return value
