"""Denoiser transforms: each takes a denoiser (or two) and returns a denoiser, so they compose with
each other and with every solver. All derive from one base class, :class:`Transform` (:mod:`.base`).

* guidance (:mod:`.guidance`): :func:`cfg` — classifier-free guidance (Ho & Salimans 2022), with a
  guidance interval (Kynkäänniemi et al. 2024) and guidance rescale (Lin et al. 2024);
* autoguidance (:mod:`.autoguidance`): :func:`autoguidance` — guidance by a weaker version of the same model
  (Karras et al. 2024);
* gradient guidance (:mod:`.gradient`): :func:`classifier_guidance` — a log-potential's gradient added to the
  score (Dhariwal & Nichol 2021), with :func:`potential_gradient` for other gradient methods;
* exposure-bias corrections: :func:`epsilon_scaling` / :func:`fit_epsilon_scaling` (Ning et al. 2024,
  :mod:`.epsilon_scaling`) and :func:`time_shift` (Li et al. 2024, TS-DDIM, :mod:`.time_shift`);
* :func:`dynamic_thresholding` (Imagen, Saharia et al. 2022, :mod:`.thresholding`), whose maths
  :func:`dynamic_threshold` solvers can also apply inside their update;
* :class:`GuardedDenoiser` — the NaN guard and work-dtype cast every :func:`diffsample.sample` walk uses.

Adding a transform: one module here with a :class:`Transform` subclass implementing ``denoise`` and a
builder function, exported below. :func:`work_dtype` / :func:`to_work` give the float32 (at least)
dtype its maths should run in.
"""

from __future__ import annotations

from .autoguidance import Autoguidance, autoguidance
from .base import Transform, to_work, work_dtype
from .epsilon_scaling import EpsilonScaling, EpsilonScalingFit, epsilon_scaling, fit_epsilon_scaling
from .gradient import ClassifierGuidance, LogPotential, classifier_guidance, potential_gradient
from .guard import GuardedDenoiser, all_finite
from .guidance import ClassifierFreeGuidance, cfg, rescale_guidance
from .thresholding import DynamicThresholding, dynamic_threshold, dynamic_thresholding
from .time_shift import TimeShift, data_stats, time_shift, training_levels

__all__ = [
    "Autoguidance",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "DynamicThresholding",
    "EpsilonScaling",
    "EpsilonScalingFit",
    "GuardedDenoiser",
    "LogPotential",
    "TimeShift",
    "Transform",
    "all_finite",
    "autoguidance",
    "cfg",
    "classifier_guidance",
    "data_stats",
    "dynamic_threshold",
    "dynamic_thresholding",
    "epsilon_scaling",
    "fit_epsilon_scaling",
    "potential_gradient",
    "rescale_guidance",
    "time_shift",
    "to_work",
    "training_levels",
    "work_dtype",
]

# minority guidance, CADS and gradient-free classifier guidance (issue 14)
from .cads import CADS, anneal_condition, cads, cads_gamma  # noqa: E402
from .gradient_free import GradientFreeClassifierGuidance, gfcg_reference, gradient_free_guidance  # noqa: E402
from .keyed_noise import KeyedNormals  # noqa: E402
from .minority import (  # noqa: E402
    SelfGuidedMinority,
    assign_levels,
    minority_guidance,
    minority_levels,
    minority_score,
    self_guided_minority,
)

__all__ += [
    "CADS",
    "GradientFreeClassifierGuidance",
    "KeyedNormals",
    "SelfGuidedMinority",
    "anneal_condition",
    "assign_levels",
    "cads",
    "cads_gamma",
    "gfcg_reference",
    "gradient_free_guidance",
    "minority_guidance",
    "minority_levels",
    "minority_score",
    "self_guided_minority",
]

# the CFG family (issue 14): both conventions, CFG++, APG, PCG, and the walk context step-aware transforms read
from .apg import AdaptiveProjectedGuidance, apg, project  # noqa: E402
from .cfgpp import CFGPlusPlus, cfgpp, cfgpp_weight  # noqa: E402
from .guidance import CONVENTIONS, diffusers_weight  # noqa: E402
from .pcg import pcg, pcg_cost  # noqa: E402
from .walk_context import Walk, current_walk, walk_context  # noqa: E402

__all__ += [
    "CONVENTIONS",
    "AdaptiveProjectedGuidance",
    "CFGPlusPlus",
    "Walk",
    "apg",
    "cfgpp",
    "cfgpp_weight",
    "current_walk",
    "diffusers_weight",
    "pcg",
    "pcg_cost",
    "project",
    "walk_context",
]

# gradient guidance through the denoiser (issue 14): DPS (Chung et al. 2023), TFG (Ye et al. 2024) and its search
from .dps import DiffusionPosteriorSampling, Measurement, dps  # noqa: E402
from .tfg import CleanPotential, TrainingFreeGuidance, recurrent_sample, tfg  # noqa: E402
from .tfg_search import PAPER_SPACE, Axis, SearchResult, beam_search  # noqa: E402

__all__ += [
    "PAPER_SPACE",
    "Axis",
    "CleanPotential",
    "DiffusionPosteriorSampling",
    "Measurement",
    "SearchResult",
    "TrainingFreeGuidance",
    "beam_search",
    "dps",
    "recurrent_sample",
    "tfg",
]
