"""Imperfect denoisers whose true data distribution is still known exactly.

A trained network is never the exact denoiser. To see how samplers cope with model error, these beds
pair a *wrong* denoiser with the *true* distribution it should have sampled, so the distribution
metrics of :mod:`~diffsample.testbeds.distribution` measure the sampler and the error together against
an exact answer.

On every bed here, ``denoise`` is the imperfect model, while ``truth`` (a
:class:`~diffsample.testbeds.mixture.GaussianMixture`) and the delegating ``sample``, ``log_prob``,
``component``, ``weights``, ``shape`` and ``dim`` describe the true data distribution. So
``bed.sample(n)`` gives exact draws of the data, not of what the model would produce.

* :class:`MisfitMixture`: the exact denoiser of a *perturbed* mixture (component means moved, standard
  deviations scaled, optionally other weights): a model that learnt a slightly wrong distribution.
  Samplers that solve its PF-ODE exactly converge to the perturbed mixture, not to the truth.
* :class:`ExposureBiasDenoiser`: the exact denoiser with its noise prediction inflated at small σ,
  ``ε̂' = (1 + γ(σ)) ε̂``, ``ε̂ = (x − D)/σ``, i.e. ``D' = x − σ ε̂' = D − γ(σ)(x − D)``. This is the symptom
  Ning et al. (2023, "Elucidating the Exposure Bias in Diffusion Models") measured on trained models:
  during sampling ``‖ε_θ‖`` exceeds the norm of the true noise, by more as t → 0; their Epsilon Scaling
  divides ε_θ by a factor ``λ_t > 1`` that is linear in t (Li et al. 2024, "Alleviating Exposure Bias
  in Diffusion Models through Sampling with Shifted Time Steps", attribute the same mismatch to the
  network seeing inputs of a different noise level). Here ``γ(σ) = γ_0 · σ_c / (σ_c + σ)``: ``γ_0`` at
  σ = 0, half of it at ``σ = σ_c``, vanishing as σ → ∞. It models the size of the error, not its cause.
"""

from __future__ import annotations

from typing import Any

import torch

from ..denoisers import Denoiser
from ..errors import DiffsampleError, ShapeError
from .mixture import GaussianMixture, TensorLike

__all__ = ["ExposureBiasDenoiser", "ImperfectBed", "MisfitMixture"]

_F64 = torch.float64


class ImperfectBed(Denoiser):
    """Base class: an imperfect ``denoise`` next to the exact distribution ``truth`` (module docstring)."""

    def __init__(self, truth: GaussianMixture, name: str) -> None:
        super().__init__()
        if not isinstance(truth, GaussianMixture):
            raise DiffsampleError(f"the true distribution must be a GaussianMixture, got {type(truth).__name__}")
        self.truth = truth
        self.name = name

    # the true distribution
    @property
    def shape(self) -> tuple[int, ...]:
        return self.truth.shape

    @property
    def dim(self) -> int:
        return self.truth.dim

    @property
    def weights(self) -> torch.Tensor:
        return self.truth.weights

    @property
    def num_components(self) -> int:
        return self.truth.num_components

    @property
    def has_point_masses(self) -> bool:
        return self.truth.has_point_masses

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = _F64) -> torch.Tensor:
        """``n`` exact draws of the *true* data distribution."""
        return self.truth.sample(n, generator=generator, dtype=dtype)

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``log p_σ(x)`` of the *true* noised distribution."""
        return self.truth.log_prob(x, sigma)

    def component(self, x: torch.Tensor, sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
        """The most probable *true* component of each sample."""
        return self.truth.component(x, sigma)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, truth={self.truth!r})"


class MisfitMixture(ImperfectBed):
    """The exact denoiser of a perturbed copy of ``bed``, whose true distribution stays ``bed``.

    Args:
        bed: the true mixture.
        mean_shift: a float ``δ`` moves every component mean by ``δ`` away from the mixture's mean
            ``m = Σ w_k μ_k`` (``μ_k' = μ_k + δ (μ_k − m)/|μ_k − m|``; negative: towards it; a mean at ``m``
            stays), or a tensor of per-component offsets shaped like the means.
        std_scale: a factor on every component's standard deviation.
        weights: the model's component weights (default: the true ones).
        name: a label (default ``"<bed>-misfit"``).

    ``model`` is the perturbed :class:`GaussianMixture`; ``denoise`` is its exact posterior mean.
    """

    def __init__(
        self,
        bed: GaussianMixture,
        mean_shift: float | torch.Tensor = 0.0,
        std_scale: float = 1.0,
        weights: TensorLike | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(bed, name or f"{getattr(bed, 'name', 'mixture')}-misfit")
        means = bed.means.clone()
        if isinstance(mean_shift, torch.Tensor):
            if mean_shift.numel() != means.numel() or mean_shift.shape[0] != means.shape[0]:
                raise ShapeError(
                    f"mean_shift offsets must have {means.shape[0]} rows of {means.shape[1]} entries, "
                    f"got shape {tuple(mean_shift.shape)}"
                )
            means = means + mean_shift.to(_F64).reshape(means.shape)
        else:
            centre = bed.weights @ bed.means
            away = means - centre
            norms = away.norm(dim=1, keepdim=True)
            direction = torch.where(norms > 0, away / norms.clamp_min(1e-300), torch.zeros_like(away))
            means = means + float(mean_shift) * direction
        std_scale = float(std_scale)
        if not std_scale > 0:
            raise DiffsampleError(f"std_scale must be > 0, got {std_scale}")
        stds = bed.stds * std_scale
        self.mean_shift, self.std_scale = mean_shift, std_scale
        self.model = GaussianMixture(
            means.reshape(means.shape[0], *bed.shape),
            stds if bed.isotropic else stds.reshape(stds.shape[0], *bed.shape),
            bed.weights if weights is None else weights,
            name=self.name,
        )

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.model.denoise(x, sigma)


class ExposureBiasDenoiser(ImperfectBed):
    """The exact denoiser of ``bed`` with the noise prediction scaled by ``1 + γ(σ)``, ``γ(σ) = γ_0 σ_c/(σ_c + σ)``.

    Args:
        bed: the true mixture (its exact denoiser is the unbiased model).
        gamma: ``γ_0``, the relative excess of ``‖ε̂‖`` at σ → 0 (e.g. 0.05 for 5 %).
        sigma_c: the level where the excess has fallen to ``γ_0/2``.
        name: a label (default ``"<bed>-exposure"``).

    ``D'(x, σ) = D(x, σ) − γ(σ)(x − D(x, σ))``, i.e. ``(x − D')/σ = (1 + γ(σ))(x − D)/σ``.
    """

    def __init__(self, bed: GaussianMixture, gamma: float = 0.1, sigma_c: float = 0.5, name: str | None = None) -> None:
        super().__init__(bed, name or f"{getattr(bed, 'name', 'mixture')}-exposure")
        gamma, sigma_c = float(gamma), float(sigma_c)
        if not gamma > -1 or not sigma_c > 0:
            raise DiffsampleError(f"need gamma > -1 and sigma_c > 0, got gamma={gamma}, sigma_c={sigma_c}")
        self.gamma0, self.sigma_c = gamma, sigma_c

    def gamma(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """``γ(σ) = γ_0 σ_c/(σ_c + σ)`` in float64."""
        s = torch.as_tensor(sigma, dtype=_F64)
        return self.gamma0 * self.sigma_c / (self.sigma_c + s)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        d = self.truth.denoise(x, sigma).to(_F64)
        g = self.gamma(sigma.detach().to("cpu", _F64)).to(x.device).reshape((-1,) + (1,) * (x.dim() - 1))
        return (d - g * (x.to(_F64) - d)).to(x.dtype)
