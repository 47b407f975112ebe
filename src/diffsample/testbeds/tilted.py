"""Reward-tilted Gaussian mixtures and labelled mixtures: exact targets for gradient guidance and reward methods.

Tilting
-------
For a mixture prior ``p(x) = Σ_k w_k N(x; μ_k, diag(s_k²))`` and a reward that is at most quadratic with a
diagonal curvature,

    r(x) = aᵀx − ½ Σ_j q_j (x_j − b_j)²,        q_j ≥ 0,

the tilted law ``p_α(x) = p(x) exp(r(x)/α) / Z`` is again a Gaussian mixture: per coordinate, with
``a' = a/α``, ``c = q/α`` and ``d = μ_k − b``,

    s'²  = s² / (1 + c s²),                     μ' = (μ + s² (a' + c b)) / (1 + c s²),
    log E_{N(μ_k, s_k²)}[exp(r/α)] = Σ_j [a'μ − ½ c d² + s² (a' − c d)² / (2 (1 + c s²)) − ½ log(1 + c s²)],

(the Gaussian integral ``E[exp(βz − ½γz²)] = (1 + γ)^{-1/2} exp(β² / (2(1 + γ)))`` for ``z ~ N(0, 1)``), so the
new weights are ``w'_k ∝ w_k E_k[exp(r/α)]`` and ``log Z = logsumexp_k (log w_k + log E_k[exp(r/α)])``. These
formulas hold for point masses (``s = 0``) too. Every noised marginal of the tilted law is the tilted mixture's
own noised marginal, so its exact denoiser is the :class:`~diffsample.testbeds.GaussianMixture` of the tilted
parameters, at every σ.

The exact twist (the optimal value function of reward-guided sampling, e.g. Wu et al. 2023, "Practical and
Asymptotically Exact Conditional Sampling in Diffusion Models" (TDS), eq. 5; Uehara et al. 2024 (SVDD))
follows from Bayes' rule, ``p_{α,σ}(x) = p_σ(x) h_σ(x) / Z``:

    h_σ(x) = E[exp(r(x0)/α) | x0 + σε = x],   log h_σ(x) = log Z + log p_{α,σ}(x) − log p_σ(x),

and classifier guidance with ``f = log h_σ`` and weight 1 turns the prior's denoiser into the tilted one
(``D + σ² ∇ log h_σ``; Tweedie's formula).

Labelled mixtures
-----------------
If component ``k`` carries the label ``ℓ(k)``, the Bayes-optimal noisy classifier is exact:
``log p_σ(y | x) = logsumexp_{k: ℓ(k) = y} log r_k(x, σ)`` with the mixture's responsibilities ``r_k``
(:func:`noisy_class_log_prob`), and ``p(x | y)`` is the mixture of the components labelled ``y``
(:func:`class_conditional`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import DiffsampleError, ShapeError
from .mixture import GaussianMixture, TensorLike

__all__ = [
    "QuadraticReward",
    "TiltedMixture",
    "class_conditional",
    "linear_reward",
    "noisy_class_log_prob",
    "noisy_classifier",
    "quadratic_reward",
    "tilt",
]

_F64 = torch.float64


@dataclass(frozen=True)
class QuadraticReward:
    """``r(x) = aᵀx − ½ Σ_j q_j (x_j − b_j)²`` on flattened samples: ``linear`` = a, ``center`` = b, ``curvature`` =
    q ≥ 0 (each float64 ``(d,)``). Calling it on ``x`` of shape ``(B, …)`` gives ``(B,)`` in x's dtype
    (differentiable)."""

    linear: torch.Tensor
    center: torch.Tensor
    curvature: torch.Tensor

    def __post_init__(self) -> None:
        shapes = {tuple(t.shape) for t in (self.linear, self.center, self.curvature)}
        if len(shapes) != 1 or self.linear.dim() != 1:
            raise ShapeError(f"linear, center and curvature must all have shape (d,), got {sorted(shapes)}")
        for name, t in (("linear", self.linear), ("center", self.center), ("curvature", self.curvature)):
            if not bool(torch.isfinite(t).all()):
                raise DiffsampleError(f"reward {name} must be finite")
        if bool((self.curvature < 0).any()):
            raise DiffsampleError(
                "reward curvature q must be non-negative (a concave reward keeps the tilt normalisable)"
            )

    @property
    def dim(self) -> int:
        return int(self.linear.shape[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ShapeError(f"reward of dimension {self.dim} got samples of shape {tuple(x.shape)}")
        a, b, q = (t.to(device=x.device, dtype=flat.dtype) for t in (self.linear, self.center, self.curvature))
        return flat @ a - 0.5 * ((flat - b).square() * q).sum(1)


def linear_reward(a: TensorLike) -> QuadraticReward:
    """``r(x) = aᵀx`` (``a`` flattened to ``(d,)``)."""
    a = torch.as_tensor(a, dtype=_F64).reshape(-1)
    return QuadraticReward(a, torch.zeros_like(a), torch.zeros_like(a))


def quadratic_reward(center: TensorLike, curvature: TensorLike | float) -> QuadraticReward:
    """``r(x) = −½ Σ_j q_j (x_j − b_j)²`` with ``b = center`` and diagonal ``q = curvature`` (a number: isotropic)."""
    b = torch.as_tensor(center, dtype=_F64).reshape(-1)
    q = torch.as_tensor(curvature, dtype=_F64).reshape(-1)
    if q.numel() == 1:
        q = q.expand_as(b).clone()
    return QuadraticReward(torch.zeros_like(b), b, q)


def _diagonal_stds(mixture: GaussianMixture) -> torch.Tensor:
    return mixture.stds[:, None].expand_as(mixture.means) if mixture.isotropic else mixture.stds


class TiltedMixture:
    """The exact tilt ``p(x) exp(r(x)/α) / Z`` of a mixture (module docstring); built by :func:`tilt`.

    Attributes: ``prior`` and ``tilted`` (both :class:`GaussianMixture`; ``tilted`` is the exact denoiser of the
    target at every σ), ``reward``, ``alpha``, ``log_normalizer`` (``log Z``, float) and ``log_factors``
    (``log E_k[exp(r/α)]`` per prior component, float64 ``(K,)``).
    """

    def __init__(self, prior: GaussianMixture, reward: QuadraticReward, alpha: float) -> None:
        if reward.dim != prior.dim:
            raise ShapeError(f"reward has dimension {reward.dim}, the mixture {prior.dim}")
        if not (math.isfinite(alpha) and alpha > 0):
            raise DiffsampleError(f"alpha (the tilt temperature) must be positive and finite, got {alpha}")
        self.prior, self.reward, self.alpha = prior, reward, float(alpha)
        mu, s2 = prior.means, _diagonal_stds(prior).square()
        a, b, c = reward.linear / alpha, reward.center, reward.curvature / alpha
        d = mu - b
        denom = 1 + c * s2
        self.log_factors = (a * mu - 0.5 * c * d.square() + s2 * (a - c * d).square() / (2 * denom)).sum(1) - 0.5 * (
            denom.log().sum(1)
        )
        log_joint = prior.weights.log() + self.log_factors
        self.log_normalizer = float(torch.logsumexp(log_joint, 0))
        means = (mu + s2 * (a + c * b)) / denom
        stds = (s2 / denom).sqrt()
        self.tilted = GaussianMixture(
            means.reshape(-1, *prior.shape),
            stds.reshape(-1, *prior.shape),
            torch.softmax(log_joint, 0),
            name=f"{prior.name}-tilted",
        )

    def log_twist(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The exact ``log h_σ(x) = log E[exp(r(x0)/α) | x_σ = x]``, float64 ``(B,)``, differentiable in x (σ > 0)."""
        return self.log_normalizer + self.tilted.log_prob(x, sigma) - self.prior.log_prob(x, sigma)

    def twist_potential(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``f(x, σ) = log h_σ(x)`` as a log-potential for :func:`~diffsample.transforms.classifier_guidance`
        (weight 1 gives the exact tilted denoiser)."""

        def log_h(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return self.log_twist(x, sigma).to(x.dtype)

        return log_h

    def reward_mean(self) -> float:
        """The exact ``E_{p_α}[r(x)]`` from the tilted parameters (``aᵀμ' − ½ Σ q ((μ' − b)² + s'²)`` per component)."""
        mu, s2 = self.tilted.means, _diagonal_stds(self.tilted).square()
        r = self.reward
        per = mu @ r.linear - 0.5 * (r.curvature * ((mu - r.center).square() + s2)).sum(1)
        return float(self.tilted.weights @ per)

    def prior_reward_mean(self) -> float:
        """The exact ``E_p[r(x)]`` under the untilted prior (the baseline of a reward-mean table)."""
        mu, s2 = self.prior.means, _diagonal_stds(self.prior).square()
        r = self.reward
        per = mu @ r.linear - 0.5 * (r.curvature * ((mu - r.center).square() + s2)).sum(1)
        return float(self.prior.weights @ per)

    def reward_mean_error(self, samples: torch.Tensor) -> float:
        """``|mean_i r(x_i) − E_{p_α}[r]|`` for a batch of samples."""
        value = self.reward(samples.detach().to("cpu", _F64))
        return abs(float(value.mean()) - self.reward_mean())


def tilt(prior: GaussianMixture, reward: QuadraticReward, alpha: float = 1.0) -> TiltedMixture:
    """The exact reward-tilted mixture ``p(x) exp(r(x)/α) / Z`` (module docstring)."""
    return TiltedMixture(prior, reward, alpha)


def _component_labels(mixture: GaussianMixture, labels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    lab = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    if lab.shape != (mixture.num_components,):
        raise ShapeError(f"labels must give one class per component ({mixture.num_components}), got {tuple(lab.shape)}")
    return lab


def noisy_class_log_prob(
    mixture: GaussianMixture,
    labels: Sequence[int] | torch.Tensor,
    x: torch.Tensor,
    sigma: torch.Tensor | float,
    target: int | torch.Tensor,
) -> torch.Tensor:
    """The Bayes-optimal noisy classifier ``log p_σ(y = target | x)``, float64 ``(B,)``, differentiable in x.

    ``labels[k]`` is the class of component ``k``; ``target`` one class or a ``(B,)`` tensor of classes.
    """
    lab = _component_labels(mixture, labels).to(x.device)
    log_r = torch.log_softmax(_log_joint(mixture, x, sigma), dim=1)
    y = torch.as_tensor(target, dtype=torch.int64, device=x.device).reshape(-1)
    if y.numel() == 1:
        y = y.expand(x.shape[0])
    if y.shape != (x.shape[0],):
        raise ShapeError(f"target must be one class or shape ({x.shape[0]},), got {tuple(y.shape)}")
    if not bool(torch.isin(y, lab).all()):
        raise DiffsampleError(
            f"target classes {sorted(set(y.tolist()))} not all among the labels {sorted(set(lab.tolist()))}"
        )
    member = lab[None, :] == y[:, None]
    return torch.logsumexp(torch.where(member, log_r, torch.full_like(log_r, -math.inf)), dim=1)


def _log_joint(mixture: GaussianMixture, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """``log w_k + log N(x; μ_k, s_k² + σ²)`` (B, K), float64, differentiable in x; needs ``s_k² + σ² > 0``."""
    flat = x.reshape(x.shape[0], -1).to(_F64)
    s = torch.as_tensor(sigma, dtype=_F64, device=x.device).reshape(-1)
    s = s.expand(x.shape[0]) if s.numel() == 1 else s
    var = _diagonal_stds(mixture).to(x.device).square()[None] + s.square()[:, None, None]
    if bool((var <= 0).any()):
        raise DiffsampleError("the noisy classifier needs sigma > 0 where a component is a point mass")
    diff2 = (flat[:, None, :] - mixture.means.to(x.device)[None]).square()
    return mixture.weights.log().to(x.device) - 0.5 * (diff2 / var + math.log(2 * math.pi) + var.log()).sum(-1)


def noisy_classifier(
    mixture: GaussianMixture, labels: Sequence[int] | torch.Tensor, target: int | torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``f(x, σ) = log p_σ(target | x)`` (:func:`noisy_class_log_prob`) as a log-potential for classifier guidance."""
    _component_labels(mixture, labels)

    def log_p(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return noisy_class_log_prob(mixture, labels, x, sigma, target).to(x.dtype)

    return log_p


def class_conditional(mixture: GaussianMixture, labels: Sequence[int] | torch.Tensor, target: int) -> GaussianMixture:
    """``p(x | y = target)``: the mixture of the components labelled ``target``, weights renormalised."""
    lab = _component_labels(mixture, labels)
    keep = lab == int(target)
    if not bool(keep.any()):
        raise DiffsampleError(f"no component carries the label {target}; labels are {sorted(set(lab.tolist()))}")
    stds = mixture.stds[keep] if mixture.isotropic else mixture.stds[keep].reshape(-1, *mixture.shape)
    return GaussianMixture(
        mixture.means[keep].reshape(-1, *mixture.shape), stds, mixture.weights[keep], name=f"{mixture.name}|y={target}"
    )
