"""CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance for Diffusion Models")
as a step-aware denoiser transform that works with every solver, SDE ones included.

The paper's DDIM update (its Algorithm 1, in σ-space): denoise with the guided estimate
``D_λ = D_u + λ (D_c − D_u)``, ``λ ∈ [0, 1]``, but re-noise with the *unconditional* noise estimate
``ε̂_u = (x − D_u)/σ``:

    x' = D_λ + σ' ε̂_u = D_λ + r (x − D_u),    r = σ'/σ.

Any first-order step in σ-space is ``x' = D + r (x − D)`` (+ noise) with its own x-coefficient ``r``
(DDIM/Euler ``σ'/σ``; Euler ancestral/DDPM ``σ_down/σ``; SDE-DPM-Solver++ ``e^{−(1+η)h}``). Solving
``D' + r (x − D') = D_λ + r (x − D_u)`` for the denoiser gives

    D' = D_u + λ/(1 − r) · (D_c − D_u),

i.e. CFG with a per-step weight ``λ/(1 − r)``. This transform returns ``D'``, with ``r`` the x-coefficient
of the step the evaluation is used for, found by :meth:`~.walk_context.Walk.step_coefficient` from the walk
:func:`diffsample.sample` runs (:mod:`.walk_context`). Every first-order solver then takes exactly the
paper's CFG++ step: ``euler``/``ddim`` are its Algorithm 1 (ComfyUI's ``sample_euler_cfg_pp``), and
``euler_ancestral`` is ``sample_euler_ancestral_cfg_pp`` (``x' = D_λ + σ_down ε̂_u + σ_up z``), for any η,
and the noise of SDE steps enters unchanged. Into σ' = 0 (``r = 0``) the step returns ``D_λ``.

Multistep and higher-order solvers
----------------------------------
For them CFG++ *is defined here as* the solver run on the per-step denoiser ``D'_i`` above (with the ``r`` of
the step's first-order part): the DDIM part of every step is the CFG++ step, and the solver's higher-order
corrections extrapolate the history of ``D'``. ComfyUI's ``sample_dpmpp_2m_cfg_pp`` has the same first-order
part but extrapolates the history of ``D_λ`` instead: its step is
``x' = D_λ,i + r_i (x − D_u,i) + (1 − r_i)/(2ρ) (D_λ,i − D_λ,i−1)`` where DPM-Solver++(2M) on ``D'`` gives
``… + (1 − r_i)/(2ρ) (D'_i − D'_{i−1})`` with ``D' − D_λ = λ r/(1 − r) (D_c − D_u)``. The two agree on the
first step and to first order in the step size; a transform cannot reproduce the second without knowing
each solver's coefficients, so the rule above is the one that holds for every solver. For solvers with
several evaluations per step (Heun, DPM-Solver++(2S), UniPC's corrector), each evaluation at level σ takes
the ``r`` of the step from σ to the next level of the walk below σ (an evaluation at the last level: ``r = 0``).

Step count
----------
CFG++ has no continuous-time limit: written as ``x' = [D_u + r (x − D_u)] + λ (D_c − D_u)``, every step adds
the guidance term unscaled by its length, so the effective CFG weight ``λ/(1 − r) ≈ λ σ/(σ − σ')`` grows with
the number of steps and so does the strength of the guidance. ``λ`` is therefore tuned for a step count (the
paper's DDIM runs use 50 steps or fewer). On the exact Gaussian bed (benchmark ``guidance_exact``, λ = 0.6,
``euler``) the distance of the output law to ``p_c`` is W2 = 0.50, 0.19, 0.48, 1.18, 1.34 at 5, 10, 20, 50,
100 steps.

Cost: 2 model evaluations per call (both branches, always; ``nfe_per_call = 2``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from .. import contracts
from ..denoisers import append_dims
from ..errors import DiffsampleError
from .guidance import ClassifierFreeGuidance
from .walk_context import current_walk

__all__ = ["CFGPlusPlus", "cfgpp", "cfgpp_weight"]


def cfgpp_weight(lam: float, r: float) -> float:
    """The CFG weight ``λ/(1 − r)`` that turns a step with x-coefficient ``r < 1`` into the CFG++ step."""
    if not r < 1:
        raise DiffsampleError(f"CFG++ needs a step that moves (x-coefficient r < 1), got r = {r}")
    return lam / (1.0 - r)


class CFGPlusPlus(ClassifierFreeGuidance):
    """CFG++ with guidance ``λ`` (module docstring); built by :func:`cfgpp`. Needs a walk (:mod:`.walk_context`)."""

    always_both = True

    def __init__(
        self,
        cond: contracts.Denoiser | Callable[..., torch.Tensor],
        lam: float,
        *,
        uncond: contracts.Denoiser | Callable[..., torch.Tensor] | None = None,
        cond_kwargs: Mapping[str, Any] | None = None,
        uncond_kwargs: Mapping[str, Any] | None = None,
        batched: bool = False,
    ) -> None:
        lam = float(lam)
        if not 0.0 <= lam <= 1.0:
            raise DiffsampleError(f"CFG++ guidance lambda must be in [0, 1] (Chung et al. 2024), got {lam}")
        super().__init__(
            cond, lam, uncond=uncond, cond_kwargs=cond_kwargs, uncond_kwargs=uncond_kwargs, batched=batched
        )
        self.lam = lam

    def step_weights(self, sigma: torch.Tensor) -> torch.Tensor:
        """``λ/(1 − r)`` per row, ``r`` the x-coefficient of the step each row's evaluation is used for."""
        walk = current_walk()
        if walk is None:
            raise DiffsampleError(
                "CFG++ weighs guidance by the solver step it is evaluated for, so it runs inside a walk: use it "
                "through diffsample.sample(...), or run the solver inside "
                "diffsample.transforms.walk_context(sigmas, solver, **options)"
            )
        levels, rows = torch.unique(sigma.detach().to("cpu", torch.float64), return_inverse=True)
        weights = [cfgpp_weight(self.lam, walk.step_coefficient(float(s))) for s in levels.tolist()]
        return torch.tensor(weights, dtype=torch.float64)[rows]

    def combine(self, x: torch.Tensor, sigma: torch.Tensor, d_c: torch.Tensor, d_u: torch.Tensor) -> torch.Tensor:
        w = append_dims(self.step_weights(sigma).to(device=d_c.device, dtype=d_c.dtype), d_c.dim())
        return d_u + w * (d_c - d_u)


def cfgpp(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    lam: float,
    *,
    uncond: contracts.Denoiser | Callable[..., torch.Tensor] | None = None,
    cond_kwargs: Mapping[str, Any] | None = None,
    uncond_kwargs: Mapping[str, Any] | None = None,
    batched: bool = False,
) -> CFGPlusPlus:
    """CFG++ (Chung et al. 2024) of ``denoiser`` with guidance ``λ = lam ∈ [0, 1]``, for every solver.

    The branches are given as for :func:`~diffsample.transforms.cfg`. ``λ`` is the paper's (ComfyUI's CFG++
    samplers take it as their ``cfg``): 0 is unconditional sampling, 1 steps with ``D_c`` re-noised by ``ε̂_u``.
    Use it through :func:`diffsample.sample`, which tells it the step it is evaluated for.
    """
    return CFGPlusPlus(
        denoiser, lam, uncond=uncond, cond_kwargs=cond_kwargs, uncond_kwargs=uncond_kwargs, batched=batched
    )
