"""The manifest of a generated set: ``manifest.json`` beside the shard files, rewritten atomically after each shard.

It holds the settings, the seed rule, the library versions, the walk run, and per shard its sample range, file,
sha256 checksum and done flag. A shard counts as done only when its flag is set *and* its file's checksum
matches (:meth:`Manifest.verified`), so a partial, missing or corrupted file is computed again on resume.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..errors import DiffsampleError
from ..files import atomic_write_text
from .settings import SetSettings, Shard, shards_of

__all__ = ["MANIFEST", "Manifest", "file_sha256"]

MANIFEST = "manifest.json"
FORMAT = "diffsample-generate-set/1"
SEED_RULE = "sample i uses the noise stream diffsample.noise.derive_seed(seed, i), in model batch i // batch"


def file_sha256(path: Path) -> str | None:
    """The sha256 of the file's bytes, or ``None`` when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def versions() -> dict[str, str]:
    """The versions that decide the numbers: diffsample, torch, numpy, Python."""
    return {
        "diffsample": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


@dataclass
class Manifest:
    """A set's manifest (module docstring); ``records[k]`` is ``{"sha256": …, "done": …}`` for shard ``k``."""

    folder: Path
    settings: SetSettings
    records: list[dict[str, Any]]
    walk: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=versions)
    saved_versions: dict[str, str] | None = None
    """The versions of the run that wrote the saved manifest (its shards may differ from this run's in the last bit
    when they differ)."""

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    @property
    def shards(self) -> list[Shard]:
        return shards_of(self.settings)

    @classmethod
    def create(cls, folder: Path, settings: SetSettings) -> Manifest:
        return cls(folder, settings, [{"sha256": None, "done": False} for _ in shards_of(settings)])

    @classmethod
    def open(cls, folder: Path, settings: SetSettings) -> Manifest:
        """The manifest in ``folder`` for ``settings``: the saved one (same settings, else an error), or a new one."""
        path = folder / MANIFEST
        if not path.exists():
            return cls.create(folder, settings)
        try:
            data = json.loads(path.read_text())
            saved = SetSettings.from_dict(data["settings"])
            records = [{"sha256": s["sha256"], "done": bool(s["done"])} for s in data["shards"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DiffsampleError(f"{path} is not a generate-set manifest ({exc}); use another folder") from None
        if saved != settings:
            raise DiffsampleError(
                f"{folder} holds a set with other settings ({_difference(saved, settings)}); "
                "use another folder, or the same settings to resume"
            )
        return cls(folder, settings, records, data.get("walk"), saved_versions=data.get("versions"))

    def verified(self) -> list[bool]:
        """Per shard: done, with a file whose checksum is the recorded one. Flags of the others are cleared."""
        ok = []
        for shard, record in zip(self.shards, self.records, strict=True):
            good = bool(record["done"]) and file_sha256(self.folder / shard.file) == record["sha256"]
            if not good:
                record.update(done=False, sha256=None)
            ok.append(good)
        return ok

    def mark_done(self, index: int, sha256: str) -> None:
        self.records[index] = {"sha256": sha256, "done": True}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "settings": self.settings.to_dict(),
            "seed_rule": SEED_RULE,
            "versions": self.versions,
            "walk": self.walk,
            "shards": [
                {"index": s.index, "start": s.start, "stop": s.stop, "file": s.file, **r}
                for s, r in zip(self.shards, self.records, strict=True)
            ],
        }

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.to_dict(), indent=1) + "\n")


def _difference(a: SetSettings, b: SetSettings) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}: {da[k]!r} there, {db[k]!r} asked" for k in da if da[k] != db[k])
