"""Linear-Gaussian inverse problems with a Gaussian-mixture prior: the exact posterior, a mixture, for DPS-type methods.

Measurement ``y = A x0 + n``, ``n ~ N(0, s² I)``, prior ``x0 ~ Σ_k w_k N(μ_k, Σ_k)`` with diagonal ``Σ_k`` (a
:class:`~diffsample.testbeds.GaussianMixture`). Gaussian conditioning per component (e.g. Bishop 2006, "Pattern
Recognition and Machine Learning", eqs. 2.113–2.117) gives the exact posterior ``p(x0 | y) = Σ_k w'_k N(m_k, C_k)``:

    S_k  = A Σ_k Aᵀ + s² I,            K_k = Σ_k Aᵀ S_k⁻¹,
    m_k  = μ_k + K_k (y − A μ_k),      C_k = Σ_k − K_k A Σ_k,
    w'_k ∝ w_k N(y; A μ_k, S_k),

a :class:`~diffsample.testbeds.full_mixture.FullCovarianceMixture` whose ``denoise`` is the exact posterior
denoiser at every σ (the target of posterior sampling), and ``log p(y | x0)`` is known in closed form. Operators
as matrices: :func:`masking_operator`, :func:`downsample_operator`, :func:`blur_operator` for 1-D signals or
images flattened row-major.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..errors import DiffsampleError, ShapeError
from .full_mixture import FullCovarianceMixture
from .mixture import GaussianMixture, TensorLike

__all__ = [
    "LinearInverseProblem",
    "blur_operator",
    "downsample_operator",
    "linear_inverse_problem",
    "masking_operator",
]

_F64 = torch.float64


def masking_operator(keep: Sequence[bool] | torch.Tensor) -> torch.Tensor:
    """The ``(m, d)`` matrix that keeps the coordinates where ``keep`` is true (inpainting)."""
    mask = torch.as_tensor(keep, dtype=torch.bool).reshape(-1)
    if not bool(mask.any()):
        raise DiffsampleError("a masking operator must keep at least one coordinate")
    return torch.eye(mask.numel(), dtype=_F64)[mask]


def downsample_operator(dim: int, factor: int) -> torch.Tensor:
    """Average-pooling of a 1-D signal of length ``dim`` by ``factor`` (dividing ``dim``): ``(dim/factor, dim)``."""
    if factor < 1 or dim % factor:
        raise DiffsampleError(f"downsample factor must divide the dimension {dim}, got {factor}")
    return torch.kron(torch.eye(dim // factor, dtype=_F64), torch.full((1, factor), 1.0 / factor, dtype=_F64))


def blur_operator(dim: int, width: float) -> torch.Tensor:
    """A Gaussian blur of a 1-D signal (std ``width`` samples, rows normalised, edges renormalised): ``(dim, dim)``."""
    if width <= 0:
        raise DiffsampleError(f"blur width must be positive, got {width}")
    i = torch.arange(dim, dtype=_F64)
    kernel = torch.exp(-0.5 * ((i[:, None] - i[None]) / width).square())
    return kernel / kernel.sum(1, keepdim=True)


class LinearInverseProblem:
    """``y = A x0 + n`` with a mixture prior (module docstring); built by :func:`linear_inverse_problem`.

    Attributes: ``prior``, ``operator`` (A, float64 ``(m, d)``), ``noise_std`` (s), ``y`` (float64 ``(m,)``),
    ``posterior`` (:class:`FullCovarianceMixture`, the exact posterior and its denoiser).
    """

    def __init__(self, prior: GaussianMixture, operator: TensorLike, noise_std: float, y: TensorLike) -> None:
        a = torch.as_tensor(operator, dtype=_F64)
        if a.dim() != 2 or a.shape[1] != prior.dim:
            raise ShapeError(f"operator must have shape (m, {prior.dim}), got {tuple(a.shape)}")
        y = torch.as_tensor(y, dtype=_F64).reshape(-1)
        if y.shape != (a.shape[0],):
            raise ShapeError(f"y must have shape ({a.shape[0]},), got {tuple(y.shape)}")
        if not (noise_std > 0 and math.isfinite(noise_std)):
            raise DiffsampleError(f"noise_std must be positive and finite, got {noise_std}")
        self.prior, self.operator, self.noise_std, self.y = prior, a, float(noise_std), y
        var = (prior.stds[:, None].expand_as(prior.means) if prior.isotropic else prior.stds).square()  # (K, d)
        sigma_at = var[:, :, None] * a.T[None]  # Σ_k Aᵀ, (K, d, m)
        s = a[None] @ sigma_at + noise_std**2 * torch.eye(a.shape[0], dtype=_F64)  # (K, m, m)
        gain = torch.linalg.solve(s, sigma_at.transpose(1, 2)).transpose(1, 2)  # Σ Aᵀ S⁻¹, (K, d, m)
        resid = y[None] - prior.means @ a.T  # (K, m)
        means = prior.means + torch.einsum("kdm,km->kd", gain, resid)
        covs = torch.diag_embed(var) - gain @ sigma_at.transpose(1, 2)
        chol = torch.linalg.cholesky(s)
        sol = torch.cholesky_solve(resid[:, :, None], chol)[:, :, 0]
        log_ev = -0.5 * ((resid * sol).sum(1) + 2 * chol.diagonal(dim1=1, dim2=2).log().sum(1))
        log_ev = log_ev - 0.5 * a.shape[0] * math.log(2 * math.pi)
        self.log_evidence = float(torch.logsumexp(prior.weights.log() + log_ev, 0))
        weights = torch.softmax(prior.weights.log() + log_ev, 0)
        self.posterior = FullCovarianceMixture(
            means.reshape(-1, *prior.shape), covs, weights, name=f"{prior.name}-posterior"
        )

    def measure(self, x0: torch.Tensor) -> torch.Tensor:
        """``A x0`` for a batch ``(B, …)`` → ``(B, m)`` in x0's dtype (differentiable)."""
        return x0.reshape(x0.shape[0], -1) @ self.operator.to(device=x0.device, dtype=x0.dtype).T

    def log_likelihood(self, x0: torch.Tensor) -> torch.Tensor:
        """``log p(y | x0) = −‖y − A x0‖² / (2 s²) + const`` (B,), differentiable (the constant dropped)."""
        r = self.y.to(device=x0.device, dtype=x0.dtype) - self.measure(x0)
        return -0.5 * r.square().sum(1) / self.noise_std**2

    def log_likelihood_potential(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x0 ↦ log p(y | x0)`` as a clean-data log-potential (for TFG-type guidance)."""
        return self.log_likelihood


def linear_inverse_problem(
    prior: GaussianMixture,
    operator: TensorLike,
    noise_std: float,
    *,
    y: TensorLike | None = None,
    x0: TensorLike | None = None,
    seed: int = 0,
) -> LinearInverseProblem:
    """An inverse problem with measurement ``y`` given, or simulated as ``A x0 + s n`` from ``x0`` (given, or drawn
    from the prior) with a seeded ``n``."""
    if y is None:
        gen = torch.Generator().manual_seed(seed)
        truth = prior.sample(1, gen) if x0 is None else torch.as_tensor(x0, dtype=_F64).reshape(1, -1)
        a = torch.as_tensor(operator, dtype=_F64)
        y = truth.reshape(1, -1) @ a.T + noise_std * torch.randn(1, a.shape[0], dtype=_F64, generator=gen)
    return LinearInverseProblem(prior, operator, noise_std, y)
