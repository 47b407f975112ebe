"""diffusers' schedulers on our denoisers: a scheduler set to an NFE budget, walked by diffusers' standard loop.

diffusers schedulers drive a *network* at integer or float timesteps ``t`` on a discrete training table.
:func:`diffusers_sample` builds that network from our σ-space denoiser with the inverse conversions of
:mod:`diffsample.parameterization` (:class:`~diffsample.parameterization.VPTableNetwork` on the DDPM table,
:class:`~diffsample.parameterization.EDMNetwork` for the EDM schedulers; the package docstring says how),
starts the scheduler's walk from the σ-space state ``σ_start·z``, runs diffusers' loop, and converts the
result back to σ-space. diffusers is imported inside the functions that use it.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from diffsample.denoisers import Denoiser, as_denoiser
from diffsample.errors import BudgetError, UnknownNameError
from diffsample.parameterization import EDMNetwork, VPTableNetwork

from .spans import EDM_CONFIG, VP1000_CONFIG

__all__ = ["FLOW_SCHEDULERS", "diffusers_flow_sample", "diffusers_sample", "diffusers_sigmas"]


def _diffusers_class(name: str) -> type:
    import diffusers

    for candidate in (name, f"{name}Scheduler"):
        cls = getattr(diffusers, candidate, None)
        if isinstance(cls, type) and hasattr(cls, "set_timesteps"):
            return cls
    names = sorted(n for n in dir(diffusers) if n.endswith("Scheduler"))
    raise UnknownNameError("diffusers scheduler", name, names)


def _is_edm(cls: type) -> bool:
    return hasattr(cls, "precondition_outputs") and hasattr(cls, "precondition_noise")


def _build_scheduler(cls: type, span: str, overrides: Mapping[str, Any]) -> Any:
    params = inspect.signature(cls.__init__).parameters
    base = EDM_CONFIG if span == "edm" else VP1000_CONFIG
    kwargs = {k: v for k, v in base.items() if k in params}
    kwargs.update(overrides)
    return cls(**kwargs)


def _steps_for_nfe(cls: type, span: str, overrides: Mapping[str, Any], nfe: int) -> tuple[Any, int]:
    """A scheduler set to the most inference steps whose walk makes at most ``nfe`` model calls.

    diffusers' loop calls the network once per entry of ``scheduler.timesteps`` (Heun/KDPM2 list
    the second-stage timesteps too, PLMS repeats one), so the count is read from the scheduler:
    ``n = nfe`` first (one call per step), else a bisection on ``n`` (the count grows with ``n``).
    Each trial runs on a copy of one freshly built scheduler, since ``set_timesteps`` may rewrite
    its config and some constructors are slow (KDPM2 builds a 1000-step schedule).
    """
    if int(nfe) != nfe or nfe < 1:
        raise BudgetError(f"NFE budget must be a positive integer, got {nfe!r}")
    base = _build_scheduler(cls, span, overrides)

    def trial(steps: int) -> Any:
        sched = copy.deepcopy(base)
        sched.set_timesteps(steps)
        return sched

    sched = trial(int(nfe))
    if len(sched.timesteps) <= nfe:
        return sched, int(nfe)
    lo, hi = 0, int(nfe)  # len(timesteps(lo)) <= nfe < len(timesteps(hi)), lo = 0 meaning none found
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(trial(mid).timesteps) <= nfe:
            lo = mid
        else:
            hi = mid
    if lo == 0:
        raise BudgetError(f"{cls.__name__} cannot run within {nfe} model evaluations")
    return trial(lo), lo


def _sigma_of_alpha_cumprod(abar: float) -> float:
    return math.sqrt((1.0 - abar) / abar)


def _start_end_sigmas(sched: Any) -> tuple[float, float]:
    """The σ-space levels the scheduler's walk starts at and ends at (its own belief, not ours)."""
    sigmas = getattr(sched, "sigmas", None)
    if isinstance(sigmas, torch.Tensor) and sigmas.numel() > 1:
        return float(sigmas[0]), float(sigmas[-1])
    abar = sched.alphas_cumprod.to(torch.float64)
    t0, t_last = int(sched.timesteps[0]), int(sched.timesteps[-1])
    # DDIM/PNDM step from t to t − T // n, using final_alpha_cumprod below 0
    prev = t_last - sched.config.num_train_timesteps // sched.num_inference_steps
    abar_end = float(abar[prev]) if prev >= 0 else float(sched.final_alpha_cumprod)
    return _sigma_of_alpha_cumprod(float(abar[t0])), _sigma_of_alpha_cumprod(abar_end)


def _prepare(
    scheduler_name: str,
    nfe: int,
    config: Mapping[str, Any] | None,
    span: str | None,
    scheduler_kwargs: Mapping[str, Any],
) -> tuple[Any, bool]:
    """Resolve the class, check the span, and return the scheduler set for ``nfe`` (and whether it is EDM)."""
    cls = _diffusers_class(scheduler_name)
    edm = _is_edm(cls)
    expected = "edm" if edm else "vp1000"
    if span is not None and span != expected:
        raise ValueError(f"{cls.__name__} runs on the {expected!r} span, not {span!r}")
    sched, _ = _steps_for_nfe(cls, expected, {**(config or {}), **scheduler_kwargs}, nfe)
    return sched, edm


def diffusers_sample(
    scheduler_name: str,
    denoiser: Denoiser | Callable[..., torch.Tensor],
    z: torch.Tensor,
    nfe: int,
    *,
    config: Mapping[str, Any] | None = None,
    span: Literal["vp1000", "edm"] | None = None,
    **scheduler_kwargs: Any,
) -> tuple[torch.Tensor, int, float, float]:
    """Run a diffusers scheduler's standard loop on a network made from our σ-space denoiser.

    Args:
        scheduler_name: a diffusers scheduler class name, with or without the ``Scheduler`` suffix
            (``"DPMSolverMultistepScheduler"``, ``"UniPCMultistep"``, ``"EDMEuler"``…).
        denoiser: ``D(x, σ) -> x̂0`` in σ-space.
        z: standard normal noise of shape ``(B, …)``; the walk starts at the σ-space state
            ``σ_start·z`` (see the module docstring for how that maps onto diffusers' sample).
        nfe: model-evaluation budget; the scheduler gets the largest ``num_inference_steps`` whose
            walk makes at most ``nfe`` network calls.
        config: scheduler config overrides, on top of the span's defaults (the DDPM table with
            ε-prediction and no clipping for ``"vp1000"``; σ ∈ [0.002, 80], σ_data = 0.5 for ``"edm"``).
        span: ``"edm"`` for diffusers' EDM schedulers, ``"vp1000"`` for all others; inferred from
            the class when omitted, an error when it does not fit the class.
        **scheduler_kwargs: more config overrides (``use_karras_sigmas=True``,
            ``timestep_spacing="trailing"``, ``algorithm_type``, ``solver_order``…).

    Returns:
        ``(x, nfe_used, sigma_start, sigma_end)``: the final state in σ-space (``x = x0 + σ_end·ε``
        form, float32), the model evaluations made, and the σ-space levels the walk started and
        ended at (``sigma_end`` is 0 when the scheduler ends in x0). NaN in ``x`` is returned as is:
        some diffusers configurations produce it (see ``DIFFUSERS_CONFIGS`` notes).
    """
    sched, edm = _prepare(scheduler_name, nfe, config, span, scheduler_kwargs)
    den = as_denoiser(denoiser)
    start_nfe = den.nfe
    dtype = torch.float32
    prediction = sched.config.prediction_type
    net = (
        EDMNetwork(den, float(sched.config.sigma_data), prediction, dtype=dtype)
        if edm
        else VPTableNetwork(den, sched.alphas_cumprod, prediction, dtype=dtype)
    )
    sigma_start, sigma_end = _start_end_sigmas(sched)
    sigma_space = float(sched.init_noise_sigma) != 1.0
    state = z.to(torch.float64) * sigma_start
    sample = (state if sigma_space else state / math.sqrt(1.0 + sigma_start**2)).to(dtype)
    step_kwargs: dict[str, Any] = {}
    if "generator" in inspect.signature(sched.step).parameters:
        # the stochastic branches are off; a private generator keeps the global RNG untouched anyway
        step_kwargs["generator"] = torch.Generator(device=z.device).manual_seed(0)
    with torch.no_grad():
        for t in sched.timesteps:
            model_input = sched.scale_model_input(sample, t)
            out = net(model_input, t)
            sample = sched.step(out, t, sample, **step_kwargs).prev_sample
    x = sample.to(torch.float64)
    if not sigma_space:
        x = x * math.sqrt(1.0 + sigma_end**2)
    return x.to(dtype), den.nfe - start_nfe, sigma_start, sigma_end


def diffusers_sigmas(
    scheduler_name: str,
    nfe: int,
    *,
    config: Mapping[str, Any] | None = None,
    span: Literal["vp1000", "edm"] | None = None,
    **scheduler_kwargs: Any,
) -> torch.Tensor:
    """The σ-space levels the scheduler's walk visits at this budget, float64, from σ_start to σ_end.

    These are the scheduler's own step levels (Heun/KDPM2 second-stage repeats and a repeated final
    level collapsed; KDPM2's midpoints left out), so our solvers or k-diffusion's can run on the same
    grid. For DDIM/PNDM they are ``σ(t)`` of the timesteps plus the final level.
    """
    sched, _ = _prepare(scheduler_name, nfe, config, span, scheduler_kwargs)
    sigmas = getattr(sched, "sigmas", None)
    if isinstance(sigmas, torch.Tensor) and sigmas.numel() > 1:
        levels = sigmas.to(torch.float64)
    else:
        abar = sched.alphas_cumprod.to(torch.float64)
        ts = torch.as_tensor(sched.timesteps).long()
        levels = torch.cat(
            [((1 - abar[ts]) / abar[ts]).sqrt(), torch.tensor([_start_end_sigmas(sched)[1]], dtype=torch.float64)]
        )
    return torch.unique_consecutive(levels)


FLOW_SCHEDULERS: dict[str, dict[str, Any]] = {
    "dpm++2m-flow": {"solver_order": 2},
    "dpm++3m-flow": {"solver_order": 3},
    "dpm++3m-no-lof-flow": {"solver_order": 3, "lower_order_final": False},
}
"""diffusers' DPMSolverMultistepScheduler set up for a flow-matching model (``use_flow_sigmas``,
``prediction_type="flow_prediction"``, DPM-Solver++ of order 2 or 3), as video and image pipelines on flow models
configure it; its walk starts at ``t = 1 − 1/1000`` (σ = 999, times the shift), the span of
:class:`~diffsample.schedules.RectifiedFlow`. (UniPCMultistepScheduler's flow walk starts at ``t = 1``, σ = ∞:
another span, so it is not here.) With ``lower_order_final=False`` diffusers warns that it turns the option back
on for walks ending at σ = 0, but only the last step stays first order: the second-to-last keeps order 3, a
different walk (and at NFE 4–8 on the flow units the better peer)."""


def diffusers_flow_sample(
    name: str, denoiser: Denoiser | Callable[..., torch.Tensor], z: torch.Tensor, nfe: int, shift: float = 1.0
) -> tuple[torch.Tensor, int, float]:
    """Run the :data:`FLOW_SCHEDULERS` configuration ``name`` with ``nfe`` steps (one call each) on a flow model.

    diffusers walks ``x_t = (1 − t) x0 + t ε`` with a network returning the velocity ``u = ε − x0``; from our
    σ-space denoiser (``σ = t/(1 − t)``, ``x_σ = x_t/(1 − t)``) that is ``u = (x_t − D(x_σ, σ))/t``, so that the
    scheduler's ``x̂0 = x_t − t u`` is exactly ``D``'s. The network is evaluated at the scheduler's own (float)
    ``t``, not at its rounded integer timestep. Returns ``(x0, nfe_used, sigma_start)`` in σ-space.
    """
    from diffusers import DPMSolverMultistepScheduler

    if name not in FLOW_SCHEDULERS:
        raise UnknownNameError("diffusers flow configuration", name, sorted(FLOW_SCHEDULERS))
    sched = DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        use_flow_sigmas=True,
        prediction_type="flow_prediction",
        flow_shift=float(shift),
        algorithm_type="dpmsolver++",
        **FLOW_SCHEDULERS[name],
    )
    sched.set_timesteps(int(nfe))
    den = as_denoiser(denoiser)
    start_nfe = den.nfe
    times = sched.sigmas.to(torch.float64)
    t_start = float(times[0])
    sample = (z.to(torch.float64) * t_start).to(torch.float32)  # (1 − t)·σ_start·z = t·z
    with torch.no_grad():
        for i, timestep in enumerate(sched.timesteps):
            t = float(times[i])
            sigma = t / (1.0 - t)
            x_sigma = sample.to(torch.float64) / (1.0 - t)
            level = torch.full((sample.shape[0],), sigma, dtype=torch.float64)
            x0 = den(x_sigma.to(torch.float32), level.to(torch.float32)).to(torch.float64)
            velocity = ((sample.to(torch.float64) - x0) / t).to(torch.float32)
            sample = sched.step(velocity, timestep, sample).prev_sample
    return sample.to(torch.float32), den.nfe - start_nfe, t_start / (1.0 - t_start)
