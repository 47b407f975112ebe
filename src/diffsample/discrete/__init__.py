"""Masked (absorbing-state) discrete diffusion: denoiser contract, masking schedules, categorical primitives,
seeded per-sample uniforms and samplers.

    from diffsample import discrete
    z = discrete.all_masked(batch, length, vocab_size)
    tokens = discrete.ancestral(denoiser, z, steps=64, seed=0)

* :mod:`.contracts` — :class:`MaskedDenoiser` (``D(z, t) -> p(x0 | z_t)``, float64, no mask column) and
  :class:`UniformSource`; the mask id is the vocabulary size.
* :mod:`.denoiser` — :class:`CountingMaskedDenoiser` (logits or probabilities in, NFE counted),
  :func:`as_masked_denoiser`.
* :mod:`.schedules` — ``α_t``: :func:`linear`, :func:`cosine`, :func:`log_linear`, :func:`custom`.
* :mod:`.random` — :func:`seeded_uniforms`: sample ``i`` draws from its own stream.
* :mod:`.categorical` — temperature, top-k/p, min-p, typical, ε/η cut-offs, top-H; inverse-CDF and Gumbel-max.
* :mod:`.orders` — reveal orders for k-tokens-per-step samplers.
* :mod:`.guidance` — :func:`masked_cfg`, classifier-free guidance for masked denoisers.
* :mod:`.hf` — :func:`hf_masked_denoiser`: a Hugging Face masked diffusion LM (LLaDA/Dream) as a masked denoiser;
  :mod:`.hf_generate` — :func:`generate` in LLaDA's and Dream's vocabulary (``transformers`` is never imported).
* :mod:`.steering` — :class:`~.steering.MaskedProposal`: the masked samplers as proposals of the particle engine
  (:mod:`diffsample.scaling`: best-of-N, path search, Feynman–Kac / SMC steering, SVDD); imported on demand.
* Samplers (:mod:`.registry`): :func:`ancestral`, :func:`first_hitting`, :func:`ordered`,
  :func:`entropy_bounded`, :func:`remdm`.
"""

from __future__ import annotations

from . import categorical, orders, registry, schedules
from ._walk import all_masked
from .ancestral import ancestral
from .contracts import MaskedDenoiser, UniformSource, mask_id
from .denoiser import CountingMaskedDenoiser, FunctionMaskedDenoiser, as_masked_denoiser
from .entropy_bounded import entropy_bounded
from .first_hitting import first_hitting
from .guidance import MaskedCFG, masked_cfg
from .hf import HFMaskedDenoiser, hf_masked_denoiser
from .hf_generate import Generation, generate
from .ordered import ordered
from .random import SeededUniforms, seeded_uniforms
from .registry import available, get, spec
from .remdm import loop_schedule, remdm
from .schedules import MaskingSchedule, cosine, custom, linear, log_linear

__all__ = [
    "CountingMaskedDenoiser",
    "FunctionMaskedDenoiser",
    "Generation",
    "HFMaskedDenoiser",
    "MaskedCFG",
    "MaskedDenoiser",
    "MaskingSchedule",
    "SeededUniforms",
    "UniformSource",
    "all_masked",
    "ancestral",
    "as_masked_denoiser",
    "available",
    "categorical",
    "cosine",
    "custom",
    "entropy_bounded",
    "first_hitting",
    "generate",
    "get",
    "hf_masked_denoiser",
    "linear",
    "log_linear",
    "loop_schedule",
    "mask_id",
    "masked_cfg",
    "ordered",
    "orders",
    "registry",
    "remdm",
    "schedules",
    "seeded_uniforms",
    "spec",
]
