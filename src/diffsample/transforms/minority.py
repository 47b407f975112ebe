"""Minority guidance: steer sampling towards the low-density ("minority") part of the data, as denoiser transforms.

Minority score (Um, Lee, Kim & Ye 2024, "Don't Play Favorites: Minority Guidance for Diffusion Models", ICLR,
eq. 6): a denoiser reconstructs typical data well and unique data badly, so the Tweedie reconstruction loss of a
clean sample ``x0`` noised to one fixed level σ̄ measures how unusual it is,

    l(x0) = E_ε d(x0, D(x0 + σ̄ ε, σ̄)),

with ``d`` a distance (LPIPS in the paper for natural images; the Euclidean norm or its square here, or any
callable). The scores of the training data are cut into ``L`` ordered levels (:func:`minority_levels`, level
``L − 1`` the most unusual), a small noise-aware classifier ``p_ψ(l | x_σ, σ)`` is trained on noised data, and
sampling is guided towards a chosen level ``l̃`` by classifier guidance (their eq. 8),

    D̃(x, σ) = D(x, σ) + w σ² ∇_x log p_ψ(l̃ | x, σ)                         (:func:`minority_guidance`),

built on :func:`~diffsample.transforms.gradient.classifier_guidance` (so it is exact for the exact classifier
at ``w = 1``: it samples the data restricted to level ``l̃``).

Self-guided minority generation (Um & Ye 2024, "Self-Guided Generation of Minority Samples Using Diffusion
Models", ECCV; eq. 9–11 and the authors' ``compute_mg_grad``): no classifier — the minority score is taken at
the current noisy sample through its own posterior mean ``x̂0 = D(x, σ)``: re-noise ``x̂0`` to a fixed
perturbation level σ_p, denoise it again, and measure how far the reconstruction moved,

    L(x, σ) = (1/M) Σ_j ‖ D(x, σ) − sg[ D(D(x, σ) + σ_p ε_j, σ_p) ] ‖,          (sg: stop-gradient)

then ascend it: ``D̃ = D + w σ² ∇_x L`` (their guidance is added to the DDPM mean scaled by the step variance,
which is this score shift in σ-space). The gradient flows through the first ``D`` only, so a call costs
``1 + M`` denoiser evaluations and one backward pass through the denoiser. Options from the paper: the
gradient normalised per sample by its largest entry (``normalize``), guidance only in a σ interval (the paper
guides the early, high-noise part of the walk).

Noise: the ``ε`` of the minority score and of the self-guided perturbation are seeded per sample; in the
transform they are keyed by σ (:class:`~.keyed_noise.KeyedNormals`), so the guided denoiser is a
deterministic function of ``(x, σ)`` and sample ``i`` does not depend on the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import contracts
from ..denoisers import append_dims, as_denoiser, broadcast_sigma
from ..errors import DiffsampleError, ShapeError
from ..noise import seeded
from .base import Transform, to_work
from .gradient import ClassifierGuidance, classifier_guidance
from .keyed_noise import KeyedNormals

__all__ = [
    "LevelClassifier",
    "SelfGuidedMinority",
    "assign_levels",
    "minority_guidance",
    "minority_levels",
    "minority_score",
    "self_guided_minority",
]

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``d(a, b) -> (B,)``: a per-sample distance between two batches (e.g. LPIPS)."""

LevelClassifier = Callable[..., torch.Tensor]
"""``classifier(x, sigma) -> (B, L)`` logits (or log-probabilities) of the minority levels of a noisy sample."""

_DISTANCES = ("l2", "squared_l2")


def _distance(name: str | Distance) -> Distance:
    if callable(name):
        return name
    if name == "l2":
        return lambda a, b: (a - b).flatten(1).norm(dim=1)
    if name == "squared_l2":
        return lambda a, b: (a - b).flatten(1).square().sum(dim=1)
    raise DiffsampleError(f"unknown distance {name!r}; valid: {', '.join(_DISTANCES)} or a callable d(a, b) -> (B,)")


@torch.no_grad()
def minority_score(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    x0: torch.Tensor,
    sigma: float,
    *,
    seeds: int | Sequence[int] | torch.Tensor = 0,
    draws: int = 1,
    distance: str | Distance = "l2",
    batch_size: int = 4096,
    **kwargs: Any,
) -> torch.Tensor:
    """Um et al. (2024)'s minority score ``l(x0) = E_ε d(x0, D(x0 + σ̄ε, σ̄))`` of clean samples, float64 ``(N,)``.

    Args:
        denoiser: the pretrained denoiser (its calls are counted as usual: ``draws`` NFE per sample).
        x0: clean samples ``(N, …)``.
        sigma: the fixed σ-space level σ̄ at which the reconstruction is measured.
        seeds: seeds of the per-sample noise (:func:`diffsample.noise.seeded`): sample ``i``'s score does not
            depend on the batch.
        draws: Monte-Carlo draws of ε averaged per sample.
        distance: ``"l2"`` (Euclidean norm), ``"squared_l2"`` or a callable ``d(a, b) -> (B,)`` (e.g. LPIPS).
        batch_size: rows per denoiser call.
        **kwargs: passed to the denoiser (conditioning).
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise DiffsampleError(f"the minority score needs a noise level sigma > 0, got {sigma}")
    if draws < 1:
        raise DiffsampleError(f"draws must be >= 1, got {draws}")
    d = as_denoiser(denoiser)
    dist = _distance(distance)
    noise = seeded(seeds)
    x0w = to_work(x0)
    total = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
    for _ in range(draws):
        eps = noise.standard_normal(x0.shape, dtype=x0w.dtype, device=x0.device)
        for lo in range(0, x0.shape[0], batch_size):
            rows = slice(lo, lo + batch_size)
            xs = x0w[rows] + sigma * eps[rows]
            rec = to_work(d(xs, broadcast_sigma(float(sigma), xs), **kwargs))
            total[rows] += dist(x0w[rows], rec).to(torch.float64)
    return total / draws


def minority_levels(scores: torch.Tensor, num_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut minority scores into ``num_levels`` levels of equal counts: ``(levels (N,) int64, thresholds (L−1,))``.

    The thresholds are the ``l/L`` quantiles of ``scores``; level ``L − 1`` holds the highest scores (the
    minority). Use :func:`assign_levels` with the returned thresholds for new scores.
    """
    if num_levels < 2:
        raise DiffsampleError(f"num_levels must be >= 2, got {num_levels}")
    s = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    if s.numel() < num_levels:
        raise ShapeError(f"{s.numel()} scores cannot be cut into {num_levels} levels")
    q = torch.arange(1, num_levels, dtype=torch.float64) / num_levels
    thresholds = torch.quantile(s, q)
    return assign_levels(s, thresholds), thresholds


def assign_levels(scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Level of each score for increasing ``thresholds`` ``(L−1,)``: the number of thresholds it exceeds."""
    s = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    t = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
    if bool((t[1:] < t[:-1]).any()):
        raise DiffsampleError("thresholds must be non-decreasing")
    return torch.bucketize(s, t, right=True)


def minority_guidance(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    classifier: LevelClassifier,
    target_level: int,
    scale: float = 1.0,
    *,
    classifier_kwargs: dict[str, Any] | None = None,
) -> ClassifierGuidance:
    """Um et al. (2024)'s minority guidance ``D + w σ² ∇_x log p_ψ(l̃ | x, σ)`` towards level ``target_level``.

    ``classifier(x, sigma, **classifier_kwargs)`` returns ``(B, L)`` logits of the minority levels of the noisy
    sample (e.g. :func:`diffsample.models.load_minority_classifier` for the digits model); the log-softmax of
    the target column is the guiding log-potential. Each call costs the denoiser's NFE plus one classifier call
    and one backward pass through the classifier (counted in ``auxiliary_calls`` / ``backward_passes``).
    """
    if not callable(classifier):
        raise DiffsampleError(f"classifier must be callable as classifier(x, sigma) -> (B, L), got {classifier!r}")
    target = int(target_level)
    if target < 0:
        raise DiffsampleError(f"target_level must be a level index >= 0, got {target_level}")

    def log_p_target(x: torch.Tensor, sigma: torch.Tensor, **kw: Any) -> torch.Tensor:
        logits = classifier(x, sigma, **kw)
        if logits.dim() != 2 or logits.shape[0] != x.shape[0] or not 0 <= target < logits.shape[1]:
            raise ShapeError(
                f"the minority classifier must return (B, L) logits with L > target_level = {target}, "
                f"got shape {tuple(logits.shape)}"
            )
        return torch.log_softmax(logits, dim=1)[:, target]

    return classifier_guidance(denoiser, log_p_target, scale, potential_kwargs=classifier_kwargs)


class SelfGuidedMinority(Transform):
    """Um & Ye (2024)'s self-guided minority generation ``D + w σ² ∇_x L(x, σ)`` (module docstring).

    Built by :func:`self_guided_minority`.
    """

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        scale: float,
        perturb_sigma: float,
        *,
        seeds: int | Sequence[int] | torch.Tensor = 0,
        draws: int = 1,
        distance: str | Distance = "l2",
        normalize: bool = False,
        interval: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(denoiser)
        self.scale = float(scale)
        if not math.isfinite(self.scale):
            raise DiffsampleError(f"guidance scale must be finite, got {scale}")
        self.perturb_sigma = float(perturb_sigma)
        if not (math.isfinite(self.perturb_sigma) and self.perturb_sigma > 0):
            raise DiffsampleError(f"perturb_sigma must be a finite level > 0, got {perturb_sigma}")
        if int(draws) < 1:
            raise DiffsampleError(f"draws must be >= 1, got {draws}")
        self.draws = int(draws)
        self.distance = _distance(distance)
        self.normalize = bool(normalize)
        self.noise = KeyedNormals(seeds, "self_guided_minority(seeds=…)")
        self.interval: tuple[float, float] | None = None
        if interval is not None:
            lo, hi = (float(v) for v in interval)
            if math.isnan(lo) or math.isnan(hi) or not 0.0 <= lo < hi:
                raise DiffsampleError(f"interval (sigma_lo, sigma_hi) needs 0 <= sigma_lo < sigma_hi, got {interval}")
            self.interval = (lo, hi)
        self.nfe_per_call = (1 + self.draws) * self.inner.nfe_per_call
        self.network_calls_per_call = (1 + self.draws) * self.inner.network_calls_per_call

    def guided_at(self, sigma: torch.Tensor) -> torch.Tensor:
        """Boolean ``(B,)``: where guidance applies (``σ > 0`` and inside the interval when one is given)."""
        active = sigma > 0
        if self.interval is not None:
            lo, hi = self.interval
            active &= (sigma > lo) & (sigma <= hi)
        return active

    def minority_loss(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x̂0, L)``: the posterior mean (in the autograd graph of ``x``) and the loss ``L(x, σ)`` ``(B,)``."""
        d = to_work(self.inner(x, sigma, **kwargs))
        sp = torch.full_like(sigma, self.perturb_sigma)
        loss = torch.zeros(x.shape[0], dtype=d.dtype, device=x.device)
        for j in range(self.draws):
            eps = self.noise(sigma, x.shape, d.dtype, x.device, draw=j)
            with torch.no_grad():
                rec = to_work(self.inner(d.detach() + self.perturb_sigma * eps, sp, **kwargs))
            loss = loss + self.distance(d, rec)
        return d, loss / self.draws

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        active = self.guided_at(sigma)
        if self.scale == 0 or not bool(active.any()):
            return to_work(self.inner(x, sigma, **kwargs))
        with torch.enable_grad():
            xg = to_work(x).detach().requires_grad_(True)
            d, loss = self.minority_loss(xg, sigma, **kwargs)
            (grad,) = torch.autograd.grad(loss.sum(), xg)
        self.count_backward()
        if not bool(torch.isfinite(grad).all()):
            raise DiffsampleError("the self-guided minority gradient is not finite")
        if self.normalize:
            peak = grad.flatten(1).abs().amax(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
            grad = grad / append_dims(peak, x.dim())
        s2 = append_dims(sigma.to(grad.dtype).square() * active.to(grad.dtype), x.dim())
        return d.detach() + self.scale * s2 * grad


def self_guided_minority(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    scale: float,
    perturb_sigma: float,
    *,
    seeds: int | Sequence[int] | torch.Tensor = 0,
    draws: int = 1,
    distance: str | Distance = "l2",
    normalize: bool = False,
    interval: tuple[float, float] | None = None,
) -> SelfGuidedMinority:
    """Um & Ye (2024)'s training-free minority guidance of ``denoiser`` (see the module docstring).

    Args:
        denoiser: a differentiable denoiser (the gradient is taken through one call of it).
        scale: guidance weight ``w`` (0: the plain denoiser).
        perturb_sigma: σ_p, the level ``x̂0`` is re-noised to (the paper's ``p_ratio · T`` as a σ-space level).
        seeds: seeds of the per-sample perturbation noise (keyed by σ: a pure function of ``(x, σ)``).
        draws: Monte-Carlo draws ``M`` of the perturbation per call (each one more NFE).
        distance: ``"l2"`` (the paper's default norm), ``"squared_l2"`` or a callable ``d(a, b) -> (B,)``.
        normalize: divide the gradient per sample by its largest absolute entry (the paper's option).
        interval: ``(σ_lo, σ_hi)``: guide only for ``σ ∈ (σ_lo, σ_hi]`` (elsewhere one plain call).

    Cost of a guided call: ``1 + draws`` denoiser evaluations and one backward pass through the denoiser.
    """
    return SelfGuidedMinority(
        denoiser,
        scale,
        perturb_sigma,
        seeds=seeds,
        draws=draws,
        distance=distance,
        normalize=normalize,
        interval=interval,
    )
