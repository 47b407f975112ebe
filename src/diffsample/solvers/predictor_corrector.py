"""Predictor–corrector sampling with Langevin corrector steps (Song et al. 2021), in σ-space.

Song et al. 2021 ("Score-Based Generative Modeling through SDEs", Algorithms 4 and 5): after each predictor
step to σ' > 0, ``corrector_steps`` Langevin steps at σ' with the score ``s = (D − x)/σ'²``: ``x ← x + ε s +
sqrt(2ε) z``, ``ε = 2α (r ‖z‖/‖s‖)²`` (``r`` the signal-to-noise ratio ``snr``; α = 1 in σ-space, which is the
VE form). That per-sample rule (``step_rule="sample"``) needs ``‖s‖`` and ``‖z‖`` to concentrate, as they do
for images: near a Gaussian component of ``p_σ`` the ratio ``‖z‖²/‖s‖²`` is ``v·F(d, d)``-distributed, whose
mean is infinite for ``d ≤ 2`` and variance infinite for ``d ≤ 4``, so in a few dimensions some steps are
arbitrarily large and throw samples far away. The default ``step_rule="auto"`` therefore takes the paper's
rule for ``d ≥ 64`` per sample and otherwise ``ε = 2 r² σ²`` (``"sigma"``: the rule with ``‖s‖²`` replaced by
its upper bound ``d/σ²``, see :func:`langevin_correct`); ``"batch"`` averages the norms over the batch as the
paper's code does (sample i then depends on its batch).

Langevin corrections need fresh draws at one level, so interval sources (Brownian trees) are refused;
without a noise source the sampler raises instead of touching a global RNG (:mod:`._kernel.noise`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..contracts import Denoiser, NoiseSource
from ..errors import DiffsampleError
from ._kernel.callbacks import Callback, offset_callback, report
from ._kernel.levels import sigma_batch, sigma_list
from ._kernel.noise import check_nonnegative, draw, require_fresh_noise
from .registry import register, spec

__all__ = ["AUTO_SAMPLE_DIM", "STEP_RULES", "langevin_correct", "langevin_step_size", "pc", "pc_cost"]


STEP_RULES = ("auto", "sample", "batch", "sigma")
AUTO_SAMPLE_DIM = 64
"""``step_rule="auto"`` uses the per-sample rule from this many dimensions per sample on (module docstring)."""


def langevin_step_size(
    score: torch.Tensor, z: torch.Tensor, sigma: float, snr: float, step_rule: str = "auto"
) -> torch.Tensor:
    """The Langevin step ``ε`` per sample (shape ``(B,)``) for the score ``s``, the noise ``z`` at level σ.

    * ``"sample"``: Song et al. (2021, Algorithm 5) ``ε = 2 (r ‖z‖/‖s‖)²`` per sample (ε = 0 where ``s = 0``);
    * ``"batch"``: the same with ``‖z‖`` and ``‖s‖`` averaged over the batch (the paper's code);
    * ``"sigma"``: ``ε = 2 r² σ²``: ``‖z‖²`` replaced by its mean ``d`` and ``‖s‖²`` by ``d/σ²``, an upper
      bound of the Fisher information ``E‖s‖²`` of ``p_σ`` (``J(X + σZ) ≤ J(σZ) = d/σ²``, Stam 1959; the
      bound is reached when σ dominates the data's scale). So ``ε`` is at most the per-sample step of a
      sample with a typical score, and on a Gaussian component of variance ``v ≥ σ²`` the discretised
      chain's stationary variance ``v/(1 − ε/(2v))`` is inflated by at most ``1/(1 − r²)``;
    * ``"auto"``: ``"sample"`` when a sample has at least :data:`AUTO_SAMPLE_DIM` entries, else ``"sigma"``
      (the ratio ``‖z‖²/‖s‖²`` of the per-sample rule is ``v·F(d, d)``-distributed near a Gaussian
      component: infinite mean for ``d ≤ 2``, relative spread ``≈ 2/sqrt(d)`` for large d).
    """
    if step_rule not in STEP_RULES:
        raise DiffsampleError(f"step_rule must be one of {', '.join(STEP_RULES)}; got {step_rule!r}")
    batch = score.shape[0]
    if step_rule == "auto":
        step_rule = "sample" if score[0].numel() >= AUTO_SAMPLE_DIM else "sigma"
    if step_rule == "sigma":
        return torch.full((batch,), 2.0 * snr * snr * sigma * sigma, dtype=score.dtype, device=score.device)
    s_norm = score.reshape(batch, -1).norm(dim=1)
    z_norm = z.reshape(batch, -1).norm(dim=1)
    if step_rule == "batch":
        s_norm, z_norm = s_norm.mean().expand_as(s_norm), z_norm.mean().expand_as(z_norm)
    positive = s_norm > 0
    ratio = torch.where(
        positive, snr * z_norm / torch.where(positive, s_norm, torch.ones_like(s_norm)), torch.zeros_like(s_norm)
    )
    return 2.0 * ratio.square()


def langevin_correct(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: float,
    noise: NoiseSource | None,
    *,
    snr: float = 0.16,
    steps: int = 1,
    step_rule: str = "auto",
    callback: Callback = None,
    i: int = 0,
) -> torch.Tensor:
    """``steps`` Langevin corrector steps at level σ > 0 (Song et al. 2021, Algorithm 4, α = 1).

    Each step: ``s = (D(x, σ) − x)/σ²`` (the score), ``z`` from ``noise(x, σ, σ)``, and
    ``x ← x + ε s + sqrt(2ε) z`` with the step size ``ε`` of :func:`langevin_step_size` (``step_rule``).
    """
    snr = check_nonnegative(snr, "snr")
    if step_rule not in STEP_RULES:
        raise DiffsampleError(f"step_rule must be one of {', '.join(STEP_RULES)}; got {step_rule!r}")
    if sigma <= 0:
        raise DiffsampleError(f"Langevin correction needs sigma > 0, got {sigma}")
    shape = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(int(steps)):
        denoised = denoiser(x, sigma_batch(x, sigma))
        report(callback, i, x, sigma, sigma, denoised)
        score = (denoised - x) / (sigma * sigma)
        z = draw(noise, x, sigma, sigma)
        eps = langevin_step_size(score, z, sigma, snr, step_rule).reshape(shape)
        x = x + eps * score + (2.0 * eps).sqrt() * z
    return x


def pc_cost(
    n_steps: int,
    ends_at_zero: bool = True,
    sigmas: Sequence[float] | torch.Tensor | None = None,
    *,
    predictor: str = "euler",
    snr: float = 0.16,
    corrector_steps: int = 1,
    step_rule: str = "auto",
    predictor_options: dict[str, Any] | None = None,
) -> int:
    """The registry's cost hook for :func:`pc` (exact for any levels): each step is one call of the predictor on
    ``[σ_i, σ_{i+1}]`` plus ``corrector_steps`` calls when ``σ_{i+1} > 0``."""
    pspec, options = spec(predictor), dict(predictor_options or {})
    if n_steps < 1:
        return 0
    inner = pspec.nfe(1, ends_at_zero=False, **options) + int(corrector_steps)
    last = pspec.nfe(1, ends_at_zero, **options) + (0 if ends_at_zero else int(corrector_steps))
    return (n_steps - 1) * inner + last


@register("pc", order=1, evals_per_step=2, saves_last_eval=True, stochastic=True, cost=pc_cost)
def pc(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseSource | None = None,
    callback: Callback = None,
    predictor: str = "euler",
    snr: float = 0.16,
    corrector_steps: int = 1,
    step_rule: str = "auto",
    predictor_options: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Predictor–corrector sampling (Song et al. 2021, Algorithms 2–5): a predictor step, then Langevin.

    Args:
        predictor: a registered, non-adaptive solver run on each step ``[σ_i, σ_{i+1}]`` alone (a
            multistep solver therefore acts as its first-order start); ``"euler"`` by default,
            ``"ddpm"`` / ``"euler_ancestral"`` give the paper's reverse-diffusion predictor.
        snr: the corrector's signal-to-noise ratio ``r`` (0.16: the paper's CIFAR-10 VE setting).
        corrector_steps: Langevin steps after each predictor step that ends above σ = 0.
        step_rule: ``"auto"`` (default: the paper's per-sample rule from 64 dimensions per sample on, else
            ``"sigma"``), ``"sample"`` (the paper's per-sample snr rule), ``"batch"`` (its code's
            batch-averaged norms) or ``"sigma"`` (``ε = 2 snr² σ²``); see :func:`langevin_step_size`.
        predictor_options: options passed to the predictor.

    NFE per step: the predictor's, plus ``corrector_steps`` (none on the step into σ = 0); the registry's
    cost hook :func:`pc_cost` counts any configuration.
    """
    corrector_steps = int(corrector_steps)
    if corrector_steps < 0:
        raise DiffsampleError(f"corrector_steps must be >= 0, got {corrector_steps}")
    pspec = spec(predictor)
    if pspec.adaptive or predictor in ("pc", "restart"):
        raise DiffsampleError(f"predictor {predictor!r} cannot run one step at a time; use a fixed-step solver")
    s = sigma_list(sigmas)
    if corrector_steps > 0 and snr > 0 and any(b > 0 for b in s[1:]):
        require_fresh_noise(noise, "pc", "Langevin corrector steps draw fresh noise at one level")
    options = dict(predictor_options or {})
    for i in range(len(s) - 1):
        step_callback = None if callback is None else offset_callback(callback, i)
        x = pspec.fn(denoiser, x, sigmas[i : i + 2], noise=noise, callback=step_callback, **options)
        if s[i + 1] > 0 and corrector_steps > 0:
            x = langevin_correct(
                denoiser,
                x,
                s[i + 1],
                noise,
                snr=snr,
                steps=corrector_steps,
                step_rule=step_rule,
                callback=callback,
                i=i,
            )
    return x
