"""``Plan`` lives in :mod:`diffsample.plan` (below the sampler that runs it); kept importable here."""

from __future__ import annotations

from ..plan import FORMAT, VERSION, Plan

__all__ = ["FORMAT", "VERSION", "Plan"]
