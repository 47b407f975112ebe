"""``diffsample generate-set``: N samples from a model, in shards, in parallel, resumable.

Sample ``i`` depends only on the settings and ``i`` (:mod:`.settings`): the same set comes out with any number of
workers or shards. Shards are written atomically with a checksum in a manifest (:mod:`.manifest`); a killed job
resumes and computes only the missing shards (:mod:`.job`); workers are local processes, Ray tasks or the calling
process (:mod:`.executors`).
"""

from __future__ import annotations

from .job import SetSummary, generate_set, load_set
from .manifest import Manifest
from .settings import SetSettings, Shard, shards_of
from .worker import ShardResult, run_shard

__all__ = [
    "Manifest",
    "SetSettings",
    "SetSummary",
    "Shard",
    "ShardResult",
    "generate_set",
    "load_set",
    "run_shard",
    "shards_of",
]
