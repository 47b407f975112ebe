"""Feynman–Kac correctors: sample annealed, product and geometric-mixture targets from pretrained scores.

Skreta et al. 2025, "Feynman-Kac Correctors in Diffusion: Annealing, Guidance, and Product of Experts" (FKC). The
target along the noise path is an unnormalised combination of pretrained noised marginals,

    q̃_σ(x) = Π_j p_{j,σ}(x)^{β_j}:   annealing p^β (one model, β_1 = β), a product of experts p_1 p_2 (β = (1, 1)),
                                       a geometric mixture / CFG p_1^{1−γ} p_2^γ (β = (1 − γ, γ); γ > 1 is CFG).

Its score ``Σ_j β_j s_j`` is known from the models (``s_j = (D_j(x, σ) − x)/σ²``), but the reverse SDE driven by it
does not have marginals ``q_σ``. FKC simulate that SDE and correct with Feynman–Kac weights. In σ-space
(``x_σ = x0 + σ ε``, the heat flow ``∂_v p = ½ Δp`` in ``v = σ²``) with reverse time ``u`` (``du = −dv``):

    dx = b(x) du + dW_u,        b = Σ_j β_j s_j,
    d log w = [½ |Σ_j β_j s_j|² − ½ Σ_j β_j |s_j|²] du.

Derivation (FKC, §3, their Propositions for annealing and products, specialised to VE): the weighted density
``ρ`` of ``dx = b du + dW`` with ``d log w = g du`` solves ``∂_u ρ = −∇·(bρ) + ½Δρ + gρ``; asking ``ρ = q̃`` gives
``g = ∂_u log q̃ + ∇·b + b·∇log q̃ − ½(Δ log q̃ + |∇ log q̃|²)`` and, with ``∂_v log p_j = ½(∇·s_j + |s_j|²)``, the
divergence terms cancel, leaving the rate above. Special cases: annealing ``g = β(β − 1)/2 |s|²`` (FKC Prop. for
``p^β``), product ``g = ⟨s_1, s_2⟩`` (FKC Prop. for products), geometric mixture ``g = −γ(1 − γ)/2 |s_1 − s_2|²``.

Discretisation along ``sigmas`` (decreasing, last 0; ``Δu = σ_i² − σ_{i+1}²``): Euler–Maruyama
``x' = x + b(x, σ_i) Δu + √Δu z`` and the left-point weight ``Δu · g(x, σ_i)`` (first order: the trapezoid rule
on ``g`` measured worse, as it is evaluated at the Euler–Maruyama state). The start is
``N(0, σ_0²/B)`` (``B = Σ β_j``: the combined target when every ``p_{j,σ_0}`` is ``N(0, σ_0² I)``) with the constant
log-weight ``Σ_j β_j log N(x; 0, σ_0²) − log N(x; 0, σ_0²/B) = −(B − 1) d/2 log 2πσ_0² − d/2 log B``, so the SMC
normaliser estimates ``log ∫ Π_j p_j(x)^{β_j} dx`` (exact up to the Gaussian approximation at ``σ_0`` and the
discretisation).

The weights enter the engine as the transition's density ratio (``log_base − log_proposal`` with
``log_proposal = 0``), so :func:`~diffsample.scaling.engine.feynman_kac` resamples on them and may in addition tilt
by a reward; :func:`fk_corrector_smc` runs it without a reward. ``corrected=False`` gives the plain combined-score
SDE (no weights): what FKC correct.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..contracts import Denoiser
from ..denoisers import as_denoiser
from ..errors import DiffsampleError, ShapeError
from ..noise import SeededNoise, seeded
from .engine import Particles, ProposalCost, SMCResult, Transition, feynman_kac

__all__ = ["FKCorrectorProposal", "fk_corrector_smc"]

DenoiserLike = Denoiser | Callable[..., torch.Tensor]


class FKCorrectorProposal:
    """The Euler–Maruyama step of the combined-score SDE towards ``Π_j p_j^{β_j}`` with its FKC weights.

    Args:
        denoisers: the pretrained σ-space denoisers ``D_j(x, σ) -> x̂0`` (one per factor).
        exponents: ``β_j`` (same length; any real numbers, negative ones included for CFG).
        sigmas: decreasing, positive, ending with 0.
        shape: one particle's shape.
        corrected: report the FKC weights (``False``: the uncorrected SDE, weights 0).
        dtype: the particles' dtype (float64 for exact beds).
        denoiser_kwargs: one dict of keyword arguments per denoiser (e.g. class labels), or ``None``.

    Use the constructors :meth:`annealed`, :meth:`product` and :meth:`geometric_mixture`. ``x0_hat`` of the
    particles is ``x + σ² b`` (the combined prediction). Counts per sample: every denoiser's evaluations on every
    row at every level with σ > 0 (``nfe_per_call`` each; CFG-style wrappers count 2).
    """

    def __init__(
        self,
        denoisers: Sequence[DenoiserLike],
        exponents: Sequence[float],
        sigmas: Sequence[float] | torch.Tensor,
        shape: Sequence[int],
        *,
        corrected: bool = True,
        dtype: torch.dtype = torch.float32,
        denoiser_kwargs: Sequence[dict | None] | None = None,
    ) -> None:
        s = [float(v) for v in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
        if len(s) < 2 or s[-1] != 0.0 or any(b >= a for a, b in zip(s, s[1:], strict=False)) or s[-2] <= 0:
            raise DiffsampleError(f"sigmas must be strictly decreasing, positive, and end with 0; got {s}")
        dens = list(denoisers)
        betas = [float(b) for b in exponents]
        if not dens or len(dens) != len(betas):
            raise ShapeError(f"need one exponent per denoiser (at least one), got {len(dens)} and {len(betas)}")
        if not all(math.isfinite(b) for b in betas) or sum(betas) <= 0:
            raise DiffsampleError(f"exponents must be finite with a positive sum, got {betas}")
        kwargs = [None] * len(dens) if denoiser_kwargs is None else list(denoiser_kwargs)
        if len(kwargs) != len(dens):
            raise ShapeError(f"denoiser_kwargs needs one entry per denoiser ({len(dens)}), got {len(kwargs)}")
        self.denoisers = [as_denoiser(d) for d in dens]
        self.exponents = betas
        self.sigmas = s
        self.shape = tuple(int(v) for v in shape)
        self.corrected = bool(corrected)
        self.dtype = dtype
        self.kwargs = [dict(k or {}) for k in kwargs]
        self._noise: SeededNoise | None = None
        self._spent = ProposalCost()

    @classmethod
    def annealed(
        cls,
        denoiser: DenoiserLike,
        beta: float,
        sigmas: Sequence[float] | torch.Tensor,
        shape: Sequence[int],
        **kw: Any,
    ) -> FKCorrectorProposal:
        """Towards ``p^β`` (``β > 0``; ``β > 1`` sharpens, ``β < 1`` flattens)."""
        if not (math.isfinite(beta) and beta > 0):
            raise DiffsampleError(f"beta must be positive and finite, got {beta}")
        return cls([denoiser], [beta], sigmas, shape, **kw)

    @classmethod
    def product(
        cls,
        first: DenoiserLike,
        second: DenoiserLike,
        sigmas: Sequence[float] | torch.Tensor,
        shape: Sequence[int],
        **kw: Any,
    ) -> FKCorrectorProposal:
        """Towards the product of experts ``p_1 p_2``."""
        return cls([first, second], [1.0, 1.0], sigmas, shape, **kw)

    @classmethod
    def geometric_mixture(
        cls,
        first: DenoiserLike,
        second: DenoiserLike,
        gamma: float,
        sigmas: Sequence[float] | torch.Tensor,
        shape: Sequence[int],
        **kw: Any,
    ) -> FKCorrectorProposal:
        """Towards ``p_1^{1−γ} p_2^γ`` (``γ ∈ [0, 1]`` a geometric mixture; ``γ > 1`` CFG with ``p_1`` the
        unconditional and ``p_2`` the conditional model)."""
        if not math.isfinite(gamma):
            raise DiffsampleError(f"gamma must be finite, got {gamma}")
        return cls([first, second], [1.0 - gamma, gamma], sigmas, shape, **kw)

    @property
    def num_steps(self) -> int:
        return len(self.sigmas) - 1

    def cost(self) -> ProposalCost:
        return self._spent

    def _evaluate(self, x: torch.Tensor, level: int) -> Particles:
        sigma = self.sigmas[level]
        if sigma == 0.0:
            return Particles(x, x, level, 0.0)
        sig = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
        scores = []
        with torch.no_grad():
            for den, kw in zip(self.denoisers, self.kwargs, strict=True):
                scores.append((den(x, sig, **kw).to(x.dtype) - x) / sigma**2)
                c = self._spent
                self._spent = ProposalCost(
                    c.network_evaluations + x.shape[0] * den.nfe_per_call, c.backward_passes, c.auxiliary_evaluations
                )
        drift = sum(b * s for b, s in zip(self.exponents, scores, strict=True))
        assert isinstance(drift, torch.Tensor)
        n = x.shape[0]
        sq = sum(
            b * s.reshape(n, -1).to(torch.float64).square().sum(1) for b, s in zip(self.exponents, scores, strict=True)
        )
        rate = 0.5 * (drift.reshape(n, -1).to(torch.float64).square().sum(1) - sq)
        return Particles(x, x + sigma**2 * drift, level, sigma, {"drift": drift, "fk_rate": rate})

    def _start_log_weight(self) -> float:
        d = math.prod(self.shape)
        b = sum(self.exponents)
        return -(b - 1.0) * d / 2 * math.log(2 * math.pi * self.sigmas[0] ** 2) - d / 2 * math.log(b)

    def start(self, seeds: Sequence[int]) -> Particles:
        self._noise = seeded(list(seeds))
        self._spent = ProposalCost()
        z = self._noise.standard_normal((len(seeds), *self.shape), dtype=self.dtype)
        return self._evaluate(self.sigmas[0] / math.sqrt(sum(self.exponents)) * z, 0)

    def step(self, particles: Particles) -> Transition:
        if self._noise is None:
            raise DiffsampleError("call start() before step()")
        i = particles.level
        if i >= self.num_steps:
            raise DiffsampleError(f"particles are already at the last level {self.num_steps}")
        du = self.sigmas[i] ** 2 - self.sigmas[i + 1] ** 2
        x = particles.x
        z = self._noise.standard_normal(x.shape, dtype=x.dtype, device=x.device)
        new = self._evaluate(x + du * particles.extras["drift"].to(x.dtype) + math.sqrt(du) * z, i + 1)
        if not self.corrected:
            return Transition(new)
        log_w = du * particles.extras["fk_rate"]
        if i == 0:
            log_w = log_w + self._start_log_weight()
        return Transition(new, log_proposal=torch.zeros_like(log_w), log_base=log_w)


def _no_tilt(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)


def fk_corrector_smc(
    proposal: FKCorrectorProposal,
    *,
    particles: int,
    seeds: int | Sequence[int],
    populations: int = 1,
    resampling: str = "systematic",
    ess_threshold: float = 0.5,
) -> SMCResult:
    """FKC's SMC towards ``Π_j p_j^{β_j}`` on the engine (:func:`~diffsample.scaling.engine.feynman_kac` with no
    reward tilt: the constant reward 0 is counted in ``reward_evaluations`` but costs nothing). ``log_normalizer``
    estimates ``log ∫ Π_j p_j(x)^{β_j} dx`` when the proposal is corrected."""
    return feynman_kac(
        proposal,
        _no_tilt,
        particles=particles,
        seeds=seeds,
        populations=populations,
        resampling=resampling,
        ess_threshold=ess_threshold,
    )
