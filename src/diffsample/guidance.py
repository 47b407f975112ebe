"""Guidance transforms, kept importable here; they live in :mod:`diffsample.transforms.guidance`."""

from __future__ import annotations

from .transforms.guidance import ClassifierFreeGuidance, cfg, rescale_guidance

__all__ = ["ClassifierFreeGuidance", "cfg", "rescale_guidance"]
