"""Test beds: exact denoisers with known answers, exact PF-ODE references, and error metrics.

* :class:`GaussianMixture` — the exact posterior mean, density, score and samples of a Gaussian mixture;
  :class:`EmpiricalDenoiser` — the optimal denoiser of a finite data set (a mixture of point masses).
* Ready beds ``ring2d``, ``mixture64``, ``digits`` in the registry :data:`BEDS` (:func:`get_bed`).
* :func:`reference_solution` — the probability-flow ODE solved to ~1e-10 by DOP853 (needs scipy).
* :mod:`~diffsample.testbeds.metrics` — RMSE, mode mismatch, mean log-likelihood.

scipy and scikit-learn are imported only when a reference or the digits bed is requested.
"""

from __future__ import annotations

from .beds import BEDS, digits, get_bed, mixture64, ring2d
from .metrics import mean_log_likelihood, mode_mismatch, rmse, rmse_per_sample
from .mixture import EmpiricalDenoiser, GaussianMixture
from .reference import default_cache_dir, reference_solution

__all__ = [
    "BEDS",
    "EmpiricalDenoiser",
    "GaussianMixture",
    "default_cache_dir",
    "digits",
    "get_bed",
    "mean_log_likelihood",
    "mixture64",
    "mode_mismatch",
    "reference_solution",
    "ring2d",
    "rmse",
    "rmse_per_sample",
]

# imperfect denoisers with a known true distribution, and distribution metrics (issue 6)
from .distribution import (  # noqa: E402
    sliced_wasserstein,
    sliced_wasserstein_to_truth,
    true_log_likelihood,
    wasserstein_1d_to_truth,
    weight_tv,
)
from .imperfect import ExposureBiasDenoiser, ImperfectBed, MisfitMixture  # noqa: E402

__all__ += [
    "ExposureBiasDenoiser",
    "ImperfectBed",
    "MisfitMixture",
    "sliced_wasserstein",
    "sliced_wasserstein_to_truth",
    "true_log_likelihood",
    "wasserstein_1d_to_truth",
    "weight_tv",
]

# labelled mixtures: exact class-conditional denoisers and level posteriors (issue 14, minority guidance)
from .labelled import LabelledMixture, level_log_probs, rarity_groups  # noqa: E402

__all__ += ["LabelledMixture", "level_log_probs", "rarity_groups"]

# exact Gaussian bed of the CFG family (issue 14): every CFG / CFG++ / PCG output law in closed form
from .gaussian_guidance import GaussianGuidanceBed, GaussianLaw, affine_walk_law  # noqa: E402

__all__ += ["GaussianGuidanceBed", "GaussianLaw", "affine_walk_law"]
# exact beds for gradient guidance (issue 14): reward tilts, labelled mixtures, linear inverse problems
from .full_mixture import FullCovarianceMixture  # noqa: E402
from .guidance_metrics import component_weight_tv, denoiser_error, posterior_report  # noqa: E402
from .inverse import (  # noqa: E402
    LinearInverseProblem,
    blur_operator,
    downsample_operator,
    linear_inverse_problem,
    masking_operator,
)
from .tilted import (  # noqa: E402
    QuadraticReward,
    TiltedMixture,
    class_conditional,
    linear_reward,
    noisy_class_log_prob,
    noisy_classifier,
    quadratic_reward,
    tilt,
)

__all__ += [
    "FullCovarianceMixture",
    "LinearInverseProblem",
    "QuadraticReward",
    "TiltedMixture",
    "blur_operator",
    "class_conditional",
    "component_weight_tv",
    "denoiser_error",
    "downsample_operator",
    "linear_inverse_problem",
    "linear_reward",
    "masking_operator",
    "noisy_class_log_prob",
    "noisy_classifier",
    "posterior_report",
    "quadratic_reward",
    "tilt",
]

# a 1-d density known up to a constant on a grid: exact reference for Feynman–Kac corrector targets (issue 16)
from .grid_density import GridDensity  # noqa: E402

__all__ += ["GridDensity"]
