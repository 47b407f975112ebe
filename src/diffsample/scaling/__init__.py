"""Inference-time scaling: turn more compute into better samples with rewards, particles and search.

* :mod:`.resampling` — log-weights, effective sample size, the SMC normaliser factor and four unbiased
  resampling schemes (multinomial, stratified, systematic, residual), shared by every particle method.
* :mod:`.engine` — the particle engine: particles, the proposal protocol, Feynman–Kac potentials, ESS-triggered
  resampling, the final weight correction to ``p(x) exp(r(x)/α)``, the ``log Z`` estimate and the cost report.
* :mod:`.gaussian` — continuous proposals: the ancestral (DDPM-posterior) step and its twisted (TDS) version.
* :mod:`.fk_correctors` — Feynman–Kac correctors: annealed ``p^β``, product and geometric-mixture (CFG) targets
  from pretrained scores, simulated with the combined score and reweighted on the engine.
* :mod:`.exact_chain` — the exact reverse chain of a Gaussian-mixture bed as a proposal (exact SMC tests).
* :mod:`.search` — best-of-N, zero-order search around a pivot noise, search over paths (branch and re-noise).
* :mod:`.svdd` — soft value-based decoding (SVDD), greedy as ``alpha → 0``.
* :mod:`.tree` — diffusion tree sampling and search (DTS, DTS*) with soft-value backups.
"""

from __future__ import annotations

from .engine import (
    POTENTIALS,
    CachedValue,
    CountedReward,
    Particles,
    Proposal,
    ProposalCost,
    ScalingCost,
    SMCResult,
    Transition,
    ValueFunction,
    draw_uniforms,
    feynman_kac,
    population_seeds,
    run_chain,
    slot_seeds,
    uniform_streams,
)
from .exact_chain import ExactMixtureChain
from .fk_correctors import FKCorrectorProposal, fk_corrector_smc
from .gaussian import AncestralProposal, reward_twist
from .resampling import (
    RESAMPLING_SCHEMES,
    effective_sample_size,
    log_mean_weight,
    normalized_weights,
    resample,
    uniforms_needed,
)
from .search import SearchResult, best_of_n, path_search, zero_order_search
from .svdd import svdd
from .tree import tree_sample, tree_search

__all__ = [
    "POTENTIALS",
    "RESAMPLING_SCHEMES",
    "AncestralProposal",
    "CachedValue",
    "CountedReward",
    "ExactMixtureChain",
    "FKCorrectorProposal",
    "Particles",
    "Proposal",
    "ProposalCost",
    "ScalingCost",
    "SearchResult",
    "SMCResult",
    "Transition",
    "ValueFunction",
    "best_of_n",
    "draw_uniforms",
    "feynman_kac",
    "fk_corrector_smc",
    "path_search",
    "population_seeds",
    "reward_twist",
    "run_chain",
    "slot_seeds",
    "svdd",
    "tree_sample",
    "tree_search",
    "uniform_streams",
    "zero_order_search",
    "effective_sample_size",
    "log_mean_weight",
    "normalized_weights",
    "resample",
    "uniforms_needed",
]
