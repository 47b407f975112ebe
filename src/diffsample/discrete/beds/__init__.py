"""Exact beds for masked discrete diffusion: enumerable Markov chains, their exact denoiser, the exact output law
of a sampler, and distances to the target.

* :mod:`.chain` — :class:`MarkovChain`, :class:`ChainDenoiser` (forward–backward), the beds ``chain3x6`` and
  ``chain4x8`` (:data:`BEDS`, :func:`get_chain`).
* :mod:`.laws` — :func:`exact_law`: a sampler's output law by enumerating its randomness.
* :mod:`.tilted` — :func:`tilt_chain` (additive reward: the tilted law is a chain, exact normaliser, denoiser and
  optimal value ``E[exp(r/α) | z]``) and :func:`enumerated_tilt` (any reward, by enumeration).
* :mod:`.metrics` — TV, KL, entropy rate, NLL, transition KL-rate, unigram error, the Monte-Carlo floor.
"""

from __future__ import annotations

from .chain import BEDS, ChainDenoiser, MarkovChain, chain3x6, chain4x8, encode, enumerated_posterior, get_chain
from .laws import EXACT_SAMPLERS, exact_law
from .metrics import chain_metrics, empirical_law, kl, monte_carlo_tv, tv
from .tilted import EnumeratedTilt, TiltedChain, count_reward, enumerated_tilt, tilt_chain

__all__ = [
    "BEDS",
    "EXACT_SAMPLERS",
    "ChainDenoiser",
    "EnumeratedTilt",
    "MarkovChain",
    "TiltedChain",
    "chain3x6",
    "chain4x8",
    "chain_metrics",
    "count_reward",
    "empirical_law",
    "encode",
    "enumerated_posterior",
    "enumerated_tilt",
    "exact_law",
    "get_chain",
    "kl",
    "monte_carlo_tv",
    "tilt_chain",
    "tv",
]
