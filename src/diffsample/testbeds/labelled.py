"""A Gaussian mixture whose components are classes: exact class-conditional denoisers and exact level posteriors.

For ``p(x0) = Σ_k w_k N(μ_k, diag(s_k²))`` with the component as the label, the class-conditional data law
of class ``k`` is the single Gaussian ``N(μ_k, diag(s_k²))``, whose exact denoiser is

    D(x, σ | k) = μ_k + s_k² / (s_k² + σ²) · (x − μ_k),

and the unconditional one (the null label) is the mixture's posterior mean. For a partition of the components
into *levels* (e.g. by rarity), the exact noise-aware level classifier is the sum of the responsibilities,

    p(l | x, σ) = Σ_{k ∈ group_l} r_k(x, σ),

so classifier guidance with it at weight 1 is exactly the denoiser of the mixture restricted to the level's
components (Bayes). These exact answers check minority guidance, gradient-free classifier guidance and CFG
without any trained network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..denoisers import Denoiser
from ..errors import DiffsampleError, ShapeError
from .mixture import GaussianMixture

__all__ = ["LabelledMixture", "level_log_probs", "rarity_groups"]

_F64 = torch.float64


class LabelledMixture(Denoiser):
    """``D(x, σ, class_labels=None)``: component ``k``'s exact denoiser for label ``k``, the mixture's for
    ``None`` or the null label ``K`` (= :attr:`null_label`, the number of components)."""

    def __init__(self, mixture: GaussianMixture) -> None:
        super().__init__()
        self.mixture = mixture

    @property
    def null_label(self) -> int:
        return self.mixture.num_components

    def component_denoise(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The exact denoiser of component ``labels[i]`` for each row (float64, flat ``(B, d)``)."""
        m = self.mixture
        xf = x.reshape(x.shape[0], m.dim).to(_F64)
        mu = m.means.to(x.device)[labels]
        s2 = m.stds.to(x.device).square()[labels]
        if m.isotropic:
            s2 = s2[:, None]
        shrink = s2 / (s2 + sigma.to(_F64)[:, None].square())
        return mu + shrink * (xf - mu)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: object = None, **kwargs: Any) -> torch.Tensor:
        full = self.mixture.denoise(x, sigma)
        if class_labels is None:
            return full
        y = torch.as_tensor(class_labels, device=x.device).long().reshape(-1)
        if y.numel() == 1:
            y = y.expand(x.shape[0])
        if y.numel() != x.shape[0]:
            raise ShapeError(f"class_labels must be one label or {x.shape[0]}, got {y.numel()}")
        if bool(((y < 0) | (y > self.null_label)).any()):
            raise DiffsampleError(f"class labels must lie in 0…{self.null_label} ({self.null_label} = null)")
        cond = y < self.null_label
        if not bool(cond.any()):
            return full
        s = sigma.to(device=x.device, dtype=_F64)
        comp = self.component_denoise(x, s, y.clamp(max=self.null_label - 1)).reshape(x.shape).to(x.dtype)
        mask = cond.reshape(-1, *([1] * (x.dim() - 1)))
        return torch.where(mask, comp, full)


def rarity_groups(mixture: GaussianMixture, num_levels: int) -> list[list[int]]:
    """Components split into ``num_levels`` levels by weight: level 0 the heaviest, the last the rarest.

    Components are sorted by decreasing weight and cut into consecutive groups of (nearly) equal counts.
    """
    k = mixture.num_components
    if not 2 <= num_levels <= k:
        raise DiffsampleError(f"num_levels must be in 2…{k} (the number of components), got {num_levels}")
    order = torch.argsort(mixture.weights, descending=True, stable=True).tolist()
    bounds = [round(i * k / num_levels) for i in range(num_levels + 1)]
    return [order[bounds[i] : bounds[i + 1]] for i in range(num_levels)]


def level_log_probs(
    mixture: GaussianMixture, groups: Sequence[Sequence[int]], x: torch.Tensor, sigma: torch.Tensor | float
) -> torch.Tensor:
    """Exact ``log p(l | x, σ) = log Σ_{k ∈ group_l} r_k(x, σ)``, ``(B, L)`` in x's work dtype; differentiable."""
    r = mixture.responsibilities(x, sigma)
    cols = [r[:, list(g)].sum(1) for g in groups]
    dtype = _F64 if x.dtype == _F64 else torch.float32
    return torch.stack(cols, dim=1).clamp_min(1e-300).log().to(dtype)
