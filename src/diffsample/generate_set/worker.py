"""One shard of a generated set: sample its chunks, write its ``.npz`` file atomically, return its checksum.

Runs in a worker process (or a Ray task, or the calling process). Each worker computes with one torch thread,
so that the parallelism is the workers' and no result depends on a thread count; the model is loaded once per
process. The file holds ``samples`` (float32, ``(m, *shape)``), ``indices`` (the global sample indices), ``seeds``
(each sample's noise seed) and, for a class-conditional set, ``labels``.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import guidance, noise
from ..files import atomic_write_bytes
from ..generate import Walk, configure
from ..plan import Plan
from ..sampling import sample
from .settings import SetSettings, Shard, chunks_of

__all__ = ["ShardResult", "run_shard", "walk_of"]

_MODELS: dict[tuple[str, bool], tuple[Any, int | None]] = {}


@dataclass(frozen=True)
class ShardResult:
    """A written shard: its index, file checksum (sha256 of the bytes), the walk it ran and the worker's pid."""

    index: int
    sha256: str
    walk: dict[str, Any]
    pid: int


def _model(settings: SetSettings) -> tuple[Any, int | None]:
    """The model and its null label, loaded once per process."""
    key = (settings.model, settings.class_label is not None)
    if key not in _MODELS:
        from ..models.loading import load_model

        _MODELS[key] = load_model(settings.model, conditional=key[1])
    return _MODELS[key]


def _labels(settings: SetSettings, indices: range) -> torch.Tensor | None:
    """Sample ``i``'s class: the set's digit, or ``i mod 10`` for ``"all"`` (by global index, never by batch)."""
    if settings.class_label is None:
        return None
    if settings.class_label == "all":
        return torch.tensor(list(indices), dtype=torch.long) % 10
    return torch.full((len(indices),), int(settings.class_label), dtype=torch.long)


def walk_of(settings: SetSettings, model: Any) -> Walk:  # noqa: ANN401 - any σ-space model with a noise schedule
    """The walk (levels, solver, options) the settings ask for on ``model``'s span, as ``diffsample sample`` does."""
    span = float(model.noise_schedule.sigma_min), float(model.noise_schedule.sigma_max)
    per_call = 2 if settings.class_label is not None else 1
    if settings.plan is not None:
        return configure(settings.nfe, *span, calls_per_eval=per_call, plan=Plan.from_dict(settings.plan))
    return configure(
        settings.nfe,
        *span,
        calls_per_eval=per_call,
        solver=settings.solver,
        step_schedule=settings.step_schedule,
        model=model,
    )


def _chunk(settings: SetSettings, model: Any, null_label: int | None, walk: Walk, indices: range) -> np.ndarray:  # noqa: ANN401
    """Samples ``indices``: noise from their own seeded streams, then the walk (guided when a class is set)."""
    labels = _labels(settings, indices)
    denoiser = model
    if labels is not None:
        uncond = {"class_labels": torch.full_like(labels, null_label)} if null_label is not None else {}
        scale = 1.0 if settings.guidance is None else settings.guidance
        denoiser = guidance.cfg(model, scale, cond_kwargs={"class_labels": labels}, uncond_kwargs=uncond, batched=True)
    source = noise.seeded([noise.derive_seed(settings.seed, i) for i in indices])
    x = source.initial((len(indices), *settings.shape), float(walk.sigmas[0]))
    with torch.inference_mode():
        out = sample(denoiser, x, walk.sigmas, solver=walk.solver, noise=source, **walk.options)
    return out.to(torch.float32).numpy()


def shard_arrays(settings: SetSettings, shard: Shard) -> tuple[dict[str, np.ndarray], Walk]:
    """The arrays of ``shard``'s file, computed chunk by chunk with one torch thread, and the walk run."""
    model, null_label = _model(settings)
    walk = walk_of(settings, model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        parts = [_chunk(settings, model, null_label, walk, c) for c in chunks_of(settings, shard)]
    finally:
        torch.set_num_threads(threads)
    indices = np.arange(shard.start, shard.stop, dtype=np.int64)
    arrays = {
        "samples": np.concatenate(parts),
        "indices": indices,
        "seeds": np.array([noise.derive_seed(settings.seed, int(i)) for i in indices], dtype=np.uint64),
    }
    labels = _labels(settings, range(shard.start, shard.stop))
    if labels is not None:
        arrays["labels"] = labels.numpy()
    return arrays, walk


def run_shard(settings: SetSettings, shard: Shard, folder: str) -> ShardResult:
    """Compute ``shard`` and write it to ``folder/shard.file`` atomically; the checksum is of the bytes written."""
    arrays, walk = shard_arrays(settings, shard)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    atomic_write_bytes(Path(folder) / shard.file, data)
    described = {"solver": walk.solver, "step_schedule": walk.step_schedule, "steps": len(walk.sigmas) - 1}
    return ShardResult(shard.index, hashlib.sha256(data).hexdigest(), described, os.getpid())
