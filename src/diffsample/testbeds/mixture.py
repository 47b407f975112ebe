"""Exact denoisers of Gaussian mixtures and of finite data sets.

Data model: ``x0 ~ Σ_k w_k N(μ_k, diag(s_k²))`` and, in σ-space, ``x = x0 + σ ε``. Then the noised
marginal is again a mixture, ``p_σ(x) = Σ_k w_k N(x; μ_k, diag(s_k² + σ²))``, and Bayes' rule gives
the exact posterior mean (the optimal denoiser, Karras et al. 2022, eq. 3; Tweedie's formula)

    r_k(x, σ) = w_k N(x; μ_k, diag(s_k² + σ²)) / p_σ(x)                      (responsibilities)
    D(x, σ)   = Σ_k r_k(x, σ) [μ_k + s_k² / (s_k² + σ²) · (x − μ_k)]
    ∇ log p_σ(x) = Σ_k r_k(x, σ) (μ_k − x) / (s_k² + σ²) = (D(x, σ) − x) / σ²

A finite data set ``{y_i}`` is the special case ``μ_i = y_i``, ``s_i = 0``, ``w_i = 1/N`` (Karras et
al. 2022, app. B.3: the ideal denoiser of the training set), so :class:`EmpiricalDenoiser` is a
:class:`GaussianMixture` and shares all of its maths.

Everything is computed in float64 with log-sum-exp, so it stays exact at tiny σ and with point
masses (``s_k = 0``).

The limit σ → 0
---------------
Write ``Z_k`` for the coordinates where ``s_k`` is zero, ``q_k = Σ_{j∈Z_k} (x_j − μ_kj)²`` and
``z_k = |Z_k|``. As σ → 0,

    log w_k N(x; μ_k, diag(s_k² + σ²)) = −q_k / (2σ²) − z_k log σ + c_k + o(1),
    c_k = log w_k − (z_k / 2) log 2π + Σ_{j∉Z_k} log N(x_j; μ_kj, s_kj²),

so the responsibilities concentrate, lexicographically, on the components with the smallest
``q_k``, among those on the largest ``z_k``, and among those they are ``softmax(c_k)``. Each
component mean tends to ``μ_kj`` on ``Z_k`` and to ``x_j`` elsewhere. Consequences: with all
``s_k > 0`` the limit is ``D(x, 0) = x``; for a data set (all ``s_k = 0``) it is the nearest data
point (the average of the nearest ones on an exact tie); with both kinds, ``x`` itself whenever a
component of positive variance exists (its ``q_k = 0``), since a point mass then only wins at its
own location, where its mean is ``x`` anyway. ``denoise(x, 0)`` returns this limit exactly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..denoisers import Denoiser, broadcast_sigma
from ..errors import DiffsampleError, ShapeError

TensorLike = torch.Tensor | np.ndarray | Sequence[Any]
"""Anything :func:`torch.as_tensor` turns into the parameter array (a tensor, an array, nested lists)."""

__all__ = ["EmpiricalDenoiser", "GaussianMixture"]

_LOG_2PI = math.log(2.0 * math.pi)
_F64 = torch.float64


def _sq_dist(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(B, K)`` computed from differences (no ``|x|² − 2x·μ + |μ|²`` cancellation)."""
    return torch.cdist(x.unsqueeze(0), means.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist")[0].square()


def _sigma64(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """σ as a float64 ``(B,)`` tensor; a Python float is taken at full precision (not via float32)."""
    if not isinstance(sigma, torch.Tensor):
        sigma = torch.tensor(float(sigma), dtype=_F64)
    return broadcast_sigma(sigma, x).to(device=x.device, dtype=_F64)


class GaussianMixture(Denoiser):
    """The exact denoiser of ``Σ_k w_k N(μ_k, diag(s_k²))`` in σ-space (see the module docstring).

    Args:
        means: ``(K, d)``, or ``(K, *shape)`` for image-shaped samples (then ``.shape == shape``).
        stds: ``(K,)`` isotropic or ``(K, d)`` / ``(K, *shape)`` diagonal standard deviations;
            zero entries are allowed (a point mass, or a degenerate direction).
        weights: ``(K,)`` non-negative mixture weights (normalised here), or ``None`` for uniform.
            Components of zero weight are dropped.
        name: a label for reports.

    ``denoise`` accepts ``x`` of shape ``(B, d)`` or ``(B, *shape)`` and returns x's shape and dtype.
    """

    def __init__(
        self, means: TensorLike, stds: TensorLike, weights: TensorLike | None = None, name: str = "mixture"
    ) -> None:
        super().__init__()
        means = torch.as_tensor(means, dtype=_F64).detach().cpu()
        if means.dim() < 2 or means.shape[0] < 1:
            raise ShapeError(f"means must have shape (K, d) or (K, *shape) with K >= 1, got {tuple(means.shape)}")
        k = means.shape[0]
        self._shape = tuple(int(s) for s in means.shape[1:])
        self._dim = math.prod(self._shape)
        means = means.reshape(k, self._dim).contiguous()
        stds = torch.as_tensor(stds, dtype=_F64).detach().cpu()
        if stds.shape == (k,):
            self.isotropic = True
        elif stds.dim() >= 2 and stds.shape[0] == k and stds[0].numel() == self._dim:
            self.isotropic = False
            stds = stds.reshape(k, self._dim).contiguous()
        else:
            raise ShapeError(f"stds must have shape ({k},) or ({k}, {self._dim}), got {tuple(stds.shape)}")
        if weights is None:
            weights = torch.full((k,), 1.0 / k, dtype=_F64)
        weights = torch.as_tensor(weights, dtype=_F64).detach().cpu()
        if weights.shape != (k,):
            raise ShapeError(f"weights must have shape ({k},), got {tuple(weights.shape)}")
        for label, t in (("means", means), ("stds", stds), ("weights", weights)):
            if not torch.isfinite(t).all():
                raise DiffsampleError(f"{label} must be finite")
        if (stds < 0).any() or (weights < 0).any() or weights.sum() <= 0:
            raise DiffsampleError("stds and weights must be non-negative, with a positive total weight")
        keep = weights > 0
        self.means, self.stds = means[keep], stds[keep]
        self.weights = weights[keep] / weights[keep].sum()
        self.name = name
        self.homoscedastic = self.isotropic and bool((self.stds == self.stds[0]).all())
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._half_sq_norms: dict[torch.device, torch.Tensor] = {}

    # ----------------------------------------------------------------- shape and parameters
    @property
    def dim(self) -> int:
        """Number of coordinates ``d`` of one sample."""
        return self._dim

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape, e.g. ``(64,)`` or ``(1, 8, 8)``."""
        return self._shape

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def has_point_masses(self) -> bool:
        """Whether some component has a zero standard deviation in some coordinate."""
        return bool((self.stds == 0).any())

    def cache_key(self) -> str:
        """A stable hex digest of the parameters (class, shape, means, stds, weights), for caching references."""
        h = hashlib.sha256()
        h.update(f"{type(self).__name__}|{self._shape}|{self.isotropic}|".encode())
        for t in (self.means, self.stds, self.weights):
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        kind = "isotropic" if self.isotropic else "diagonal"
        return f"{type(self).__name__}(name={self.name!r}, K={self.num_components}, shape={self._shape}, {kind})"

    def _params(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._on:
            self._on[device] = (self.means.to(device), self.stds.to(device), self.weights.log().to(device))
        return self._on[device]

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x[0].numel() != self._dim:
            raise ShapeError(f"x must have shape (B, {self._dim}) or (B, *{self._shape}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self._dim).to(_F64)

    # ----------------------------------------------------------------- core maths (float64, flat)
    def _variances(self, sigma: torch.Tensor, stds: torch.Tensor) -> torch.Tensor:
        """``v = s_k² + σ²``: ``(B, K)`` isotropic (``(B, 1)`` if all ``s_k`` are equal) or ``(B, K, d)`` diagonal."""
        if self.homoscedastic:  # one variance per row, broadcast over components
            return stds[:1].square()[None, :] + sigma.square()[:, None]
        if self.isotropic:
            return stds.square()[None, :] + sigma.square()[:, None]
        return stds.square()[None] + sigma.square()[:, None, None]

    def _log_joint(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(x; μ_k, diag(v))`` for every component, ``(B, K)``; needs ``v > 0``."""
        means, _, log_w = self._params(x.device)
        if self.isotropic:
            quad = _sq_dist(x, means) / v
            return log_w - 0.5 * (quad + self._dim * (_LOG_2PI + v.log()))
        diff2 = (x[:, None, :] - means[None]).square()
        return log_w - 0.5 * (diff2 / v + _LOG_2PI + v.log()).sum(-1)

    def _logits(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-responsibilities for ``v > 0``: :meth:`_log_joint` up to a per-row constant.

        With one isotropic variance for all components (e.g. a data set) the terms common to every
        component cancel in the softmax, leaving ``log w_k + (x·μ_k − |μ_k|²/2)/v``: one matrix product.
        """
        if not self.homoscedastic:
            return self._log_joint(x, v)
        means, _, log_w = self._params(x.device)
        if x.device not in self._half_sq_norms:
            self._half_sq_norms[x.device] = 0.5 * means.square().sum(1)
        return log_w + (x @ means.T - self._half_sq_norms[x.device]) / v

    def _limit_responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Responsibilities as σ → 0 (lexicographic rule of the module docstring), ``(B, K)``."""
        means, stds, log_w = self._params(x.device)
        zero = stds == 0
        safe = torch.where(zero, torch.ones_like(stds), stds)
        if self.isotropic:
            dist = _sq_dist(x, means)
            q = torch.where(zero[None], dist, torch.zeros_like(dist))
            z = zero.to(_F64) * self._dim
            terms = torch.where(zero[None], torch.zeros_like(dist), dist / safe.square() + 2 * self._dim * safe.log())
            c = log_w - 0.5 * (terms + self._dim * _LOG_2PI)
        else:
            diff2 = (x[:, None, :] - means[None]).square()
            q = torch.where(zero[None], diff2, torch.zeros_like(diff2)).sum(-1)
            z = zero.sum(-1).to(_F64)
            terms = torch.where(zero[None], torch.zeros_like(diff2), diff2 / safe.square() + 2 * safe.log())
            c = log_w - 0.5 * (terms.sum(-1) + self._dim * _LOG_2PI)
        best = q == q.min(dim=1, keepdim=True).values
        z_best = torch.where(best, z[None], torch.full_like(q, -1.0))
        best &= z_best == z_best.max(dim=1, keepdim=True).values
        return torch.softmax(torch.where(best, c, torch.full_like(c, -math.inf)), dim=1)

    def _responsibilities(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Responsibilities ``r`` (B, K) and variances ``v = s² + σ²``, with the σ → 0 limit where needed."""
        _, stds, _ = self._params(x.device)
        v = self._variances(sigma, stds)
        degenerate = (v == 0).flatten(1).any(1)
        if not degenerate.any():
            return torch.softmax(self._logits(x, v), dim=1), v
        r = torch.empty(x.shape[0], self.num_components, dtype=_F64, device=x.device)
        ok = ~degenerate
        if ok.any():
            r[ok] = torch.softmax(self._log_joint(x[ok], v[ok]), dim=1)
        r[degenerate] = self._limit_responsibilities(x[degenerate])
        return r, v

    def _posterior_mean(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        means, stds, _ = self._params(x.device)
        r, v = self._responsibilities(x, sigma)
        s2 = stds.square()
        # shrinkage a = s²/(s² + σ²); where s = σ = 0 the limit mean is μ (a = 0), where s > 0 = σ it is x (a = 1)
        a = torch.where(v > 0, s2[None] / v.clamp_min(1e-300), torch.zeros_like(v))
        # D = Σ_k r_k [a_k x + (1 − a_k) μ_k]. Written as x + Σ_k b_k (μ_k − x), b = r (1 − a), it is exactly x
        # where no weight sits on a shrunk coordinate (σ = 0 without point masses); in the point-mass limit the
        # first form is kept where some does, so it is exactly a data point when one atom takes all of r.
        if self.isotropic:
            b, ra = r * (1 - a), (r * a).sum(1, keepdim=True)
            pulled, kept = b @ means, b.sum(1, keepdim=True)
        else:
            b, ra = r[:, :, None] * (1 - a), torch.einsum("bk,bkd->bd", r, a)
            pulled, kept = torch.einsum("bkd,kd->bd", b, means), b.sum(1)
        limit = (v == 0).flatten(1).any(1)[:, None] & (kept > 0)
        return pulled + torch.where(limit, ra * x, x - kept * x)

    def _drift(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``(x − D(x, σ))/σ = σ Σ_k r_k (x − μ_k)/(s_k² + σ²)`` for σ > 0 (and for σ = 0 without point masses)."""
        means, _, _ = self._params(x.device)
        r, v = self._responsibilities(x, sigma)
        if (v == 0).any():
            raise DiffsampleError("the PF-ODE drift is singular at sigma = 0 for a mixture with point masses")
        if self.isotropic:
            c = r * sigma[:, None] / v
            return c.sum(1, keepdim=True) * x - c @ means
        c = r[:, :, None] * sigma[:, None, None] / v
        return (c.sum(1) * x) - torch.einsum("bkd,kd->bd", c, means)

    # ----------------------------------------------------------------- public API
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Exact posterior mean ``E[x0 | x0 + σε = x]``; the exact σ → 0 limit where σ = 0."""
        s = _sigma64(sigma, x)
        return self._posterior_mean(self._flat(x), s).reshape(x.shape).to(x.dtype)

    def responsibilities(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Posterior component probabilities ``r_k(x, σ)``, float64 ``(B, K)`` (σ → 0 limit at σ = 0)."""
        s = _sigma64(sigma, x)
        return self._responsibilities(self._flat(x), s)[0]

    def component(self, x: torch.Tensor, sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Most probable component ``argmax_k r_k(x, σ)``, int64 ``(B,)``; for data at σ = 0, the nearest point."""
        return self.responsibilities(x, sigma).argmax(dim=1)

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Exact ``log p_σ(x) = logsumexp_k [log w_k + log N(x; μ_k, diag(s_k² + σ²))]``, float64 ``(B,)``.

        Differentiable in ``x``. Raises :class:`DiffsampleError` at σ = 0 when a point mass makes the
        density degenerate.
        """
        s = _sigma64(sigma, x)
        _, stds, _ = self._params(x.device)
        v = self._variances(s, stds)
        if (v == 0).any():
            raise DiffsampleError("log_prob is undefined at sigma = 0 for a mixture with point masses; use sigma > 0")
        return torch.logsumexp(self._log_joint(self._flat(x), v), dim=1)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Exact ``∇_x log p_σ(x) = Σ_k r_k (μ_k − x)/(s_k² + σ²)`` (= (D − x)/σ² for σ > 0), in x's dtype."""
        s = _sigma64(sigma, x)
        xf = self._flat(x)
        means, _, _ = self._params(x.device)
        r, v = self._responsibilities(xf, s)
        if (v == 0).any():
            raise DiffsampleError("the score is undefined at sigma = 0 for a mixture with point masses")
        c = r / v if self.isotropic else r[:, :, None] / v
        if self.isotropic:
            out = c @ means - c.sum(1, keepdim=True) * xf
        else:
            out = torch.einsum("bkd,kd->bd", c, means) - c.sum(1) * xf
        return out.reshape(x.shape).to(x.dtype)

    def pf_ode_drift(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The σ-space probability-flow ODE right-hand side ``dx/dσ = (x − D(x, σ))/σ``, float64, x's shape.

        Computed as ``σ Σ_k r_k (x − μ_k)/(s_k² + σ²)`` so it never divides by σ: without point masses it
        is finite (zero) at σ = 0; with point masses it is singular there and σ must be positive.
        """
        s = _sigma64(sigma, x)
        return self._drift(self._flat(x), s).reshape(x.shape)

    def componentwise_flow(self, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        """Move ``x`` from σ to σ' along each component's own exact PF-ODE flow, averaged by ``r_k(x, σ)``.

        For one Gaussian ``N(μ, diag(s²))`` the σ-space PF-ODE is linear and solves in closed form,
        ``x(σ') = μ + sqrt((s² + σ'²)/(s² + σ²)) (x(σ) − μ)`` (a point mass: ``μ + (σ'/σ)(x − μ)``). When one
        component holds all the responsibility this is the exact flow of the mixture; it is how
        :func:`~diffsample.testbeds.reference_solution` finishes the last tiny interval into σ = 0. float64.
        """
        if sigma <= 0:
            raise DiffsampleError("componentwise_flow needs a positive starting sigma")
        xf = self._flat(x)
        means, stds, _ = self._params(x.device)
        r, v = self._responsibilities(xf, _sigma64(sigma, x))
        ratio = ((stds.square() + float(sigma_next) ** 2) / v[0]).sqrt()  # (K,) or (K, d)
        if self.isotropic:
            out = (r @ ratio)[:, None] * xf + (r * (1 - ratio)) @ means
        else:
            out = (r @ ratio) * xf + r @ ((1 - ratio) * means)
        return out.reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = _F64) -> torch.Tensor:
        """``n`` exact draws of the data ``x0`` (σ = 0), shape ``(n, *shape)``, from an optional CPU ``generator``."""
        idx = torch.multinomial(self.weights, int(n), replacement=True, generator=generator)
        eps = torch.randn(int(n), self._dim, dtype=_F64, generator=generator)
        std = self.stds[idx][:, None] if self.isotropic else self.stds[idx]
        return (self.means[idx] + std * eps).reshape(int(n), *self._shape).to(dtype)


class EmpiricalDenoiser(GaussianMixture):
    """The optimal denoiser of a finite data set: a softmax-weighted average of the data points.

    ``D(x, σ) = Σ_i softmax_i(−|x − y_i|² / (2σ²)) y_i`` — the :class:`GaussianMixture` with means
    ``y_i``, stds 0 and uniform weights. At σ = 0 it returns the nearest data point; ``component``
    gives its index. ``data`` is ``(N, *shape)``; ``.shape`` is the per-sample shape.
    """

    def __init__(self, data: TensorLike, name: str = "empirical") -> None:
        data = torch.as_tensor(data, dtype=_F64)
        if data.dim() < 2:
            raise ShapeError(f"data must have shape (N, *shape), got {tuple(data.shape)}")
        super().__init__(data, torch.zeros(data.shape[0], dtype=_F64), None, name=name)

    @property
    def data(self) -> torch.Tensor:
        """The data points, float64 ``(N, *shape)``."""
        return self.means.reshape(-1, *self.shape)
