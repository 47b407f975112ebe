"""Tuning: the best plan (noise levels + per-step solver choices) for a model and an NFE budget.

* :func:`tune` — teacher trajectories, dynamic-programming schedules and a solver–schedule search on a
  calibration batch (:mod:`.tuner`);
* :class:`Plan` — the result, a small JSON document that :func:`diffsample.sample` runs (``plan=``);
* :mod:`.teacher`, :mod:`.dp`, :mod:`.search` — the stages, usable on their own;
* :func:`compute_statistics` / :class:`EMS` — DPM-Solver-v3's empirical model statistics (:mod:`.ems`);
* :func:`search_dc_ratios` / :func:`fit_cpr` — DC-Solver's compensation ratios as a plan (:mod:`.dc`);
* :func:`fit_weights` / :func:`weights_of` — non-stationary solver weights fitted to the teacher, the tuner's last
  stage (:mod:`.weights`).
"""

from __future__ import annotations

from ..plan import Plan
from .dc import CPR, fit_cpr, search_dc_ratios
from .dp import DPResult, Evaluator, gits_costs, min_cost_path, propagated_dp
from .ems import EMS, compute_statistics
from .search import Candidate, Choice, Objective, canonical, coordinate_search
from .teacher import Teacher, teacher_trajectory
from .tuner import tune
from .weights import WEIGHT_RIDGES, fit_weights, teacher_at, weights_of

__all__ = [
    "CPR",
    "EMS",
    "Candidate",
    "Choice",
    "DPResult",
    "Evaluator",
    "Objective",
    "Plan",
    "Teacher",
    "WEIGHT_RIDGES",
    "canonical",
    "compute_statistics",
    "coordinate_search",
    "fit_cpr",
    "fit_weights",
    "gits_costs",
    "min_cost_path",
    "propagated_dp",
    "search_dc_ratios",
    "teacher_at",
    "teacher_trajectory",
    "tune",
    "weights_of",
]
