"""Shard functions that fail on purpose (module level, so spawned worker processes can unpickle them)."""

from __future__ import annotations

import os
from pathlib import Path

from diffsample.generate_set import SetSettings, Shard, ShardResult, run_shard


def _first_attempt(folder: str, shard: Shard) -> bool:
    """True the first time shard ``shard`` is tried in ``folder`` (a marker file remembers it across processes)."""
    marker = Path(folder) / f".tried-{shard.index}"
    if marker.exists():
        return False
    marker.write_text("tried")
    return True


def raises_once_on_shard_1(settings: SetSettings, shard: Shard, folder: str) -> ShardResult:
    if shard.index == 1 and _first_attempt(folder, shard):
        raise RuntimeError("shard 1 fails once")
    return run_shard(settings, shard, folder)


def always_fails_on_shard_2(settings: SetSettings, shard: Shard, folder: str) -> ShardResult:
    if shard.index == 2:
        raise RuntimeError("shard 2 always fails")
    return run_shard(settings, shard, folder)


def worker_dies_once_on_shard_0(settings: SetSettings, shard: Shard, folder: str) -> ShardResult:
    if shard.index == 0 and _first_attempt(folder, shard):
        os._exit(17)  # the worker process dies, as when killed
    return run_shard(settings, shard, folder)
