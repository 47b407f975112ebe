"""Training-free guidance (TFG) as a denoiser transform, and its recurrence as a sampler around any solver.

Ye, Lin, Wang, Zhou, Fei, Ma, Xu, Zou & Ermon 2024, "TFG: Unified Training-Free Guidance for Diffusion Models"
(NeurIPS), Alg. 1, unify training-free guidance by a clean-data predictor ``f(x0)`` (``log f`` a class
log-probability, a negative loss, a log-likelihood ``log p(y | x0)``) in four parts:

* **implicit dynamics** (γ): the predictor is smoothed by Gaussian noise of scale ``γ_σ``,
  ``log f̃(x0) = log (1/M) Σ_j f(x0 + γ_σ δ_j)``, ``δ_j ~ N(0, I)``; ``γ_σ = γ σ / sqrt(1 + σ²)`` (their
  ``γ √(1 − ᾱ_t)`` "decreasing" schedule written with the VP-equivalent ``σ``);
* **variance guidance** (ρ): the gradient through the denoiser, ``Δ_var = ∇_x log f̃(D(x, σ))``;
* **mean guidance** (μ, ``N_iter``): gradient ascent on the clean estimate, ``x̂0 ← x̂0 + μ ∇ log f̃(x̂0)``,
  ``N_iter`` times;
* **recurrence** (``N_recur``): each step σ → σ' is taken, re-noised back to σ with fresh noise
  (``x ← x' + sqrt(σ² − σ'²) ξ``) and repeated, ``N_recur`` times in all (:func:`recurrent_sample`).

In σ-space the first three make a denoiser (Tweedie's formula turns a score correction ``g`` into ``σ² g``):

    D̃(x, σ) = x̂0_iter + ρ σ² ∇_x log f̃(D(x, σ)),     x̂0_iter = mean guidance applied N_iter times to D(x, σ),

so TFG works with every solver. By Tweedie's second-order identity ``σ² ∇_x D = Cov[x0 | x]`` the variance term
is ``ρ Cov[x0 | x] ∇ log f̃(x̂0)``: the mean moves along the predictor's gradient, the variance term along the
posterior-covariance-weighted gradient (the paper's reading of the two). ρ and μ may be constants or functions
of σ (a schedule). The original applies ``Δ_var`` to the state after a DDIM step; the score form scales it by
``(σ − σ') σ`` per Euler step instead. The smoothing noises δ_j are common random numbers: drawn per call from a
generator seeded by ``(seed, call index)``, the same for every row, so a sample does not depend on the batch.

Costs per call: the denoiser's ``nfe``; ``auxiliary_calls`` += M per evaluation of ``f̃`` (variance guidance
once, mean guidance ``N_iter`` times); ``backward_passes`` += 1 per gradient (through denoiser and predictor
for the variance term, through the predictor for each mean step). The hyper-parameter search of the paper is
:func:`diffsample.transforms.tfg_search.beam_search`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import contracts
from ..denoisers import append_dims
from ..errors import DiffsampleError, ShapeError
from ..noise import derive_seed, generator_seed
from .base import Transform, to_work

__all__ = ["CleanPotential", "TrainingFreeGuidance", "recurrent_sample", "tfg"]

CleanPotential = Callable[[torch.Tensor], torch.Tensor]
"""``log f(x0) -> (B,)``: a differentiable log-predictor of clean samples (class log-probability, −loss, …)."""

Weight = float | Callable[[torch.Tensor], torch.Tensor]
"""A guidance strength: a number, or a function of σ ``(B,) -> (B,)`` (a schedule)."""


def _weight(value: Weight, sigma: torch.Tensor, name: str) -> torch.Tensor:
    w = value(sigma) if callable(value) else torch.full_like(sigma, float(value))
    w = torch.as_tensor(w, dtype=sigma.dtype, device=sigma.device).expand(sigma.shape)
    if not bool(torch.isfinite(w).all()):
        raise DiffsampleError(f"TFG strength {name} must be finite")
    return w


class TrainingFreeGuidance(Transform):
    """TFG's mean, variance and implicit-dynamics guidance as a denoiser (module docstring); built by :func:`tfg`."""

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        log_potential: CleanPotential,
        *,
        rho: Weight = 0.0,
        mu: Weight = 0.0,
        gamma: float = 0.0,
        n_iter: int = 1,
        n_smooth: int = 4,
        seed: int = 0,
        clip: float | None = None,
    ) -> None:
        super().__init__(denoiser)
        if clip is not None and not (math.isfinite(clip) and clip > 0):
            raise DiffsampleError(f"clip (largest gradient norm) must be positive and finite, or None; got {clip}")
        self.clip = None if clip is None else float(clip)
        if not callable(log_potential):
            raise DiffsampleError(f"log_potential must be callable as f(x0) -> (B,), got {type(log_potential)}")
        if not (math.isfinite(gamma) and gamma >= 0):
            raise DiffsampleError(f"gamma (smoothing scale) must be finite and non-negative, got {gamma}")
        if int(n_iter) < 0 or int(n_smooth) < 1:
            raise DiffsampleError(f"n_iter must be >= 0 and n_smooth >= 1, got {n_iter} and {n_smooth}")
        self.log_potential = log_potential
        self.rho, self.mu, self.gamma = rho, mu, float(gamma)
        self.n_iter, self.n_smooth, self.seed = int(n_iter), int(n_smooth), int(seed)
        self._draws = 0

    def _directions(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The call's common smoothing noises δ_j, ``(M, *shape)`` float64 (zero when γ = 0)."""
        if self.gamma == 0:
            return torch.zeros(1, *shape, dtype=torch.float64)
        gen = torch.Generator().manual_seed(generator_seed(derive_seed(self.seed, self._draws)))
        self._draws += 1
        return torch.randn(self.n_smooth, *shape, dtype=torch.float64, generator=gen)

    def smoothed_log_potential(self, x0: torch.Tensor, scale: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """``log (1/M) Σ_j f(x0 + γ_σ δ_j)``, ``(B,)``; counts M auxiliary calls."""
        m = deltas.shape[0]
        d = deltas.to(device=x0.device, dtype=x0.dtype)
        shifted = x0[None] + append_dims(scale, x0.dim())[None] * d[:, None]
        values = self.log_potential(shifted.reshape(m * x0.shape[0], *x0.shape[1:]))
        if not isinstance(values, torch.Tensor) or values.shape != (m * x0.shape[0],):
            raise ShapeError(f"log_potential must return shape (B,) = ({m * x0.shape[0]},) for its input batch")
        self.count_auxiliary(m)
        return torch.logsumexp(values.reshape(m, x0.shape[0]), dim=0) - math.log(m)

    def clipped(self, grad: torch.Tensor) -> torch.Tensor:
        """``grad`` with each row's norm capped at ``clip`` (the reference code's gradient rescaling), if set."""
        if self.clip is None:
            return grad
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-30)
        return grad * append_dims((self.clip / norm).clamp(max=1.0), grad.dim())

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        xw = to_work(x)
        s = sigma.to(xw.dtype)
        rho, mu = _weight(self.rho, s, "rho"), _weight(self.mu, s, "mu")
        use_var, use_mean = bool((rho != 0).any()), self.n_iter > 0 and bool((mu != 0).any())
        if not (use_var or use_mean):
            return to_work(self.inner(x, sigma, **kwargs))
        scale = self.gamma * s / (1 + s.square()).sqrt()
        deltas = self._directions(tuple(x.shape[1:]))
        variance = torch.zeros_like(xw)
        if use_var:
            with torch.enable_grad():
                xg = xw.detach().requires_grad_(True)
                x0 = to_work(self.inner(xg, sigma, **kwargs))
                value = self.smoothed_log_potential(x0, scale, deltas)
                (grad,) = torch.autograd.grad(value.sum(), xg)
            self.count_backward()
            variance = append_dims(rho * s.square(), x.dim()) * self.clipped(grad)
            x0 = x0.detach()
        else:
            x0 = to_work(self.inner(x, sigma, **kwargs))
        if use_mean:
            for _ in range(self.n_iter):
                with torch.enable_grad():
                    z = x0.detach().requires_grad_(True)
                    value = self.smoothed_log_potential(z, scale, deltas)
                    (grad,) = torch.autograd.grad(value.sum(), z)
                self.count_backward()
                x0 = x0 + append_dims(mu, x.dim()) * self.clipped(grad)
        out = x0 + variance
        if not bool(torch.isfinite(out).all()):
            raise DiffsampleError(
                f"TFG guidance is not finite at sigma in [{float(sigma.min()):.4g}, {float(sigma.max()):.4g}]"
            )
        return out


def tfg(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    log_potential: CleanPotential,
    *,
    rho: Weight = 0.0,
    mu: Weight = 0.0,
    gamma: float = 0.0,
    n_iter: int = 1,
    n_smooth: int = 4,
    seed: int = 0,
    clip: float | None = None,
) -> TrainingFreeGuidance:
    """TFG (Ye et al. 2024) of ``denoiser`` by a clean-data log-predictor ``log_potential(x0) -> (B,)``.

    ``rho`` (variance guidance), ``mu`` with ``n_iter`` (mean guidance), ``gamma`` with ``n_smooth`` (implicit
    dynamics: Monte Carlo smoothing); ``clip`` caps each gradient's norm per sample. ``rho`` alone is DPS-like
    guidance of ``log f``; ``mu`` alone with ``gamma = 0`` is mean guidance (FreeDoM/UGD-style). Combine with
    :func:`recurrent_sample` for ``N_recur``.
    """
    return TrainingFreeGuidance(
        denoiser, log_potential, rho=rho, mu=mu, gamma=gamma, n_iter=n_iter, n_smooth=n_smooth, seed=seed, clip=clip
    )


def recurrent_sample(
    denoiser: contracts.Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    solver: str | contracts.Solver = "euler",
    *,
    n_recur: int = 1,
    noise: contracts.NoiseSource | None = None,
    **options: Any,
) -> torch.Tensor:
    """Sample with TFG's recurrence: every interval ``σ_i → σ_{i+1}`` is solved by ``solver``, re-noised back to
    ``σ_i`` with ``sqrt(σ_i² − σ_{i+1}²) ξ`` and solved again, ``n_recur`` times in all (Ye et al. 2024, Alg. 1;
    "time travel" / resampling, Lugmayr et al. 2022). ``n_recur = 1`` is :func:`diffsample.sample` unchanged.

    With ``n_recur > 1`` each interval is one call of :func:`diffsample.sample` on ``sigmas[i:i+2]`` (a multistep
    solver then takes its first-order start on every interval), and ``noise`` (a seeded source) is required.
    """
    from ..sampling import sample

    if int(n_recur) < 1:
        raise DiffsampleError(f"n_recur must be >= 1, got {n_recur}")
    if n_recur == 1:
        return sample(denoiser, x, sigmas, solver, noise, **options)
    if noise is None:
        raise DiffsampleError("recurrence re-noises the state: pass a noise source (diffsample.noise.seeded(seed))")
    sig = torch.as_tensor(sigmas, dtype=torch.float64)
    for i in range(sig.shape[0] - 1):
        hi, lo = float(sig[i]), float(sig[i + 1])
        for r in range(int(n_recur)):
            x_next = sample(denoiser, x, sig[i : i + 2], solver, noise, **options)
            if r < n_recur - 1:
                x = x_next + math.sqrt(max(hi * hi - lo * lo, 0.0)) * noise(x_next, lo, hi)
        x = x_next
    return x
