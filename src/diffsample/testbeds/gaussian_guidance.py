"""Exact Gaussian bed for the CFG family: every guided walk maps Gaussians to Gaussians, so its law is known.

Class-conditional ``p_c = N(μ_c, Σ_c)`` and unconditional ``p_u = N(μ_u, Σ_u)`` (full covariances, small
dimension, float64). In σ-space the exact denoiser of ``N(μ, Σ)`` is affine in x,

    D(x, σ) = μ + Σ (Σ + σ² I)^{-1} (x − μ) = A_σ x + b_σ,

so the CFG denoiser ``D_w = D_u + w (D_c − D_u)`` is affine too (``A_w = A_u + w (A_c − A_u)``), and so is
every step built from it: DDIM / Euler, DDPM / Euler ancestral (plus Gaussian noise), CFG++ and PCG's Langevin
corrector. The output law of a walk from a Gaussian start is therefore Gaussian, with mean and covariance
propagated exactly through the steps (``m' = M m + c``, ``C' = M C Mᵀ + S Sᵀ``):

* :meth:`GaussianGuidanceBed.ddim_law`, :meth:`~GaussianGuidanceBed.ddpm_law`,
  :meth:`~GaussianGuidanceBed.cfgpp_law`, :meth:`~GaussianGuidanceBed.pcg_law` — the discrete walks,
  written out step by step from the papers' updates (independently of the library's solvers);
* :meth:`~GaussianGuidanceBed.ode_law`, :meth:`~GaussianGuidanceBed.sde_law` — the continuous-time limits, the
  CFG probability-flow ODE ``dx/dσ = (x − D_w)/σ`` and the CFG reverse SDE ``dx = 2(x − D_w)/σ dσ + sqrt(2σ) dW̄``,
  through the linear ODEs of their moments (``F = (I − A_w)/σ``, ``g = b_w/σ``, both regular at σ = 0):
  ODE ``m' = F m − g``, ``C' = F C + C Fᵀ``; SDE ``m' = 2(F m − g)``, ``C' = 2(F C + C Fᵀ) − 2σ I``
  (derivatives in σ, integrated from σ_max down to 0 by DOP853);
* :meth:`~GaussianGuidanceBed.gamma_target` — the γ-powered target ``p_γ ∝ p_u^{1−γ} p_c^γ`` (and its
  σ-marginal version ``p_{u,σ}^{1−γ} p_{c,σ}^γ``): precision ``(1 − γ) Σ_u^{-1} + γ Σ_c^{-1}``;
* :func:`affine_walk_law` — the exact law of *any* walk that is affine in its start and its noise draws
  (e.g. :func:`diffsample.sample` with a CFG, CFG++ or PCG walk on this bed), found by running it on a batch of
  unit probes: this is how the library's walks are checked against the step-by-step laws above.

The known counterexamples come out with numbers (Chidambaram et al. 2024, "What does guidance do? A fine-grained
analysis in a simple setting"; Bradley & Nakkiran 2024, "Classifier-Free Guidance is a Predictor-Corrector"):
for γ ≠ 0, 1 the CFG-ODE law, the CFG-SDE law and ``p_γ`` are three different Gaussians
(:meth:`GaussianGuidanceBed.counterexample`). Metrics: exact :func:`w2` and :func:`kl` between Gaussian laws,
and :func:`moment_z_scores` for samples against a law.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..denoisers import FunctionDenoiser
from ..errors import DiffsampleError, ShapeError
from ..solvers.ancestral import ancestral_split

__all__ = [
    "GaussianGuidanceBed",
    "GaussianLaw",
    "affine_walk_law",
    "default_bed",
    "kl",
    "moment_z_scores",
    "w2",
]

F64 = torch.float64


def _sym(c: torch.Tensor) -> torch.Tensor:
    return 0.5 * (c + c.T)


def _sqrtm(c: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(_sym(c))
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


@dataclass(frozen=True)
class GaussianLaw:
    """``N(mean, cov)`` in float64: ``mean`` of shape ``(d,)``, ``cov`` ``(d, d)`` symmetric positive semi-definite."""

    mean: torch.Tensor
    cov: torch.Tensor

    @staticmethod
    def of(mean: Sequence[float] | torch.Tensor, cov: Sequence[Sequence[float]] | torch.Tensor) -> GaussianLaw:
        """A law from array-likes (a 1-d ``cov`` is a diagonal); checks shapes, symmetry and positivity."""
        m = torch.as_tensor(mean, dtype=F64).reshape(-1)
        c = torch.as_tensor(cov, dtype=F64)
        if c.dim() == 1:
            c = torch.diag(c)
        d = m.shape[0]
        if c.shape != (d, d):
            raise ShapeError(f"covariance must be ({d}, {d}) for a mean of dimension {d}, got {tuple(c.shape)}")
        if not torch.allclose(c, c.T, rtol=0, atol=1e-12 * float(c.abs().max().clamp_min(1))):
            raise DiffsampleError("covariance must be symmetric")
        if float(torch.linalg.eigvalsh(c).min()) <= 0:
            raise DiffsampleError("covariance must be positive definite")
        return GaussianLaw(m, c)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def noised(self, sigma: float) -> GaussianLaw:
        """The law of ``x + σ z``: ``N(μ, Σ + σ² I)``."""
        return GaussianLaw(self.mean, self.cov + sigma**2 * torch.eye(self.dim, dtype=F64))

    def denoiser_affine(self, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, b)`` with ``D(x, σ) = A x + b``: ``A = Σ (Σ + σ² I)^{-1}``, ``b = μ − A μ``."""
        eye = torch.eye(self.dim, dtype=F64)
        a = torch.linalg.solve(self.cov + sigma**2 * eye, self.cov).T  # Σ(Σ+σ²)^{-1}, Σ and its inverse commute
        return a, self.mean - a @ self.mean

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples, shape ``(n, d)``."""
        z = torch.randn(n, self.dim, generator=generator, dtype=F64)
        return self.mean + z @ torch.linalg.cholesky(self.cov).T


def w2(p: GaussianLaw, q: GaussianLaw) -> float:
    """2-Wasserstein distance between Gaussians:
    ``‖m_p − m_q‖² + tr(C_p + C_q − 2 (C_q^{1/2} C_p C_q^{1/2})^{1/2})``, square-rooted."""
    root_q = _sqrtm(q.cov)
    cross = _sqrtm(root_q @ p.cov @ root_q)
    sq = float(((p.mean - q.mean) ** 2).sum() + torch.trace(p.cov + q.cov - 2 * cross))
    return math.sqrt(max(sq, 0.0))


def kl(p: GaussianLaw, q: GaussianLaw) -> float:
    """``KL(p ‖ q) = ½ [tr(C_q^{-1} C_p) + (m_q − m_p)ᵀ C_q^{-1} (m_q − m_p) − d + log det C_q − log det C_p]``."""
    dm = q.mean - p.mean
    solve = torch.linalg.solve(q.cov, torch.cat([p.cov, dm[:, None]], dim=1))
    logdet = torch.linalg.slogdet(q.cov)[1] - torch.linalg.slogdet(p.cov)[1]
    return 0.5 * float(torch.trace(solve[:, :-1]) + dm @ solve[:, -1] - p.dim + logdet)


def moment_z_scores(samples: torch.Tensor, law: GaussianLaw) -> torch.Tensor:
    """Standardised errors of the sample mean and covariance of ``samples`` (n, d) against ``law``.

    Mean entries: ``(m̂ − μ)_i / sqrt(C_ii / n)``; covariance entries: ``(Ĉ − C)_ij / sqrt((C_ii C_jj + C_ij²)/n)``
    (the Gaussian variance of a sample covariance). For samples of ``law`` each is ≈ N(0, 1).
    """
    x = samples.to(F64)
    n = x.shape[0]
    mean = x.mean(0)
    cov = torch.cov(x.T, correction=1).reshape(law.dim, law.dim)
    c = law.cov
    z_mean = (mean - law.mean) / (torch.diagonal(c) / n).sqrt()
    var_cov = (torch.outer(torch.diagonal(c), torch.diagonal(c)) + c**2) / n
    z_cov = (cov - c) / var_cov.sqrt()
    rows, cols = torch.triu_indices(law.dim, law.dim)
    return torch.cat([z_mean, z_cov[rows, cols]])


class _Recorder:
    """A noise source that returns zeros and counts its draws (the probe's first pass)."""

    def __init__(self) -> None:
        self.draws = 0

    def __call__(self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
        self.draws += 1
        return torch.zeros_like(x)


class _UnitDraws:
    """Draw k returns, on row ``1 + d + k·d + j``, the unit vector e_j, and zero elsewhere."""

    def __init__(self, dim: int, draws: int) -> None:
        self.dim, self.draws, self.k = dim, draws, 0

    def __call__(self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
        if self.k >= self.draws:
            raise DiffsampleError("affine_walk_law: the walk drew more noise on the probe batch than on one sample")
        z = torch.zeros_like(x)
        first = 1 + self.dim + self.k * self.dim
        z[first : first + self.dim] = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        self.k += 1
        return z


def affine_walk_law(walk: Callable[[torch.Tensor, Any], torch.Tensor], start: GaussianLaw) -> GaussianLaw:
    """The exact output law of ``walk(x, noise)`` for ``x ~ start``, when the walk is affine in x and its noise.

    ``walk`` maps a ``(B, d)`` float64 batch and a noise source to the ``(B, d)`` output, sample by sample
    independently (as every :func:`diffsample.sample` walk does). Written ``x_out = M x + c + Σ_k S_k z_k``, its
    law is ``N(M m + c, M C Mᵀ + Σ_k S_k S_kᵀ)``. One walk on a zero-noise sample counts the draws ``K``; one
    walk on a batch of ``1 + d + K d`` probes (x = 0; x = e_j; the draw k set to e_j) reads off c, M and S_k.
    """
    d = start.dim
    recorder = _Recorder()
    walk(torch.zeros(1, d, dtype=F64), recorder)
    draws = recorder.draws
    probes = torch.zeros(1 + d + draws * d, d, dtype=F64)
    probes[1 : 1 + d] = torch.eye(d, dtype=F64)
    out = walk(probes, _UnitDraws(d, draws)).to(F64)
    c = out[0]
    m = (out[1 : 1 + d] - c).T
    s = (out[1 + d :] - c).reshape(draws, d, d).transpose(1, 2)  # S_k columns: response to e_j at draw k
    cov = m @ start.cov @ m.T + (s @ s.transpose(1, 2)).sum(0)
    return GaussianLaw(m @ start.mean + c, _sym(cov))


class GaussianGuidanceBed:
    """The exact bed of the module docstring: ``p_c = N(μ_c, Σ_c)`` (class) and ``p_u = N(μ_u, Σ_u)`` (null)."""

    def __init__(self, cond: GaussianLaw, uncond: GaussianLaw) -> None:
        if cond.dim != uncond.dim:
            raise ShapeError(f"conditional and unconditional laws differ in dimension: {cond.dim} vs {uncond.dim}")
        self.cond, self.uncond = cond, uncond
        self.dim = cond.dim

    # ---- denoisers -------------------------------------------------------------------------------
    def _denoiser(self, law: GaussianLaw) -> FunctionDenoiser:
        def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            s2 = sigma.to(F64).reshape(-1, 1, 1) ** 2
            eye = torch.eye(self.dim, dtype=F64)
            a = torch.linalg.solve(law.cov + s2 * eye, law.cov.expand(len(s2), -1, -1)).transpose(1, 2)
            centred = (x.to(F64) - law.mean).unsqueeze(-1)
            return (law.mean + (a @ centred).squeeze(-1)).to(x.dtype)

        return FunctionDenoiser(fn)

    def conditional(self) -> FunctionDenoiser:
        """The exact denoiser of ``p_c`` (counting its calls)."""
        return self._denoiser(self.cond)

    def unconditional(self) -> FunctionDenoiser:
        """The exact denoiser of ``p_u`` (counting its calls)."""
        return self._denoiser(self.uncond)

    def guided_affine(self, w: float, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A_w, b_w)`` of the CFG denoiser ``D_u + w (D_c − D_u)`` at σ."""
        a_c, b_c = self.cond.denoiser_affine(sigma)
        a_u, b_u = self.uncond.denoiser_affine(sigma)
        return a_u + w * (a_c - a_u), b_u + w * (b_c - b_u)

    # ---- targets ---------------------------------------------------------------------------------
    def gamma_target(self, gamma: float, sigma: float = 0.0) -> GaussianLaw:
        """``p_{u,σ}^{1−γ} p_{c,σ}^γ`` normalised: precision ``(1−γ) Σ_u,σ^{-1} + γ Σ_c,σ^{-1}`` (σ = 0: ``p_γ``)."""
        u, c = self.uncond.noised(sigma), self.cond.noised(sigma)
        pu, pc = torch.linalg.inv(u.cov), torch.linalg.inv(c.cov)
        precision = _sym((1 - gamma) * pu + gamma * pc)
        if float(torch.linalg.eigvalsh(precision).min()) <= 0:
            raise DiffsampleError(f"p_u^(1-gamma) p_c^gamma is not normalisable for gamma={gamma} on this bed")
        cov = _sym(torch.linalg.inv(precision))
        return GaussianLaw(cov @ ((1 - gamma) * pu @ u.mean + gamma * pc @ c.mean), cov)

    def start(self, sigma_max: float) -> GaussianLaw:
        """The usual start of a walk, ``N(0, σ_max² I)``."""
        return GaussianLaw(torch.zeros(self.dim, dtype=F64), sigma_max**2 * torch.eye(self.dim, dtype=F64))

    # ---- discrete walks, step by step ----------------------------------------------------------------
    @staticmethod
    def _push(law: GaussianLaw, m: torch.Tensor, c: torch.Tensor, noise_var: float = 0.0) -> GaussianLaw:
        eye = torch.eye(law.dim, dtype=F64)
        return GaussianLaw(m @ law.mean + c, _sym(m @ law.cov @ m.T + noise_var * eye))

    def _levels(self, sigmas: torch.Tensor | Sequence[float]) -> list[float]:
        s = [float(v) for v in torch.as_tensor(sigmas, dtype=F64).reshape(-1).tolist()]
        if len(s) < 2 or any(not a > b for a, b in zip(s, s[1:], strict=False)) or s[-1] < 0:
            raise DiffsampleError("sigmas must be at least two strictly decreasing levels >= 0")
        return s

    def _start(self, start: GaussianLaw | None, s: list[float]) -> GaussianLaw:
        return self.start(s[0]) if start is None else start

    def ddpm_law(
        self, w: float, sigmas: torch.Tensor | Sequence[float], start: GaussianLaw | None = None, eta: float = 1.0
    ) -> GaussianLaw:
        """CFG with the ancestral step ``x' = D_w + r (x − D_w) + σ_up z``, ``r = σ_down/σ`` (η = 1: DDPM;
        η = 0: DDIM); into σ' = 0 the step returns ``D_w``."""
        s = self._levels(sigmas)
        law = self._start(start, s)
        eye = torch.eye(self.dim, dtype=F64)
        for sigma, nxt in zip(s, s[1:], strict=False):
            a, b = self.guided_affine(w, sigma)
            if nxt == 0:
                law = self._push(law, a, b)
                continue
            down, up = ancestral_split(sigma, nxt, eta)
            r = down / sigma
            law = self._push(law, r * eye + (1 - r) * a, (1 - r) * b, up**2)
        return law

    def ddim_law(
        self, w: float, sigmas: torch.Tensor | Sequence[float], start: GaussianLaw | None = None
    ) -> GaussianLaw:
        """CFG with the DDIM / Euler step ``x' = D_w + (σ'/σ)(x − D_w)``."""
        return self.ddpm_law(w, sigmas, start, eta=0.0)

    def cfgpp_law(
        self, lam: float, sigmas: torch.Tensor | Sequence[float], start: GaussianLaw | None = None, eta: float = 0.0
    ) -> GaussianLaw:
        """CFG++ (Chung et al. 2024): ``x' = D_λ + r (x − D_u) + σ_up z`` with ``r = σ_down/σ`` (η = 0: their
        DDIM Algorithm 1; η = 1: the ancestral/DDPM version); into σ' = 0 the step returns ``D_λ``."""
        s = self._levels(sigmas)
        law = self._start(start, s)
        eye = torch.eye(self.dim, dtype=F64)
        for sigma, nxt in zip(s, s[1:], strict=False):
            a_l, b_l = self.guided_affine(lam, sigma)
            a_u, b_u = self.uncond.denoiser_affine(sigma)
            down, up = ancestral_split(sigma, nxt, eta) if nxt > 0 else (0.0, 0.0)
            r = down / sigma
            law = self._push(law, a_l + r * (eye - a_u), b_l - r * b_u, up**2)
        return law

    def pcg_law(
        self,
        predictor_w: float,
        gamma: float,
        sigmas: torch.Tensor | Sequence[float],
        corrector_steps: int,
        step_size: float,
        start: GaussianLaw | None = None,
        eta: float = 0.0,
    ) -> GaussianLaw:
        """PCG (Bradley & Nakkiran 2024): DDIM (η = 0) or DDPM (η = 1) predictor on ``D_{w_p}``, then at σ' > 0
        ``K`` Langevin steps ``x ← x + c (D_γ − x) + sqrt(2c) σ' z`` (:mod:`diffsample.transforms.pcg`)."""
        s = self._levels(sigmas)
        law = self._start(start, s)
        eye = torch.eye(self.dim, dtype=F64)
        c = float(step_size)
        for sigma, nxt in zip(s, s[1:], strict=False):
            a, b = self.guided_affine(predictor_w, sigma)
            if nxt == 0:
                law = self._push(law, a, b)
                continue
            down, up = ancestral_split(sigma, nxt, eta)
            r = down / sigma
            law = self._push(law, r * eye + (1 - r) * a, (1 - r) * b, up**2)
            a_g, b_g = self.guided_affine(gamma, nxt)
            for _ in range(corrector_steps):
                law = self._push(law, (1 - c) * eye + c * a_g, c * b_g, 2 * c * nxt**2)
        return law

    # ---- continuous-time limits -----------------------------------------------------------------------
    def _drift(self, w: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """``F = (I − A_w)/σ`` and ``g = b_w/σ`` in closed form (regular at σ = 0)."""
        eye = torch.eye(self.dim, dtype=F64)
        f = torch.zeros(self.dim, self.dim, dtype=F64)
        g = torch.zeros(self.dim, dtype=F64)
        for weight, law in ((1 - w, self.uncond), (w, self.cond)):
            inv = torch.linalg.inv(law.cov + sigma**2 * eye)
            f = f + weight * sigma * inv
            g = g + weight * sigma * inv @ law.mean
        return f.numpy(), g.numpy()

    def _moment_flow(self, w: float, sigma_max: float, start: GaussianLaw | None, stochastic: bool) -> GaussianLaw:
        from scipy.integrate import solve_ivp

        d = self.dim
        law = self.start(sigma_max) if start is None else start
        k = 2.0 if stochastic else 1.0

        def rhs(sigma: float, y: np.ndarray) -> np.ndarray:
            f, g = self._drift(w, sigma)
            m, c = y[:d], y[d:].reshape(d, d)
            dc = k * (f @ c + c @ f.T) - (2 * sigma * np.eye(d) if stochastic else 0.0)
            return np.concatenate([k * (f @ m - g), dc.reshape(-1)])

        y0 = np.concatenate([law.mean.numpy(), law.cov.numpy().reshape(-1)])
        sol = solve_ivp(rhs, (sigma_max, 0.0), y0, method="DOP853", rtol=1e-12, atol=1e-12)
        if not sol.success:
            raise DiffsampleError(f"moment ODE failed: {sol.message}")
        y = torch.from_numpy(sol.y[:, -1].copy())
        return GaussianLaw(y[:d], _sym(y[d:].reshape(d, d)))

    def ode_law(self, w: float, sigma_max: float, start: GaussianLaw | None = None) -> GaussianLaw:
        """The law the CFG probability-flow ODE reaches at σ = 0 from ``start`` at ``σ_max`` (exact moments)."""
        return self._moment_flow(w, sigma_max, start, stochastic=False)

    def sde_law(self, w: float, sigma_max: float, start: GaussianLaw | None = None) -> GaussianLaw:
        """The law the CFG reverse SDE (the continuous DDPM) reaches at σ = 0 from ``start`` at ``σ_max``."""
        return self._moment_flow(w, sigma_max, start, stochastic=True)

    def counterexample(self, gamma: float, sigma_max: float = 80.0) -> dict[str, float]:
        """``W2`` between the CFG-ODE law, the CFG-SDE law and ``p_γ`` (all three differ for γ ∉ {0, 1})."""
        ode, sde, target = self.ode_law(gamma, sigma_max), self.sde_law(gamma, sigma_max), self.gamma_target(gamma)
        return {
            "w2(ode, sde)": w2(ode, sde),
            "w2(ode, p_gamma)": w2(ode, target),
            "w2(sde, p_gamma)": w2(sde, target),
        }


def default_bed() -> GaussianGuidanceBed:
    """A 2-d bed with correlated, unequal covariances (the suite's and the tests' bed).

    ``Σ_c`` is smaller than ``Σ_u`` in every direction, so ``p_u^{1−γ} p_c^γ`` is normalisable for every γ ≥ 0.
    """
    cond = GaussianLaw.of([1.0, 0.5], [[0.5, 0.2], [0.2, 0.3]])
    uncond = GaussianLaw.of([0.0, 0.0], [[1.5, 0.3], [0.3, 1.0]])
    return GaussianGuidanceBed(cond, uncond)
