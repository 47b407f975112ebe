"""What a generated set is: :class:`SetSettings`, and how it is cut into chunks and shards.

Sample ``i`` of a set is a function of ``(settings, i)`` alone: its noise stream is seeded with
``diffsample.noise.derive_seed(seed, i)`` and it is computed in the chunk ``i // batch`` of ``batch`` consecutive
samples (a network's batched arithmetic may round a row differently in another batch, so chunks never change).
A shard is ``shard_size`` consecutive samples, a whole number of chunks, so however the shards are spread over
workers, every chunk, and so every sample, is computed the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import DiffsampleError
from ..models.loading import SHIPPED_MODEL
from ..plan import Plan

__all__ = ["SHIPPED_MODEL", "SetSettings", "Shard", "shards_of"]


@dataclass(frozen=True)
class SetSettings:
    """The settings of one generated set (all JSON values, so a manifest holds them).

    ``model``: ``"digits"`` (the shipped network) or a diffusers model directory; ``nfe``, ``solver``,
    ``step_schedule`` or ``plan`` (a plan's JSON dict) as for :func:`diffsample.generate.configure`; ``class_label``
    a digit, ``"all"`` (sample ``i`` gets class ``i mod 10``) or ``None``; ``guidance`` the classifier-free
    guidance scale (with a class); ``shape`` the per-sample shape; ``batch`` samples per model batch (a chunk);
    ``shard_size`` samples per shard file (a multiple of ``batch``).
    """

    n: int
    seed: int = 0
    model: str = SHIPPED_MODEL
    nfe: int | None = 10
    solver: str | None = None
    step_schedule: str | None = None
    plan: dict[str, Any] | None = None
    guidance: float | None = None
    class_label: str | None = None
    shape: tuple[int, ...] = (1, 8, 8)
    batch: int = 250
    shard_size: int = 1000

    def __post_init__(self) -> None:
        for name in ("n", "batch", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DiffsampleError(f"{name} must be a positive integer, got {value!r}")
        if self.shard_size % self.batch:
            raise DiffsampleError(
                f"shard_size ({self.shard_size}) must be a multiple of batch ({self.batch}): a shard is whole "
                "chunks, so that a sample is computed in the same batch whatever the shards"
            )
        if self.guidance is not None and self.class_label is None:
            raise DiffsampleError("guidance needs a class label (guidance steers towards a class)")
        if self.class_label not in (None, "all", *map(str, range(10))):
            raise DiffsampleError(f"class_label must be a digit 0-9, 'all' or None, got {self.class_label!r}")
        if self.plan is not None:
            Plan.from_dict(self.plan)  # a bad plan fails here, not in every worker
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values (``shape`` a list)."""
        data = dataclasses.asdict(self)
        data["shape"] = list(self.shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SetSettings:
        """The settings :meth:`to_dict` wrote."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DiffsampleError(f"unknown generate-set settings {unknown}")
        return cls(**{**data, "shape": tuple(data.get("shape", (1, 8, 8)))})


@dataclass(frozen=True)
class Shard:
    """Samples ``start … stop − 1``, written to ``file`` (a name inside the set's folder)."""

    index: int
    start: int
    stop: int

    @property
    def file(self) -> str:
        return f"shard-{self.index:05d}.npz"

    @property
    def size(self) -> int:
        return self.stop - self.start


def shards_of(settings: SetSettings) -> list[Shard]:
    """The shards of a set, in order."""
    return [
        Shard(k, start, min(start + settings.shard_size, settings.n))
        for k, start in enumerate(range(0, settings.n, settings.shard_size))
    ]


def chunks_of(settings: SetSettings, shard: Shard) -> list[range]:
    """The model batches (chunks, module docstring) of ``shard``: global sample indices."""
    return [range(a, min(a + settings.batch, shard.stop)) for a in range(shard.start, shard.stop, settings.batch)]
