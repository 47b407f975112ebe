"""PCG: classifier-free guidance as a predictor–corrector (Bradley & Nakkiran 2024, "Classifier-Free Guidance
is a Predictor-Corrector", §4), as a solver function for :func:`diffsample.sample`.

The γ-powered density at level σ is ``p_{γ,σ} ∝ p_{u,σ}^{1−γ} p_{c,σ}^γ``; its score is
``(1 − γ) s_u + γ s_c = (D_γ − x)/σ²`` with ``D_γ = D_u + γ (D_c − D_u)`` — the CFG denoiser with weight γ
(``diffusers`` numbering). PCG alternates, on every step ``σ → σ'`` of the walk:

* **predictor**: the DDIM step ``x' = D_p + (σ'/σ)(x − D_p)`` with the predictor denoiser ``D_p``
  (the conditional model, or a guided one); with ``eta > 0`` the ancestral step
  ``x' = D_p + (σ_down/σ)(x − D_p) + σ_up z`` instead (η = 1: DDPM, the paper's stochastic predictor;
  :func:`~diffsample.solvers.ancestral.ancestral_split`);
* **corrector**: ``K`` steps of unadjusted Langevin dynamics on ``p_{γ,σ'}`` with step ``δ = c σ'²``,

      x ← x + δ (D_γ − x)/σ'² + sqrt(2δ) z = x + c (D_γ(x, σ') − x) + sqrt(2c) σ' z,

  which leaves ``p_{γ,σ'}`` invariant as ``c → 0`` (for Gaussians the Langevin chain's stationary law is
  ``p_{γ,σ'}`` up to ``O(c)``). No corrector runs at σ' = 0, where the score is undefined.

The paper's point: the CFG walks (DDIM or DDPM on ``D_γ``) do *not* sample the γ-powered target ``p_γ``,
while PCG with enough corrector steps at small σ does (checked exactly on the Gaussian bed,
:mod:`diffsample.testbeds.gaussian_guidance`).

Usage: ``sample(predictor, x, sigmas, solver=pcg, corrector=cfg(D_c, γ, uncond=D_u), corrector_steps=K,
step_size=c, noise=seeded(s))``. NFE: the predictor's counter has its ``N`` calls, the corrector's its
``K·(#levels > 0 after the first)`` calls (2 evaluations each for a CFG corrector); :func:`pcg_cost` gives the
total. The corrector noise is drawn fresh for every Langevin step (interval noise such as a Brownian tree is
refused).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..contracts import Denoiser, NoiseSource
from ..denoisers import as_denoiser
from ..errors import DiffsampleError
from ..solvers._kernel.callbacks import Callback, report
from ..solvers._kernel.levels import sigma_batch, sigma_list
from ..solvers._kernel.noise import check_nonnegative, draw, require_fresh_noise
from ..solvers.ancestral import ancestral_split, ancestral_update
from .base import to_work

__all__ = ["pcg", "pcg_cost"]


def pcg(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    corrector: Denoiser | None = None,
    corrector_steps: int = 1,
    step_size: float = 0.1,
    eta: float = 0.0,
    **unused: Any,
) -> torch.Tensor:
    """Walk ``x`` down ``sigmas``: DDIM predictor with ``denoiser``, Langevin corrector with ``corrector`` (module doc).

    Args:
        denoiser: the predictor ``D_p`` (e.g. the conditional model, or ``cfg(D_c, w, uncond=D_u)``).
        corrector: the denoiser ``D_γ`` whose σ-marginal the corrector targets, e.g. ``cfg(D_c, γ, uncond=D_u)``.
        corrector_steps: ``K ≥ 0`` Langevin steps after each predictor step into σ' > 0.
        step_size: ``c ∈ (0, 1]``: the Langevin step is ``δ = c σ'²``.
        eta: noise of the predictor step: 0 is DDIM (default), 1 is DDPM.
        noise: a fresh-draw noise source (:func:`diffsample.noise.seeded`), needed when ``K > 0`` or ``eta > 0``.
    """
    if unused:
        raise DiffsampleError(
            f"pcg got unknown options {sorted(unused)}; it takes corrector, corrector_steps, step_size and eta"
        )
    if corrector is None:
        raise DiffsampleError("pcg needs corrector=... (the γ-guided denoiser, e.g. cfg(D_c, gamma, uncond=D_u))")
    if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise DiffsampleError(f"corrector_steps must be an int >= 0, got {corrector_steps!r}")
    c = float(step_size)
    if not (math.isfinite(c) and 0.0 < c <= 1.0):
        raise DiffsampleError(f"step_size must be in (0, 1] (the Langevin step is step_size·σ²), got {step_size}")
    eta = check_nonnegative(eta, "eta")
    corrector = as_denoiser(corrector)
    s = sigma_list(sigmas)
    if (corrector_steps > 0 or eta > 0) and any(b > 0 for b in s[1:]):
        require_fresh_noise(noise, "pcg", f"corrector_steps={corrector_steps} Langevin steps, eta={eta}")
    kick = math.sqrt(2.0 * c)
    for i in range(len(s) - 1):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = denoiser(x, sigma_batch(x, sigma))
        report(callback, i, x, sigma, sigma_next, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        down, up = ancestral_split(sigma, sigma_next, eta)
        x = ancestral_update(x, denoised, down / sigma, up, noise, sigma, sigma_next)
        for _ in range(corrector_steps):
            target = to_work(corrector(x, sigma_batch(x, sigma_next))).to(x.dtype)
            x = torch.lerp(x, target, c) + (kick * sigma_next) * draw(noise, x, sigma_next, sigma_next)
    return x


def pcg_cost(levels: int, corrector_steps: int, predictor_nfe: int = 1, corrector_nfe: int = 2) -> int:
    """Model evaluations per sample of a PCG walk over ``levels`` noise levels ending at 0 (module docstring)."""
    steps = levels - 1
    return steps * predictor_nfe + (steps - 1) * corrector_steps * corrector_nfe
