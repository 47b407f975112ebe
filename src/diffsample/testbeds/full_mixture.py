"""The exact denoiser of a Gaussian mixture with full covariance matrices (posteriors of linear inverse problems).

Data model ``x0 ~ Σ_k w_k N(m_k, C_k)`` and ``x = x0 + σ ε``. Each covariance is diagonalised once,
``C_k = U_k diag(λ_k) U_kᵀ``, so with ``z = U_kᵀ (x − m_k)`` everything is coordinate-wise in the component's
eigenbasis:

    log N(x; m_k, C_k + σ² I) = −½ Σ_j [z_j² / (λ_kj + σ²) + log 2π (λ_kj + σ²)],
    E[x0 | x, k] = m_k + U_k diag(λ_k / (λ_k + σ²)) z,
    D(x, σ) = Σ_k r_k(x, σ) E[x0 | x, k],   r_k ∝ w_k N(x; m_k, C_k + σ² I)          (Bayes; Tweedie)

(Karras et al. 2022, eq. 3 for the optimal denoiser). float64 throughout; σ must be positive where a covariance
is singular (``λ = 0``). The diagonal case is :class:`~diffsample.testbeds.GaussianMixture`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..denoisers import Denoiser, broadcast_sigma
from ..errors import DiffsampleError, ShapeError
from .mixture import TensorLike

__all__ = ["FullCovarianceMixture"]

_F64 = torch.float64


class FullCovarianceMixture(Denoiser):
    """``Σ_k w_k N(m_k, C_k)`` with symmetric positive semi-definite ``C_k`` (module docstring).

    Args:
        means: ``(K, d)`` or ``(K, *shape)``; covariances ``(K, d, d)``; weights ``(K,)`` (normalised here).
    """

    def __init__(
        self, means: TensorLike, covariances: TensorLike, weights: TensorLike, name: str = "full-mixture"
    ) -> None:
        super().__init__()
        means = torch.as_tensor(means, dtype=_F64).detach().cpu()
        if means.dim() < 2:
            raise ShapeError(f"means must have shape (K, d) or (K, *shape), got {tuple(means.shape)}")
        k = means.shape[0]
        self.shape = tuple(int(s) for s in means.shape[1:])
        self.dim = math.prod(self.shape)
        self.means = means.reshape(k, self.dim)
        cov = torch.as_tensor(covariances, dtype=_F64).detach().cpu()
        if cov.shape != (k, self.dim, self.dim):
            raise ShapeError(f"covariances must have shape ({k}, {self.dim}, {self.dim}), got {tuple(cov.shape)}")
        w = torch.as_tensor(weights, dtype=_F64).detach().cpu().reshape(-1)
        if w.shape != (k,) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise DiffsampleError(f"weights must be {k} non-negative numbers with a positive sum")
        self.covariances = 0.5 * (cov + cov.transpose(1, 2))
        lam, vec = torch.linalg.eigh(self.covariances)
        scale = lam.abs().amax(1, keepdim=True).clamp_min(1.0)
        if bool((lam < -1e-9 * scale).any()):
            raise DiffsampleError("covariances must be positive semi-definite")
        self.eigenvalues, self.eigenvectors = lam.clamp_min(0.0), vec
        self.weights = w / w.sum()
        self.name = name

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x[0].numel() != self.dim:
            raise ShapeError(f"x must have shape (B, {self.dim}) or (B, *{self.shape}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.dim).to(_F64)

    def _parts(self, x: torch.Tensor, sigma: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eigen-coordinates ``z`` (B, K, d), variances ``λ + σ²`` (B, K, d) and log-joints (B, K)."""
        flat = self._flat(x)
        s = broadcast_sigma(sigma if isinstance(sigma, torch.Tensor) else float(sigma), flat).to(x.device, _F64)
        means, vec, lam = (t.to(x.device) for t in (self.means, self.eigenvectors, self.eigenvalues))
        z = torch.einsum("kdj,bkd->bkj", vec, flat[:, None, :] - means[None])
        var = lam[None] + s.square()[:, None, None]
        if bool((var <= 0).any()):
            raise DiffsampleError("sigma must be positive for a mixture with a singular covariance")
        log_joint = self.weights.log().to(x.device) - 0.5 * (z.square() / var + math.log(2 * math.pi) + var.log()).sum(
            -1
        )
        return z, var, log_joint

    def responsibilities(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``r_k(x, σ)``, float64 ``(B, K)``."""
        return torch.softmax(self._parts(x, sigma)[2], dim=1)

    def component(self, x: torch.Tensor, sigma: torch.Tensor | float = 1e-6) -> torch.Tensor:
        """``argmax_k r_k(x, σ)`` (int64 ``(B,)``); the default tiny σ keeps singular covariances defined."""
        return self.responsibilities(x, sigma).argmax(dim=1)

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``log p_σ(x)``, float64 ``(B,)``, differentiable in x."""
        return torch.logsumexp(self._parts(x, sigma)[2], dim=1)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The exact ``E[x0 | x0 + σε = x]`` (module docstring), in x's shape and dtype."""
        z, var, log_joint = self._parts(x, sigma)
        r = torch.softmax(log_joint, dim=1)
        lam, vec = self.eigenvalues.to(x.device), self.eigenvectors.to(x.device)
        shrunk = lam[None] / var * z  # (B, K, d) in eigen-coordinates
        cond = self.means.to(x.device)[None] + torch.einsum("kdj,bkj->bkd", vec, shrunk)
        return (r[:, :, None] * cond).sum(1).reshape(x.shape).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = _F64) -> torch.Tensor:
        """``n`` exact draws ``(n, *shape)`` from an optional CPU ``generator``."""
        idx = torch.multinomial(self.weights, int(n), replacement=True, generator=generator)
        eps = torch.randn(int(n), self.dim, dtype=_F64, generator=generator)
        root = self.eigenvectors * self.eigenvalues.sqrt()[:, None, :]  # U diag(√λ)
        x = self.means[idx] + torch.einsum("ndj,nj->nd", root[idx], eps)
        return x.reshape(int(n), *self.shape).to(dtype)
