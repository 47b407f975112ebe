"""Parallel-in-time sampling: Picard iteration of a step-wise solver's walk (ParaDiGMS, Shih et al. 2023).

:func:`picard` runs the walk of any step-wise solver as a fixed-point iteration over a sliding window of steps,
with one batched model call per stage and round; :mod:`.lockstep` is the batching of independent solver steps.
"""

from __future__ import annotations

from .picard import STEPWISE_SOLVERS, PicardResult, StepNoise, picard, sequential

__all__ = ["STEPWISE_SOLVERS", "PicardResult", "StepNoise", "picard", "sequential"]
