"""The exact reverse chain of a Gaussian-mixture bed, as a proposal: SMC tests free of discretisation error.

For ``p = Σ_k w_k N(μ_k, diag(s_k²))`` and the forward process ``x_σ = x0 + σ ε`` (independent increments), the
reverse transition from ``σ`` to ``σ' < σ`` is exact and Gaussian given the component ``k``: with
``c = s_k² + σ'²`` and ``v = s_k² + σ²`` (per coordinate),

    p(x' | x, k) = N(x'; μ_k + (c/v)(x − μ_k), c (σ² − σ'²)/v),     k ~ r_k(x, σ) (responsibilities),

(Gaussian conditioning with ``Cov(x_{σ'}, x_σ) = c``), and ``x_{σ0} ~ Σ_k w_k N(μ_k, s_k² + σ0²)``. Every level's
particles then follow the prior's noised marginal exactly, so SMC with the exact twist of
:class:`~diffsample.testbeds.TiltedMixture` targets the tilted law with no bias but Monte Carlo error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import DiffsampleError
from ..noise import SeededNoise, seeded
from ..testbeds.mixture import GaussianMixture
from .engine import Particles, ProposalCost, Transition

__all__ = ["ExactMixtureChain"]

_F64 = torch.float64


class ExactMixtureChain:
    """Proposal drawing the exact reverse chain of ``prior`` along ``sigmas`` (decreasing, last 0), float64.

    ``x0_hat`` is the exact posterior mean (one network evaluation per row per level with σ > 0)."""

    def __init__(self, prior: GaussianMixture, sigmas: Sequence[float] | torch.Tensor) -> None:
        s = [float(v) for v in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
        if len(s) < 2 or s[-1] != 0.0 or any(b >= a for a, b in zip(s, s[1:], strict=False)):
            raise DiffsampleError(f"sigmas must be strictly decreasing and end with 0; got {s}")
        self.prior, self.sigmas = prior, s
        self.means = prior.means.to(_F64)
        stds = prior.stds.to(_F64)
        self.var0 = (stds[:, None].expand_as(self.means) if prior.isotropic else stds).square()
        self._noise: SeededNoise | None = None
        self._evals = 0

    @property
    def num_steps(self) -> int:
        return len(self.sigmas) - 1

    def cost(self) -> ProposalCost:
        return ProposalCost(network_evaluations=self._evals)

    def _particles(self, x: torch.Tensor, level: int) -> Particles:
        sigma = self.sigmas[level]
        if sigma == 0.0:
            return Particles(x, x, level, 0.0)
        self._evals += x.shape[0]
        return Particles(x, self.prior(x, torch.full((x.shape[0],), sigma, dtype=_F64)), level, sigma)

    def _pick(self, probs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        u = torch.special.ndtr(z).clamp(0.0, 1.0 - 1e-16)
        cdf = torch.cumsum(probs, dim=1)
        cdf[:, -1] = 1.0
        return torch.searchsorted(cdf, u[:, None].contiguous(), right=True)[:, 0].clamp_max(probs.shape[1] - 1)

    def start(self, seeds: Sequence[int]) -> Particles:
        self._noise = seeded(list(seeds))
        self._evals = 0
        n, d = len(seeds), self.prior.dim
        z = self._noise.standard_normal((n, d + 1), dtype=_F64)
        k = self._pick(self.prior.weights.to(_F64)[None].expand(n, -1), z[:, 0])
        x = self.means[k] + (self.var0[k] + self.sigmas[0] ** 2).sqrt() * z[:, 1:]
        return self._particles(x.reshape(n, *self.prior.shape), 0)

    def step(self, particles: Particles) -> Transition:
        if self._noise is None:
            raise DiffsampleError("call start() before step()")
        i = particles.level
        sigma, nxt = self.sigmas[i], self.sigmas[i + 1]
        n, d = particles.x.shape[0], self.prior.dim
        x = particles.x.reshape(n, d).to(_F64)
        z = self._noise.standard_normal((n, d + 1), dtype=_F64)
        k = self._pick(self.prior.responsibilities(x, sigma), z[:, 0])
        mu, s2 = self.means[k], self.var0[k]
        c, v = s2 + nxt**2, s2 + sigma**2
        new = mu + (c / v) * (x - mu) + (c * (sigma**2 - nxt**2) / v).sqrt() * z[:, 1:]
        return Transition(self._particles(new.reshape(n, *self.prior.shape), i + 1))
