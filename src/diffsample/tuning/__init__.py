"""Tuning: the best plan (noise levels + per-step solver choices) for a model and an NFE budget.

* :func:`tune` — teacher trajectories, dynamic-programming schedules and a solver–schedule search on a
  calibration batch (:mod:`.tuner`);
* :class:`Plan` — the result, a small JSON document that :func:`diffsample.sample` runs (``plan=``);
* :mod:`.teacher`, :mod:`.dp`, :mod:`.search` — the stages, usable on their own.
"""

from __future__ import annotations

from .dp import DPResult, Evaluator, gits_costs, min_cost_path, propagated_dp
from .plan import Plan
from .search import Candidate, Choice, Objective, canonical, coordinate_search
from .teacher import Teacher, teacher_trajectory
from .tuner import tune

__all__ = [
    "Candidate",
    "Choice",
    "DPResult",
    "Evaluator",
    "Objective",
    "Plan",
    "Teacher",
    "canonical",
    "coordinate_search",
    "gits_costs",
    "min_cost_path",
    "propagated_dp",
    "teacher_trajectory",
    "tune",
]
