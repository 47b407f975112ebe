"""Atomic file writes: a file is either its old content or its complete new content, never a fragment.

Every file the library writes goes through :func:`atomic_write`: the content goes to a temporary file in the
destination's own folder (same file system), is flushed and ``fsync``-ed, then ``os.replace``-d over the
destination (atomic on POSIX and Windows). A failure while producing the content (serialisation error, full
disk, interrupt) leaves the old file untouched and removes the temporary file. A destination that is a symbolic
link is refused unless ``follow_symlinks`` is set, so a write never lands outside the folder it names.
The file gets the permissions a plain ``open(path, "w")`` would give it: those of the file it replaces, else
``0o666`` less the process's umask (the temporary file's own ``0o600`` would otherwise leave, say, a shared
sample set readable by its writer alone).
Safe to call from many threads at once: every call has its own uniquely named temporary file (and the umask is
read, never set: ``os.umask`` would change it for every thread).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .errors import DiffsampleError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "check_writable"]


def check_writable(path: str | os.PathLike[str], *, overwrite: bool = True, follow_symlinks: bool = False) -> Path:
    """``path`` after checking that a file can be written there, before any expensive work is done.

    Raises :class:`~diffsample.errors.DiffsampleError` naming the path when its folder cannot be created or
    written, when it is a folder, when it is a symbolic link (unless ``follow_symlinks``), or when it exists and
    ``overwrite`` is false.
    """
    target = Path(path)
    if target.is_symlink() and not follow_symlinks:
        raise DiffsampleError(f"{target} is a symbolic link; refusing to write through it")
    if target.is_dir():
        raise DiffsampleError(f"{target} is a folder, not a file path")
    if target.exists() and not overwrite:
        raise DiffsampleError(f"{target} exists; pass overwrite (--overwrite) to replace it")
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DiffsampleError(f"cannot create the folder {folder} for {target}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DiffsampleError(f"the folder {folder} is not writable (for {target})")
    return target


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "wb", *, follow_symlinks: bool = False, encoding: str | None = None
) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path`` atomically.

    ``mode`` is ``"wb"`` or ``"w"`` (text, ``encoding`` default UTF-8). Use as
    ``with atomic_write(p) as f: f.write(...)``; an exception inside the block leaves ``path`` as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    target = check_writable(path, follow_symlinks=follow_symlinks)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask, read without changing it (Linux: ``/proc/self/status``); ``0o022`` where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _mode_for(target: Path) -> int:
    """The permission bits the written file gets: the replaced file's, else ``0o666 & ~umask``."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes | Callable[[IO[bytes]], None], *, follow_symlinks: bool = False
) -> Path:
    """Write ``data`` (bytes, or a function writing to a binary file object) to ``path`` atomically."""
    with atomic_write(path, "wb", follow_symlinks=follow_symlinks) as handle:
        if callable(data):
            data(handle)
        else:
            handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, follow_symlinks: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w", follow_symlinks=follow_symlinks) as handle:
        handle.write(text)
    return Path(path)
