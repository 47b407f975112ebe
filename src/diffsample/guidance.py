"""Guidance transforms, kept importable here; they live in :mod:`diffsample.transforms.guidance`."""

from __future__ import annotations

from .transforms.apg import AdaptiveProjectedGuidance, apg
from .transforms.cfgpp import CFGPlusPlus, cfgpp
from .transforms.guidance import ClassifierFreeGuidance, cfg, rescale_guidance
from .transforms.pcg import pcg

__all__ = [
    "AdaptiveProjectedGuidance",
    "CFGPlusPlus",
    "ClassifierFreeGuidance",
    "apg",
    "cfg",
    "cfgpp",
    "pcg",
    "rescale_guidance",
]
