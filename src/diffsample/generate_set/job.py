"""Run a generated set: the shards not yet done, in parallel, retried on failure, resumable from the manifest.

:func:`generate_set` opens (or creates) the manifest in ``folder``, verifies the shards it marks done (checksums),
submits the others to the executor, and records each shard in the manifest as it lands. A shard whose worker
raised or died is submitted again, up to ``retries`` times (a dead local worker breaks its pool: a fresh pool then
takes the shards still missing). A job killed at any point leaves only complete shard files (atomic writes) and a
manifest naming those done; the same call resumes it. At the end it reports rate and, for the digits model, the
Fréchet distance of the set's classifier features against the real digits (:func:`diffsample.models.frechet_distance`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DiffsampleError
from .executors import Submitter, completed, import_ray, in_process, processes, ray_cluster
from .manifest import Manifest, file_sha256
from .progress import JobProgress
from .settings import SHIPPED_MODEL, SetSettings, Shard
from .worker import ShardResult, run_shard

__all__ = ["SetSummary", "generate_set", "load_set"]

ShardFn = Callable[[SetSettings, Shard, str], ShardResult]


@dataclass(frozen=True)
class SetSummary:
    """What a run did: shards computed now, shards found done, failed attempts, seconds, samples/s, FD."""

    folder: Path
    computed: list[int]
    reused: list[int]
    failures: int
    seconds: float
    rate: float
    frechet_distance: float | None
    walk: dict[str, Any] | None

    def describe(self) -> str:
        fd = (
            ""
            if self.frechet_distance is None
            else f", Fréchet distance to the real digits {self.frechet_distance:.3f}"
        )
        walk = (
            ""
            if self.walk is None
            else f"{self.walk['solver']} on {self.walk['steps']} {self.walk['step_schedule']} steps; "
        )
        return (
            f"{walk}{len(self.computed)} shards computed ({self.rate:.0f} samples/s, {self.seconds:.1f} s), "
            f"{len(self.reused)} already done, {self.failures} failed attempts retried{fd}; set in {self.folder}"
        )


def _executor(
    workers: int, ray: bool, address: str | None, retries: int
) -> contextlib.AbstractContextManager[Submitter]:
    if ray or address is not None:
        return ray_cluster(address, retries)
    if workers == 0:
        return in_process()
    return processes(workers)


def generate_set(
    settings: SetSettings,
    folder: str | Path,
    *,
    workers: int = 1,
    retries: int = 2,
    ray: bool = False,
    address: str | None = None,
    frechet: bool = True,
    progress: bool = True,
    shard_fn: ShardFn = run_shard,
) -> SetSummary:
    """Generate (or finish) the set ``settings`` in ``folder`` (module docstring).

    Args:
        settings: the set (:class:`~diffsample.generate_set.SetSettings`).
        folder: where the shard files and ``manifest.json`` go; a folder holding another set is refused.
        workers: local worker processes (0: run in this process).
        retries: further attempts for a failed shard before the job gives up (its manifest stays resumable).
        ray, address: run on Ray (locally, or on the cluster at ``address``) instead of local processes.
        frechet: compute the Fréchet distance at the end (digits model only).
        progress: progress lines on stderr.
        shard_fn: the function computing one shard (picklable for processes): :func:`~.worker.run_shard`.
    """
    if workers < 0 or retries < 0:
        raise DiffsampleError(f"workers and retries must be >= 0, got {workers} and {retries}")
    if ray or address is not None:
        import_ray()  # say it before any work, even when every shard is done
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.open(folder, settings)
    for stale in folder.glob(".shard-*.npz.*.tmp"):  # a killed run's unfinished writes (atomic_write's temp files)
        stale.unlink(missing_ok=True)
    done = manifest.verified()
    manifest.save()
    reused = [k for k, ok in enumerate(done) if ok]
    shards = manifest.shards
    meter = JobProgress(settings.n, sum(shards[k].size for k in reused), enabled=progress)
    if reused:
        meter.note(f"resuming: {len(reused)} of {len(shards)} shards verified done")
        if manifest.saved_versions not in (None, manifest.versions):
            meter.note(
                f"the done shards were written with {manifest.saved_versions}, this run has {manifest.versions}: "
                "their samples may differ in the last bits from a fresh run's"
            )
    attempts = dict.fromkeys(range(len(shards)), 0)
    computed: list[int] = []
    todo = [s for s in shards if not done[s.index]]
    while todo:
        with _executor(workers, ray, address, retries) as pool:
            for future, (_, shard, _) in completed(pool, shard_fn, [(settings, s, str(folder)) for s in todo]):
                try:
                    result = future.result()
                    _check_written(folder, shard, result)
                except Exception as exc:  # a shard's failure, whatever it was, costs one attempt
                    attempts[shard.index] += 1
                    meter.note(f"shard {shard.index} failed (attempt {attempts[shard.index]}): {exc!r}")
                    continue
                manifest.walk = manifest.walk or result.walk
                manifest.mark_done(shard.index, result.sha256)
                manifest.save()
                done[shard.index] = True
                computed.append(shard.index)
                meter.shard_done(shard.size)
        todo = [s for s in shards if not done[s.index] and attempts[s.index] <= retries]
    failed = [k for k, ok in enumerate(done) if not ok]
    if failed:
        raise DiffsampleError(
            f"shards {failed} failed {retries + 1} times; {len(shards) - len(failed)} of {len(shards)} are done and "
            f"recorded in {manifest.path}: run the same job again to resume"
        )
    seconds, rate = meter.elapsed, meter.rate
    fd = _frechet(settings, folder) if frechet and settings.model == SHIPPED_MODEL else None
    failures = sum(attempts.values())
    return SetSummary(folder, sorted(computed), reused, failures, seconds, rate, fd, manifest.walk)


def _check_written(folder: Path, shard: Shard, result: ShardResult) -> None:
    """The worker's file is there with the checksum it reported (a shared folder may lag or lose writes)."""
    if file_sha256(folder / shard.file) != result.sha256:
        raise DiffsampleError(
            f"shard {shard.index}'s file {shard.file} does not match the checksum its worker reported"
        )


def load_set(folder: str | Path) -> dict[str, np.ndarray]:
    """The whole set in sample order (``samples``, ``indices``, ``seeds``, and ``labels`` if any), from a finished
    folder; every shard's checksum is verified first."""
    folder = Path(folder)
    manifest = Manifest.open(folder, _saved_settings(folder))
    if not all(manifest.verified()):
        raise DiffsampleError(f"{folder} is not a finished set (shards missing or corrupted): run the job to finish it")
    parts = [dict(np.load(folder / s.file)) for s in manifest.shards]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _saved_settings(folder: Path) -> SetSettings:
    import json

    from .manifest import MANIFEST

    try:
        return SetSettings.from_dict(json.loads((folder / MANIFEST).read_text())["settings"])
    except (OSError, ValueError, KeyError) as exc:
        raise DiffsampleError(f"{folder} holds no generate-set manifest ({exc})") from None


def _frechet(settings: SetSettings, folder: Path) -> float:
    from ..models import frechet_distance

    samples = torch.from_numpy(load_set(folder)["samples"]).reshape(settings.n, 1, 8, 8)
    return frechet_distance(samples)
