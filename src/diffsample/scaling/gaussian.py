"""Continuous proposals for the particle engine: the ancestral (DDPM-posterior) step and its twisted version (TDS).

In σ-space (``x_σ = x0 + σ ε``) the model's step from ``σ`` to ``σ' < σ`` is the Gaussian posterior
``q(x_{σ'} | x_σ, x0 = x̂0)`` (Ho et al. 2020, eq. 7, written for σ-space; the "ancestral" step of Karras et al.
2022 with η = 1): with ``ρ = σ'/σ``,

    p(x' | x) = N(x'; m, v I),     m = ρ² x + (1 − ρ²) x̂0(x, σ),     v = σ'² (1 − ρ²).

With ``eta = η ∈ [0, 1]`` the step is DDIM's (Song et al. 2021, eq. 12, in σ-space): ``v = η² σ'² (1 − ρ²)`` and
``m = x̂0 + √(σ'² − v) (x − x̂0)/σ`` (η = 1 is the ancestral step above; η = 0 the deterministic probability-flow
step, for which the sample is a function of the initial noise: what zero-order noise search needs). The step to
``σ' = 0`` returns ``x̂0`` (the usual final denoising; deterministic, no density ratio).

Twisted proposal (Wu et al. 2023, "Practical and Asymptotically Exact Conditional Sampling in Diffusion Models"
(TDS), eq. 8): with a differentiable log-twist ``ℓ(x, σ)`` (default ``r(x̂0(x, σ))/α``, back-propagated through the
denoiser, or an exact one), the score ``s = (x̂0 − x)/σ²`` becomes ``s + ∇ℓ`` (classifier guidance), so

    q(x' | x) = N(x'; m + (σ² − σ'²) ∇_x ℓ(x, σ), v I),

and the engine weights by ``log p − log q + ℓ(x') − ℓ(x)`` (``potential="difference"`` with
:class:`~diffsample.scaling.engine.CachedValue`: the proposal caches ``ℓ`` in ``extras["log_twist"]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..contracts import Denoiser
from ..denoisers import as_denoiser
from ..errors import DiffsampleError
from ..noise import SeededNoise, seeded
from .engine import Particles, ProposalCost, Transition

__all__ = ["AncestralProposal", "LogTwist", "reward_twist"]

LogTwist = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``ℓ(x, x̂0, σ) -> (N,)``: a differentiable log-twist of the noisy state (``x̂0`` computed with gradients)."""


def reward_twist(reward: Callable[[torch.Tensor], torch.Tensor], alpha: float = 1.0) -> LogTwist:
    """``ℓ(x, σ) = r(x̂0(x, σ)) / α`` (TDS's default twist; gradients flow through the denoiser)."""
    if not (math.isfinite(alpha) and alpha > 0):
        raise DiffsampleError(f"alpha must be positive and finite, got {alpha}")

    def log_twist(x: torch.Tensor, x0_hat: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return reward(x0_hat) / alpha

    return log_twist


def _gauss_log_density(x: torch.Tensor, mean: torch.Tensor, var: float) -> torch.Tensor:
    d = x[0].numel()
    diff = (x - mean).reshape(x.shape[0], -1).to(torch.float64)
    return -0.5 * diff.square().sum(1) / var - 0.5 * d * math.log(2 * math.pi * var)


class AncestralProposal:
    """The ancestral step of ``denoiser`` along ``sigmas`` (decreasing, last 0) on particles of ``shape``; with
    ``twist`` the TDS twisted step (module docstring). ``dtype`` is the particles' dtype (float64 for exact beds).

    Counts per sample: one network evaluation per row per level (the initial state included, none at σ = 0); with
    a twist one backward pass and one twist evaluation per row per level.
    """

    def __init__(
        self,
        denoiser: Denoiser | Callable[..., torch.Tensor],
        sigmas: Sequence[float] | torch.Tensor,
        shape: Sequence[int],
        *,
        twist: LogTwist | None = None,
        dtype: torch.dtype = torch.float32,
        eta: float = 1.0,
        denoiser_kwargs: dict | None = None,
    ) -> None:
        s = [float(v) for v in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
        if len(s) < 2 or s[-1] != 0.0 or any(b >= a for a, b in zip(s, s[1:], strict=False)) or s[-2] <= 0:
            raise DiffsampleError(f"sigmas must be strictly decreasing, positive, and end with 0; got {s}")
        if not 0.0 <= eta <= 1.0 or (twist is not None and eta == 0.0):
            raise DiffsampleError(f"eta must lie in [0, 1] (and be > 0 with a twist: TDS needs densities), got {eta}")
        self.eta = float(eta)
        self.denoiser = as_denoiser(denoiser)
        self.sigmas = s
        self.shape = tuple(int(v) for v in shape)
        self.twist = twist
        self.dtype = dtype
        self.kwargs = dict(denoiser_kwargs or {})
        self._noise: SeededNoise | None = None
        self._spent = ProposalCost()

    @property
    def num_steps(self) -> int:
        return len(self.sigmas) - 1

    def cost(self) -> ProposalCost:
        return self._spent

    def _charge(self, rows: int, backward: bool) -> None:
        c = self._spent
        nfe = rows * self.denoiser.nfe_per_call
        self._spent = ProposalCost(
            c.network_evaluations + nfe,
            c.backward_passes + (rows if backward else 0),
            c.auxiliary_evaluations + (rows if backward else 0),
        )

    def _evaluate(self, x: torch.Tensor, level: int) -> Particles:
        sigma = self.sigmas[level]
        if sigma == 0.0:
            return Particles(x, x, level, 0.0)
        sig = torch.full((x.shape[0],), sigma, dtype=x.dtype)
        if self.twist is None:
            with torch.no_grad():
                x0 = self.denoiser(x, sig, **self.kwargs)
            self._charge(x.shape[0], False)
            return Particles(x, x0, level, sigma)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = self.denoiser(xg, sig, **self.kwargs)
            ell = self.twist(xg, x0, sig).to(torch.float64)
            (grad,) = torch.autograd.grad(ell.sum(), xg)
        self._charge(x.shape[0], True)
        extras = {"log_twist": ell.detach(), "grad_log_twist": grad.detach()}
        return Particles(x, x0.detach(), level, sigma, extras)

    def start(self, seeds: Sequence[int]) -> Particles:
        self._noise = seeded(list(seeds))
        self._spent = ProposalCost()
        z = self._noise.standard_normal((len(seeds), *self.shape), dtype=self.dtype)
        return self._evaluate(self.sigmas[0] * z, 0)

    def start_from(self, seeds: Sequence[int], x: torch.Tensor) -> Particles:
        """Like :meth:`start` but from given initial states ``x`` at ``sigmas[0]`` (noise search)."""
        self._noise = seeded(list(seeds))
        self._spent = ProposalCost()
        return self._evaluate(x.to(self.dtype), 0)

    def renoise(self, particles: Particles, level: int) -> Particles:
        """Move particles back up to the earlier ``level`` by the forward process, ``x + sqrt(σ_level² − σ²) z``
        (each row drawing from its own stream), and re-evaluate ``x̂0`` there (path search's re-noising)."""
        if self._noise is None:
            raise DiffsampleError("call start() before renoise()")
        if not 0 <= level <= particles.level:
            raise DiffsampleError(f"can only re-noise to a level in [0, {particles.level}], got {level}")
        up = self.sigmas[level] ** 2 - self.sigmas[particles.level] ** 2
        z = self._noise.standard_normal(particles.x.shape, dtype=particles.x.dtype, device=particles.x.device)
        return self._evaluate(particles.x + math.sqrt(up) * z, level)

    def step(self, particles: Particles) -> Transition:
        if self._noise is None:
            raise DiffsampleError("call start() before step()")
        i = particles.level
        if i >= self.num_steps:
            raise DiffsampleError(f"particles are already at the last level {self.num_steps}")
        sigma, nxt = self.sigmas[i], self.sigmas[i + 1]
        x, x0 = particles.x, particles.x0_hat
        if nxt == 0.0:
            return Transition(self._evaluate(x0, i + 1))
        rho2 = (nxt / sigma) ** 2
        var = self.eta**2 * nxt**2 * (1.0 - rho2)
        mean = x0 + math.sqrt(nxt**2 - var) / sigma * (x - x0)
        z = self._noise.standard_normal(x.shape, dtype=x.dtype, device=x.device)
        if self.twist is None:
            return Transition(self._evaluate(mean + math.sqrt(var) * z, i + 1))
        shifted = mean + (sigma**2 - nxt**2) * particles.extras["grad_log_twist"].to(x.dtype)
        new = shifted + math.sqrt(var) * z
        log_q = _gauss_log_density(new, shifted, var)
        log_p = _gauss_log_density(new, mean, var)
        return Transition(self._evaluate(new, i + 1), log_proposal=log_q, log_base=log_p)
