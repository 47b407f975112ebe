"""Autoguidance: guide a denoiser away from a weaker version of itself, as a denoiser transform.

Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself" (NeurIPS 2024), eq. 1:
with the main model ``D₁`` and a *guiding* model ``D₀`` that is a deliberately worse version of it
(smaller and/or trained for less, on the same data and under the **same** conditioning ``c``),

    D_w(x; σ, c) = w D₁(x; σ, c) + (1 − w) D₀(x; σ, c) = D₀ + w (D₁ − D₀).

This is classifier-free guidance's extrapolation with the unconditional branch replaced by the weak
model (both branches see the same class, prompt, …), so :class:`Autoguidance` is a
:class:`~.guidance.ClassifierFreeGuidance` whose ``uncond`` is the weak denoiser: ``w = 1`` gives ``D₁``
exactly (only the good model runs), and a weak model identical to the good one gives ``D₁`` for every
``w``. The paper's reasoning: both models make errors of the same kind, the weak one larger, so
``D₁ − D₀`` points along the direction that fixes them; unlike CFG the guided density is not sharpened
towards class prototypes, so variety is kept (their ImageNet FIDs improve with autoguidance where CFG's
worsen at large ``w``). It also works on unconditional models. The paper's guiding models are smaller
(one size down, e.g. EDM2-XS guiding EDM2-S) *and* trained far shorter (1/16 of the main model's
training in their default setting): the shorter training contributes most of the gain.

Cost: a guided call runs both networks, 2 model evaluations per sample (the weak one counted like the
good one, although it is cheaper); inside a guidance ``interval`` only, and at ``w = 1``, 1 evaluation.
The shipped digits models have a weak partner: ``load_digits_model(conditional=True, variant="weak")``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from .. import contracts
from ..denoisers import as_denoiser
from ..errors import DiffsampleError
from .guidance import ClassifierFreeGuidance

__all__ = ["Autoguidance", "autoguidance"]


class Autoguidance(ClassifierFreeGuidance):
    """``D₀ + w (D₁ − D₀)`` for a good denoiser ``D₁`` and a weak one ``D₀``; see the module doc.

    Built by :func:`autoguidance`. ``good`` and ``weak`` are the two denoisers (``cond`` and ``uncond``
    of the CFG it is); the counters are its own: 2 evaluations and 2 network calls per guided call.
    """

    def __init__(
        self,
        good: contracts.Denoiser | Callable[..., torch.Tensor],
        weak: contracts.Denoiser | Callable[..., torch.Tensor],
        scale: float,
        *,
        cond_kwargs: Mapping[str, Any] | None = None,
        weak_kwargs: Mapping[str, Any] | None = None,
        interval: tuple[float, float] | None = None,
    ) -> None:
        if weak is None:
            raise DiffsampleError("autoguidance needs a weak denoiser (the guiding model D0), got None")
        good_d, weak_d = as_denoiser(good), as_denoiser(weak)
        if good_d is weak_d:
            raise DiffsampleError(
                "autoguidance needs two different denoisers: the good model and a weaker version of it "
                "(e.g. load_digits_model(conditional=True, variant='weak')); got the same object twice"
            )
        shared = dict(cond_kwargs or {})
        super().__init__(
            good_d,
            scale,
            uncond=weak_d,
            cond_kwargs=shared,
            uncond_kwargs={**shared, **(weak_kwargs or {})},
            interval=interval,
        )
        self.good = self.cond
        self.weak = self.uncond


def autoguidance(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    weak: contracts.Denoiser | Callable[..., torch.Tensor],
    scale: float,
    *,
    cond_kwargs: Mapping[str, Any] | None = None,
    weak_kwargs: Mapping[str, Any] | None = None,
    interval: tuple[float, float] | None = None,
) -> Autoguidance:
    """Autoguidance (Karras et al. 2024, eq. 1) of ``denoiser`` by a weaker version ``weak`` of it, as a denoiser.

    Args:
        denoiser: the main (good) model ``D₁``.
        weak: the guiding model ``D₀``: same data and conditioning, less capacity and/or training.
        scale: guidance weight ``w``: 1 is ``D₁`` alone; the paper's good values are about 2–3.
        cond_kwargs: conditioning passed to **both** models, e.g. ``{"class_labels": y}`` (autoguidance
            guides under the same condition; keywords given at call time also go to both).
        weak_kwargs: extra keywords for the weak model only (overriding ``cond_kwargs`` there).
        interval: ``(σ_lo, σ_hi)``: guide only for ``σ ∈ (σ_lo, σ_hi]`` as in :func:`~.guidance.cfg`.

    Example (digits of the class 3 with the shipped weak partner)::

        good = load_digits_model(conditional=True)
        weak = load_digits_model(conditional=True, variant="weak")
        guided = diffsample.autoguidance(good, weak, 2.0, cond_kwargs={"class_labels": 3})
    """
    return Autoguidance(denoiser, weak, scale, cond_kwargs=cond_kwargs, weak_kwargs=weak_kwargs, interval=interval)
