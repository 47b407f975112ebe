"""``DiffsampleScheduler``: any diffsample solver as a diffusers scheduler, inside unmodified pipelines.

This module imports diffusers at the top (the class subclasses its ``SchedulerMixin`` and
``ConfigMixin``); it is imported only on demand, through ``diffsample.integrations.DiffsampleScheduler``.

The sample convention
---------------------
Two kinds of configs load, with one rule: the pipeline's latent at a level with σ-space level σ is
``x_t = α·x``, where ``x = x0 + σ·ε`` is the σ-space state and α the network's own input scale.

* **DDPM tables** (:class:`~diffsample.schedules.DiscreteVP`, built from the usual
  ``beta_*``/``trained_betas``/``rescale_betas_zero_snr`` config keys): VP samples, as DDIM's and
  DPM-Solver's, ``α = sqrt(ᾱ_t)``; the network gets the table timestep ``t`` (fractional between
  entries). ``betas``, ``alphas`` and ``alphas_cumprod`` are exposed as diffusers' schedulers expose them.
  With ``rescale_betas_zero_snr`` (``ᾱ_{N−1} = 0``, σ = ∞) the walk starts at diffusers' Euler level
  σ = sqrt(2^24 − 1) ≈ 4096 (``ᾱ = 2^-24``), labelled ``t = N − 1`` for the network as diffusers does, so
  ``timesteps=[999, …]`` works.
* **Flow matching** (``FlowMatch*`` configs, or ``prediction_type="flow_prediction"``):
  ``x_t = (1 − t)·x0 + t·ε`` (Liu et al. 2023; Esser et al. 2024), ``σ = t/(1 − t)``, ``α = 1 − t``; the
  network gets ``t·num_train_timesteps``. The pure-noise level ``t = 1`` (σ = ∞) is walked from
  :data:`FLOW_PURE_NOISE_SIGMA` (``α = 1/(1 + 2^24)``), labelled exactly ``t = 1``, and the step out of it
  is an Euler (DDIM) step for every solver, whose own walk starts at the first finite level: Euler's
  limit from σ = ∞ is exact, while methods that combine slopes across a step (Heun's trapezoid, linear
  multistep in σ) would multiply their evaluations' difference by σ/σ'. Euler agrees with diffusers'
  ``FlowMatchEulerDiscreteScheduler`` to float32 rounding (the difference is ``|v|/(1 + 2^24)``).

In both, ``init_noise_sigma = 1`` and ``scale_model_input`` is the identity. So the network sees
exactly what :func:`~diffsample.integrations.load_diffusers_denoiser` feeds it, and the timesteps are
the same float32 time labels: a pipeline run with solver ``s`` and
``diffsample.sample(load_diffusers_denoiser(pipe), x_T / α_0, scheduler.sigmas, solver=s)`` make the
same model calls on the same inputs (except the label of a zero-SNR or pure-noise start: ``N − 1`` or
``t = 1`` here, the interpolated time of the finite stand-in level there).

Step levels: what a config's keys mean here
-------------------------------------------
``set_timesteps(n)`` makes the step schedule; keys of other schedulers' configs that change it are
honoured (or refused with a :class:`~diffsample.errors.DiffsampleError` naming the key):

========================= ==========================================================================
key                       meaning here
========================= ==========================================================================
``timestep_spacing``,     DDPM tables: ``linspace``/``leading``/``trailing`` integer timesteps
``steps_offset``          (:func:`diffsample.steps.time_uniform`, diffusers' DDIM rules)
``use_karras_sigmas``,    the span of those timesteps (diffusers' Euler: the σ of the first and last
``use_exponential_sigmas``, spaced timestep) re-spaced by :func:`~diffsample.steps.karras` (ρ = 7),
``use_beta_sigmas``,      :func:`~diffsample.steps.exponential`, :func:`~diffsample.steps.beta_schedule`
``use_lu_lambdas``        in σ (α = β = 0.6) or :func:`~diffsample.steps.logsnr` (Lu et al.'s uniform λ);
                          at most one; for flow, in diffusers' flow sigma ``t`` after the shift
``final_sigmas_type``     ``"zero"``: the walk ends at 0; ``"sigma_min"``: at the table's σ(t = 0)
                          (flow: at the last level), one step fewer when the levels already end there
``shift``,                flow: levels ``u = linspace(1, 1/N, n)``, shifted **once**, in σ-space the
``use_dynamic_shifting``, scaling ``σ = m·u/(1 − u)`` with ``m = shift``, or ``e^mu`` (``mu`` passed to
``time_shift_type``,      ``set_timesteps``; ``m = mu`` for the linear type); ``shift_terminal``
``shift_terminal``        stretches ``1 − t`` as diffusers does. diffusers' static-shift default instead
                          shifts its last level twice (its ``sigma_min`` is stored shifted)
``clip_sample``,          x̂0 transforms applied to the scheduler's denoiser output
``thresholding``, …       (:class:`~diffsample.integrations.diffusers_model.SampleClipping`), as DDPM and
                          DPM-Solver apply them (DDIM instead keeps the unclipped ε̂ in its update)
``variance_type``         learned variance: the network's first half of channels (its mean) is used;
                          ``fixed_large(_log)`` sets the ``ddpm`` solver's ``variance="large"``
========================= ==========================================================================

Refused: ``timestep_type="continuous"``, ``interpolation_type="log_linear"``, ``sigma_min``/``sigma_max``
overrides, ``invert_sigmas``, ``stochastic_sampling`` (pick a stochastic solver instead) and EDM
configs. Custom ``sigmas=`` are σ-space levels on a table and diffusers' (unshifted) flow sigmas in
``(0, 1]`` for flow, shifted once as diffusers shifts them; custom ``timesteps=`` (fractional allowed)
are the network's own timesteps, used as given (flow: not shifted). One final 0 is appended, as diffusers
does, unless the list already ends in 0.

How a stateless solver runs step by step
----------------------------------------
A pipeline owns the loop: for each entry of ``scheduler.timesteps`` it calls the model on its latent
and hands the output to ``step``, which must return the latent the model is to be called on next.
A diffsample solver is one plain function call that owns its own loop and calls ``denoiser(x, σ)``
whenever it needs an evaluation (its history lives in that call's locals). The two loops are joined
by running the solver call in a worker thread, with a hand-off in each direction:

* the solver gets a :class:`~diffsample.parameterization.ModelDenoiser` whose *network* is a bridge:
  called with ``(x_t, t)``, it passes ``x_t`` out to ``step`` (which returns it as ``prev_sample``)
  and blocks until the next ``step`` call passes the model output back in;
* ``step`` hands the model output to the worker and blocks until the solver asks for its next
  evaluation or returns its result (the final ``prev_sample``).

Exactly one of the two threads runs at any time, so there is no concurrency, only two call stacks;
the worker copies the caller's grad/inference mode. Solvers stay untouched and stateless (no
per-solver "stepper" rewrite, no replaying), and every model call is made by the pipeline. A walk
abandoned halfway (a new ``set_timesteps``, a new walk started, the scheduler garbage-collected)
stops its worker by raising a private exception inside the bridge.

The timesteps of multi-evaluation solvers
-----------------------------------------
A pipeline calls the model once per entry of ``timesteps``, so ``timesteps`` must list every
evaluation in advance, intermediate ones included (as diffusers' Heun scheduler lists its second
stages). ``set_timesteps`` finds them by a dry run: the solver walks the step schedule on a 1×1
state with a stand-in network that records its time labels. That works for every solver whose
evaluation levels depend on ``sigmas`` (and options) only: Euler, Heun (two per step, one on the
step into 0), DPM-Solver-2S/3S and ++(2S) (intermediate λ-levels), the multistep methods, UniPC,
DEIS, LMS, iPNDM, ``plan``, ``dpm_fast`` (its own λ-uniform levels), and the stochastic solvers,
whose evaluation pattern does not depend on the noise (the dry run draws zeros): DDPM, DDIM(η),
Euler ancestral, SDE-DPM-Solver++, EDM's churn sampler (its raised levels σ̂), restart sampling
(the levels of each restart interval, in order, going back up) and predictor–corrector (the
corrector's evaluations at the same level). The real walk checks each request against the plan.
``order`` is the solver's evaluations per step.

Noise: stochastic solvers draw from ``scheduler.noise`` when set (a diffsample noise source, e.g.
a Brownian tree), else from the pipeline's ``generator`` as diffusers does
(:class:`GeneratorNoise`): one generator for the batch, a list of generators (one per sample, as
pipelines pass for ``num_images_per_prompt``; sample ``i`` draws from generator ``i`` alone), or
``None``, torch's default generator, as diffusers' ``randn_tensor`` does (not batch-invariant and
not reproducible unless ``torch.manual_seed`` is set).

It cannot work for **adaptive** solvers (``dpm_adaptive``, registry flag ``adaptive``): how many
evaluations they make, and at which levels, depends on the model outputs through the error
controller, so no timestep list exists before the walk. ``set_timesteps`` refuses them.

Limits
------
* The pipeline must hand back the latent ``step`` returned (after at most a dtype cast): the
  solver's state lives inside its call and cannot follow edits made between steps (inpainting
  pipelines that blend known latents back in); such an edit raises an error rather than being
  silently ignored.
* DDPM tables and flow matching only: EDM configs are refused by ``from_config``.
* Starting mid-plan (img2img's ``set_begin_index``, or a first timestep that is not the plan's
  first) starts the solver afresh on the remaining steps; it must begin at a step boundary and the
  solver's evaluations on the shortened schedule must be the tail of the plan (not so for
  ``dpm_fast``, whose levels depend on the whole span).
* Flow walks from pure noise take their first step with Euler (module docstring): a stochastic
  solver adds no noise on that step, and a solver with ``order`` evaluations per step makes one there,
  so its later steps start at ``timesteps`` index ``(i − 1)·order + 1``; an img2img pipeline indexing the
  full list by ``t_start·order`` lands inside a step and gets an error, not a silent misstart.
* ``scheduler.sigmas`` are σ-space levels in both modes (diffusers' flow schedulers list ``t``);
  ``set_alpha_to_one`` (DDIM/PNDM's last step) is not read: walks end at 0 unless
  ``final_sigmas_type="sigma_min"``.
* To load a saved pipeline that uses this scheduler through ``DiffusionPipeline.from_pretrained``,
  diffusers looks the class up as ``diffsample.DiffsampleScheduler``; pass ``scheduler=`` explicitly.
"""

from __future__ import annotations

import math
import queue
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from .. import solvers, steps
from .._deprecation import RenamedAttribute
from ..contracts import NoiseSource
from ..denoisers import Denoiser, append_dims
from ..errors import DiffsampleError
from ..parameterization import ModelDenoiser, canonical_prediction
from ..sampling import sample as run_solver
from ..schedules import DiscreteVP, NoiseSchedule, RectifiedFlow
from ..transforms import Transform, work_dtype
from .diffusers_model import (
    LEARNED_VARIANCE,
    SampleClipping,
    is_edm_config,
    is_flow_config,
    sample_clipping_from_config,
)

__all__ = ["DiffsampleScheduler", "FLOW_PURE_NOISE_SIGMA", "GeneratorNoise"]

_TABLE_SCHEDULERS = [
    "DDIMScheduler",
    "DDPMScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "EulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "DEISMultistepScheduler",
    "UniPCMultistepScheduler",
    "DPMSolverSDEScheduler",
    "SASolverScheduler",
    "LCMScheduler",
    "TCDScheduler",
]
"""diffusers schedulers on a DDPM table: their configs load with ``DiffsampleScheduler.from_config``."""

_FLOW_SCHEDULERS = ["FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler"]
"""diffusers' flow-matching schedulers: their configs load too (module docstring)."""

FLOW_PURE_NOISE_SIGMA = float(2**24)
"""The σ-space level a flow walk starts from in place of ``t = 1`` (σ = ∞), labelled ``t = 1`` for the
network. Its first step is Euler's (:func:`_walk`), ``x' = lerp(x̂0, x, σ'/σ)``, which differs from the
exact ``t = 1`` step by ``|v|/(1 + 2^24)``, below float32 rounding."""

_SPACING_CONVERSIONS = {
    "use_karras_sigmas": "karras",
    "use_exponential_sigmas": "exponential",
    "use_beta_sigmas": "beta",
    "use_lu_lambdas": "logsnr",
}
"""diffusers' re-spacing flags and the diffsample step schedule each one names."""

_REFUSED_KEYS: dict[str, Callable[[Any], bool]] = {
    "timestep_type": lambda v: v not in (None, "discrete"),
    "interpolation_type": lambda v: v not in (None, "linear"),
    "sigma_min": lambda v: v is not None,
    "sigma_max": lambda v: v is not None,
    "invert_sigmas": bool,
    "stochastic_sampling": bool,
}
"""Keys of other schedulers' configs that would change results and that this scheduler cannot honour."""

_TIME_RTOL = 1e-5


def _same_time(a: float, b: float) -> bool:
    return abs(a - b) <= _TIME_RTOL * max(1.0, abs(a), abs(b))


class GeneratorNoise:
    """A diffsample noise source drawing standard normals as diffusers' ``randn_tensor`` does.

    ``generator`` is one ``torch.Generator`` (``torch.randn(x.shape, generator=g)`` on its device),
    a list of them, one per sample (row ``i`` is drawn from generator ``i`` alone, so sample ``i``
    does not depend on the batch), or ``None``: torch's default generator on x's device (diffusers'
    behaviour for ``generator=None``; not batch-invariant, reproducible only under
    ``torch.manual_seed``). Draws are float32, then moved to x's device and dtype.
    """

    def __init__(self, generator: torch.Generator | Sequence[torch.Generator] | None) -> None:
        self.generator = generator

    def __call__(self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
        g = self.generator
        if g is None:
            z = torch.randn(x.shape, device=x.device, dtype=torch.float32)
        elif isinstance(g, torch.Generator):
            z = torch.randn(x.shape, generator=g, device=g.device, dtype=torch.float32)
        else:
            rows = list(g)
            if len(rows) != x.shape[0]:
                raise DiffsampleError(
                    f"got a list of {len(rows)} generators for a batch of {x.shape[0]} samples; pass one per sample"
                )
            z = torch.stack(
                [torch.randn(x.shape[1:], generator=r, device=r.device, dtype=torch.float32).to(x.device) for r in rows]
            )
        return z.to(device=x.device, dtype=x.dtype)


def _zero_noise(x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
    return torch.zeros_like(x)


class _Cancelled(BaseException):
    """Raised inside the worker's bridge to unwind an abandoned solver call (not an ``Exception``, so
    solver code catching errors cannot swallow it)."""


_CANCEL = object()


class _Walk:
    """One solver call running in a worker thread, exchanging evaluations with the caller.

    ``target(network)`` runs the whole walk, calling ``network(x_t, t)`` for each evaluation, and
    returns the result. :meth:`start` runs it up to its first evaluation request; :meth:`send` passes
    a model output in and runs it to the next request. Both return ``("eval", x_t, t)``,
    ``("done", result, None)`` or ``("error", exception, None)``.
    """

    def __init__(self, target: Callable[[Callable[..., torch.Tensor]], torch.Tensor]) -> None:
        self._target = target
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()
        self._grad = torch.is_grad_enabled()
        self._inference = torch.is_inference_mode_enabled()
        self._thread = threading.Thread(target=self._work, name="diffsample-scheduler-walk", daemon=True)
        self.finished = False

    def _network(self, x_t: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self._outbox.put(("eval", x_t, t))
        reply = self._inbox.get()
        if reply is _CANCEL:
            raise _Cancelled
        return reply

    def _work(self) -> None:
        try:
            with torch.set_grad_enabled(self._grad), torch.inference_mode(self._inference):
                result = self._target(self._network)
        except _Cancelled:
            return
        except BaseException as exc:  # handed to the caller's thread, re-raised there
            self._outbox.put(("error", exc, None))
            return
        self._outbox.put(("done", result, None))

    def _receive(self) -> tuple[str, Any, Any]:
        message = self._outbox.get()
        if message[0] != "eval":
            self.finished = True
        return message

    def start(self) -> tuple[str, Any, Any]:
        self._thread.start()
        return self._receive()

    def send(self, model_output: torch.Tensor) -> tuple[str, Any, Any]:
        if self.finished:
            raise DiffsampleError("this walk has already ended")
        self._inbox.put(model_output)
        return self._receive()

    def cancel(self) -> None:
        """Stop a walk waiting for a model output (no-op once it has ended)."""
        if self.finished or not self._thread.is_alive():
            return
        self.finished = True
        self._inbox.put(_CANCEL)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)


class _WalkSlot:
    """The scheduler's current walk; held apart from the scheduler so a finaliser can cancel it."""

    def __init__(self) -> None:
        self.walk: _Walk | None = None

    def cancel(self) -> None:
        if self.walk is not None:
            self.walk.cancel()
            self.walk = None


@dataclass(frozen=True)
class _Plan:
    """The evaluations of a solver on a step schedule: float32 time labels, σ-space levels, and for each
    step ``i`` the index of its first evaluation (``starts[i]``; absent for steps the solver merges)."""

    times: torch.Tensor
    sigmas: list[float]
    starts: dict[int, int]


@dataclass(frozen=True)
class _PureNoiseLabel:
    """A network wrapper giving time labels at or above ``threshold`` (the label of the level standing
    for pure noise) the exact pure-noise label ``label`` (flow ``t = 1``, a zero-SNR table's ``N − 1``)."""

    network: Callable[..., Any]
    threshold: float
    label: float

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> object:
        return self.network(x_t, torch.where(t >= self.threshold, torch.full_like(t, self.label), t), **kwargs)


class _ClippedDenoiser(Transform):
    """``clipping(D(x, σ))``: a config's x̂0 transform on a denoiser (its counters read through to ``inner``)."""

    def __init__(self, inner: Denoiser, clipping: SampleClipping) -> None:
        super().__init__(inner)
        self.clipping = clipping

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.clipping(self.inner(x, sigma, **kwargs))


@dataclass(frozen=True)
class _DenoiserRecipe:
    """How the scheduler turns a network into its σ-space denoiser (no reference to the scheduler, so a
    worker thread holding it does not keep the scheduler alive)."""

    noise_schedule: NoiseSchedule
    prediction: str
    time_scale: float = 1.0
    clipping: SampleClipping | None = None
    pure_noise: tuple[float, float] | None = None
    """``(σ, label)``: the finite level standing for σ = ∞ and the network's label for it."""

    def model(self, network: Callable[..., Any], dtype: torch.dtype | None) -> ModelDenoiser:
        return ModelDenoiser(
            network,
            self.noise_schedule,
            self.prediction,
            time_scale=self.time_scale,
            dtype=dtype,
            time_dtype=torch.float32,
        )

    def make(self, network: Callable[..., Any], dtype: torch.dtype | None) -> Denoiser:
        if self.pure_noise is not None:
            sigma, label = self.pure_noise
            threshold = self.model(_zero_network, dtype).network_inputs(torch.tensor([sigma], dtype=torch.float64))[1]
            network = _PureNoiseLabel(network, float(threshold.float()), label)
        den: Denoiser = self.model(network, dtype)
        return den if self.clipping is None else _ClippedDenoiser(den, self.clipping)

    def input_scale(self, sigma: float) -> torch.Tensor:
        """α at σ-space level ``sigma``: the latent is ``α·x`` (float64, shape (1,))."""
        return self.model(_zero_network, None).network_inputs(torch.tensor([sigma], dtype=torch.float64))[0]


def _zero_network(x_t: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """A stand-in network (only its ModelDenoiser's ``network_inputs`` are used)."""
    return torch.zeros_like(x_t)


def _respaced(name: str, n: int, lo: float, hi: float) -> torch.Tensor:
    """``n`` levels from ``hi`` to ``lo`` (no final 0) by diffusers' re-spacing ``name`` (module docstring)."""
    if n == 1:
        return torch.tensor([hi], dtype=torch.float64)
    if name == "beta":  # diffusers' _convert_to_beta: quantiles in σ, α = β = 0.6
        return steps.beta_schedule(n, lo, hi, alpha=0.6, beta=0.6, append_zero=False)
    fn = {"karras": steps.karras, "exponential": steps.exponential, "logsnr": steps.logsnr}[name]
    return fn(n, lo, hi, append_zero=False)


def _flow_sigma_space(t: torch.Tensor) -> torch.Tensor:
    """σ = t/(1 − t) for flow times ``t`` in ``[0, 1]``; ``t = 1`` gives :data:`FLOW_PURE_NOISE_SIGMA`."""
    t = t.to(torch.float64)
    if bool(((t < 0) | (t > 1) | ~torch.isfinite(t)).any()):
        raise DiffsampleError(f"flow sigmas/timesteps must lie in [0, 1] (times num_train_timesteps), got {t.tolist()}")
    return torch.where(t >= 1, torch.full_like(t, FLOW_PURE_NOISE_SIGMA), t / (1 - t).clamp(min=1e-300))


def _walk(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    solver: str,
    *,
    noise: NoiseSource | None,
    options: Mapping[str, Any],
    pure_noise_sigma: float | None,
    callback: Callable[..., None] | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Run ``solver`` over ``sigmas``; a walk out of flow's pure noise takes its first step with Euler.

    From ``σ = ∞`` (its stand-in ``pure_noise_sigma``) Euler/DDIM has an exact limit,
    ``x' = x̂0 + σ'·ε̂`` with ``ε̂ = (x − x̂0)/σ``, but a method that combines slopes across the step
    (Heun's trapezoid, linear multistep in σ) multiplies the difference of its evaluations by
    ``σ/σ'`` (≈ 10^6 here) and is meaningless there. So every solver's walk starts at the first finite
    level, after one Euler step from pure noise, as diffusers' flow schedulers take ``t = 1`` in stride.
    """
    if pure_noise_sigma is None or float(sigmas[0]) < pure_noise_sigma:
        return run_solver(
            denoiser, x, sigmas, solver=solver, noise=noise, callback=callback, check_finite=check_finite, **options
        )
    x = run_solver(denoiser, x, sigmas[:2], solver="euler", callback=callback, check_finite=check_finite)
    if len(sigmas) == 2:
        return x
    shifted = None if callback is None else (lambda info: callback({**info, "i": int(info["i"]) + 1}))
    return run_solver(
        denoiser, x, sigmas[1:], solver=solver, noise=noise, callback=shifted, check_finite=check_finite, **options
    )


def _refuse_unsupported_keys(config: Mapping[str, Any]) -> None:
    for key, refused in _REFUSED_KEYS.items():
        if key in config and refused(config[key]):
            raise DiffsampleError(
                f"DiffsampleScheduler cannot honour {key}={config[key]!r} of this "
                f"{config.get('_class_name', 'scheduler')} config; it would change the results, so it is refused "
                f"(remove the key or set it to its default)"
            )


class DiffsampleScheduler(SchedulerMixin, ConfigMixin):
    """A diffusers scheduler running a diffsample solver (module docstring: conventions and limits).

    Args (the registered config):
        num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr:
            the DDPM training table, as in diffusers (flow: only ``num_train_timesteps`` is read).
        prediction_type: ``"epsilon"``, ``"v_prediction"``, ``"sample"`` (DDPM table) or
            ``"flow_prediction"`` (flow matching; ``from_config`` sets it for flow configs).
        solver: a name from :func:`diffsample.solvers.available` (not an adaptive one).
        solver_options: keyword options for the solver (JSON-serialisable to save the config).
        step_schedule: a name from :data:`diffsample.steps.SCHEDULES`; it gets ``n`` and
            ``noise_schedule=<the table>`` plus ``step_schedule_options``. ``"time_uniform"`` (the default)
            follows diffusers' conventions (module docstring).
        step_schedule_options: keyword options for the step schedule (``sigma_min``, ``rho``, …).
        timestep_spacing, steps_offset: for ``step_schedule="time_uniform"`` on a table (diffusers' meaning:
            ``"linspace"``, ``"leading"``, ``"trailing"``) unless given in ``step_schedule_options``.
        variance_type, clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio,
        sample_max_value, use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas, use_lu_lambdas,
        final_sigmas_type: diffusers' keys, honoured as the module docstring says.
        shift, use_dynamic_shifting, base_shift, max_shift, base_image_seq_len, max_image_seq_len,
        time_shift_type, shift_terminal: diffusers' flow-matching keys (``base_*``/``max_*`` are read
            by pipelines to compute ``mu``).

    ``DiffsampleScheduler.from_config(pipe.scheduler.config, solver="unipc")`` takes the table (or the
    flow shift) and prediction type of a DDPM-table or flow-matching diffusers scheduler.
    """

    _compatibles = _TABLE_SCHEDULERS + _FLOW_SCHEDULERS
    order = 1
    schedule = RenamedAttribute("noise_schedule")
    """Deprecated spelling of ``noise_schedule`` (the DDPM table)."""

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | None = None,
        prediction_type: str = "epsilon",
        rescale_betas_zero_snr: bool = False,
        solver: str = "dpmpp_2m",
        solver_options: dict[str, Any] | None = None,
        step_schedule: str = "time_uniform",
        step_schedule_options: dict[str, Any] | None = None,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        variance_type: str | None = None,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_lu_lambdas: bool = False,
        final_sigmas_type: str = "zero",
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float | None = 0.5,
        max_shift: float | None = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        time_shift_type: str = "exponential",
        shift_terminal: float | None = None,
    ) -> None:
        self.prediction = canonical_prediction(str(prediction_type))
        self.is_flow = self.prediction == "flow"
        if self.prediction not in ("eps", "v", "x0", "flow"):
            raise DiffsampleError(f"DiffsampleScheduler cannot take prediction_type {prediction_type!r}")
        self.spec = solvers.spec(solver)
        if self.spec.adaptive:
            raise DiffsampleError(
                f"solver {solver!r} chooses its steps from the model outputs (adaptive), so its evaluation "
                f"timesteps cannot be listed before the walk, as a diffusers pipeline needs"
            )
        steps.get(step_schedule)  # fail early on an unknown name
        self.solver_options: dict[str, Any] = dict(solver_options or {})
        self._respacing = self._check_respacing()
        if final_sigmas_type not in ("zero", "sigma_min"):
            raise DiffsampleError(f"final_sigmas_type must be 'zero' or 'sigma_min', got {final_sigmas_type!r}")
        self._check_variance_type(variance_type)
        clipping = sample_clipping_from_config(self.config)
        if self.is_flow:
            if time_shift_type not in ("exponential", "linear"):
                raise DiffsampleError(f"time_shift_type must be 'exponential' or 'linear', got {time_shift_type!r}")
            if not shift > 0:
                raise DiffsampleError(f"shift must be > 0, got {shift}")
            if shift_terminal is not None and not 0 < shift_terminal < 1:
                raise DiffsampleError(f"shift_terminal must lie in (0, 1), got {shift_terminal}")
            self.noise_schedule: NoiseSchedule = RectifiedFlow()
            scale = float(num_train_timesteps)
            self._recipe = _DenoiserRecipe(self.noise_schedule, "flow", scale, clipping, (FLOW_PURE_NOISE_SIGMA, scale))
        else:
            table = DiscreteVP.from_diffusers_config(self.config)
            self.noise_schedule = table
            zero_snr = (steps.ZERO_SNR_SIGMA, float(table.num_train_timesteps - 1)) if table.zero_terminal else None
            self._recipe = _DenoiserRecipe(table, self.prediction, 1.0, clipping, zero_snr)
        self._pure_noise_start = FLOW_PURE_NOISE_SIGMA if self.is_flow else None
        self.order = self.spec.evals_per_step
        self.timesteps = torch.empty(0, dtype=torch.float32)
        self.sigmas = torch.empty(0, dtype=torch.float64)
        self.eval_sigmas = torch.empty(0, dtype=torch.float64)
        self.num_inference_steps: int | None = None
        self._plan: _Plan | None = None
        self._begin_index: int | None = None
        self._cursor: int | None = None
        self._returned: torch.Tensor | None = None
        self._end_sigma = 0.0
        self.noise: NoiseSource | None = None
        self._slot = _WalkSlot()
        weakref.finalize(self, self._slot.cancel)

    # -- config loading ---------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, config: Mapping[str, Any] | None = None, return_unused_kwargs: bool = False, **kwargs: Any
    ) -> Self | tuple[Self, dict[str, Any]]:
        """diffusers' ``from_config``, reading flow-matching configs as such and refusing what would change
        results silently (EDM configs, and the keys of the module docstring's "Refused" list)."""
        if isinstance(config, Mapping) and config.get("_class_name") != cls.__name__:
            if is_edm_config(config):
                raise DiffsampleError(
                    f"DiffsampleScheduler runs on DDPM tables and flow matching; an EDM config is neither "
                    f"({config.get('_class_name', 'no class name')}; use load_diffusers_denoiser and diffsample.sample "
                    f"for such models)"
                )
            _refuse_unsupported_keys(config)
            if is_flow_config(config):
                config = dict(config)
                config["prediction_type"] = "flow_prediction"
                if "flow_shift" in config and "shift" not in config:
                    config["shift"] = config["flow_shift"]
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    def _check_respacing(self) -> str | None:
        """The one diffusers re-spacing flag set (``use_karras_sigmas`` …), as a step schedule name."""
        chosen = [key for key in _SPACING_CONVERSIONS if self.config.get(key, False)]
        if len(chosen) > 1:
            raise DiffsampleError(f"only one of {', '.join(chosen)} can be set")
        if not chosen:
            return None
        if self.config.step_schedule != "time_uniform" or self.config.step_schedule_options:
            raise DiffsampleError(
                f"{chosen[0]} re-spaces diffusers' default levels; it conflicts with "
                f"step_schedule={self.config.step_schedule!r} and step_schedule_options; set one of them"
            )
        if chosen[0] == "use_lu_lambdas" and self.is_flow:
            raise DiffsampleError("use_lu_lambdas is defined for DDPM tables, not flow matching")
        return _SPACING_CONVERSIONS[chosen[0]]

    def _check_variance_type(self, variance_type: str | None) -> None:
        """Learned variance: the mean channels are used (see :meth:`step`); the ``ddpm`` solver takes the
        fixed variances (``fixed_large`` → ``variance="large"``) and refuses a learned one it cannot use."""
        known = (None, "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", *LEARNED_VARIANCE)
        if variance_type not in known:
            raise DiffsampleError(f"variance_type {variance_type!r} is not one of {known}")
        if self.spec.name != "ddpm":
            return
        if variance_type in LEARNED_VARIANCE:
            raise DiffsampleError(
                f"variance_type={variance_type!r}: the ddpm solver draws with a fixed posterior variance and cannot "
                f"use the network's learned one; pick another solver or a fixed variance_type"
            )
        if variance_type is not None and "variance" not in self.solver_options:
            self.solver_options["variance"] = "large" if variance_type.startswith("fixed_large") else "small"

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def __getstate__(self) -> dict[str, Any]:
        """Copies (``copy.deepcopy``, pickling) keep the plan but not a walk in progress."""
        state = self.__dict__.copy()
        state["_slot"] = None
        state["_cursor"] = None
        state["_returned"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._slot = _WalkSlot()
        weakref.finalize(self, self._slot.cancel)

    # -- diffusers scheduler API ------------------------------------------------------------------
    @property
    def init_noise_sigma(self) -> float:
        """1: the latents are VP or flow samples, pure noise at the start (module docstring)."""
        return 1.0

    def _table(self) -> DiscreteVP:
        if not isinstance(self.noise_schedule, DiscreteVP):
            raise AttributeError("a flow-matching DiffsampleScheduler has no DDPM table (betas, alphas_cumprod)")
        return self.noise_schedule

    @property
    def betas(self) -> torch.Tensor:
        """The table's β (float32, as diffusers' schedulers hold it); DDPM tables only."""
        return self._table().betas.to(torch.float32)

    @property
    def alphas(self) -> torch.Tensor:
        """``1 − β`` (float32); DDPM tables only."""
        return (1 - self._table().betas).to(torch.float32)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_t (float32; 0 at a zero terminal SNR, as in DDIM/DDPM); DDPM tables only."""
        return self._table().alphas_cumprod.to(torch.float32)

    @property
    def step_index(self) -> int | None:
        """Index into ``timesteps`` of the evaluation the next ``step`` call expects (None between walks)."""
        return self._cursor

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start the next walk at ``timesteps[begin_index]`` (img2img pipelines); see the module docstring."""
        self._begin_index = int(begin_index)

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None) -> torch.Tensor:
        """The identity: the model takes the VP or flow sample as it is."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: Sequence[float] | None = None,
        sigmas: Sequence[float] | None = None,
        mu: float | None = None,
    ) -> None:
        """Make the step schedule and list every model evaluation of the solver in ``timesteps``.

        One of ``num_inference_steps`` (the configured step schedule with that many steps),
        ``timesteps`` (the network's timesteps, fractional allowed, used as given) or ``sigmas``
        (σ-space levels on a table; diffusers' unshifted flow sigmas for flow); with a list,
        ``num_inference_steps`` may also be given if it equals the list's length. ``mu`` is the
        dynamic shift of flow configs with ``use_dynamic_shifting`` (required there, ignored elsewhere).
        ``self.sigmas`` is the σ-space step schedule, ``self.eval_sigmas`` the level of each entry of
        ``self.timesteps`` (module docstring for the conventions).
        """
        given = timesteps if timesteps is not None else sigmas
        if (timesteps is not None and sigmas is not None) or (given is None and num_inference_steps is None):
            raise DiffsampleError("set_timesteps needs exactly one of num_inference_steps, timesteps, sigmas")
        if given is not None and num_inference_steps is not None and num_inference_steps != len(given):
            raise DiffsampleError(
                f"num_inference_steps={num_inference_steps} but {len(given)} custom timesteps/sigmas were given"
            )
        self._slot.cancel()
        if timesteps is not None:
            levels = self._levels_of_timesteps(torch.as_tensor(timesteps, dtype=torch.float64).flatten())
        elif sigmas is not None:
            levels = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
            if self.is_flow:
                levels = self._flow_shifted(levels, mu)
        else:
            levels = self._step_schedule(int(num_inference_steps), mu)  # type: ignore[arg-type]
        self.sigmas = steps.validate(self._final_levels(levels))
        plan = self._make_plan(self.sigmas)
        self._plan = plan
        self.timesteps = plan.times.to(device) if device is not None else plan.times
        self.eval_sigmas = torch.tensor(plan.sigmas, dtype=torch.float64)
        self.num_inference_steps = len(self.sigmas) - 1
        self._begin_index = None
        self._cursor = None
        self._returned = None

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        """Give the solver the model output at ``timestep`` and return the latent of its next evaluation.

        On the last evaluation the solver finishes and ``prev_sample`` is its result (the sample at the
        schedule's last level, i.e. x̂0 when that is 0). A learned-variance output (twice the sample's
        channels, ``variance_type`` learned) gives its first half. Stochastic solvers draw from
        ``self.noise`` when it is set, else from ``generator`` (one, a list of one per sample, or None:
        torch's default generator), as diffusers does (module docstring).
        """
        if self._plan is None:
            raise DiffsampleError("call set_timesteps before step")
        if self.config.variance_type in LEARNED_VARIANCE and model_output.shape[1] == 2 * sample.shape[1]:
            model_output = model_output[:, : sample.shape[1]]
        t = float(timestep)
        walk = self._slot.walk
        continuing = (
            walk is not None
            and not walk.finished
            and self._cursor is not None
            and _same_time(t, float(self._plan.times[self._cursor]))
        )
        if continuing:
            assert walk is not None
            self._check_sample(sample)
        else:
            walk = self._start_walk(t, sample, generator)
        message = walk.send(model_output)
        return self._finish_step(message, sample, return_dict)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``α_t·x0 + σ_t·ε`` at the network's ``timesteps`` (one per sample, or one): on a table (fractional
        timesteps interpolated), or ``(1 − t)·x0 + t·ε`` with ``t = timestep/num_train_timesteps`` for flow."""
        t = torch.as_tensor(timesteps).detach().to("cpu", torch.float64).flatten() / self._recipe.time_scale
        alpha, sigma_t = self.noise_schedule.alpha(t), self.noise_schedule.sigma(t)
        dtype = original_samples.dtype if original_samples.is_floating_point() else torch.float32

        def per_sample(v: torch.Tensor) -> torch.Tensor:
            v = v.to(original_samples.device, dtype)
            return v.reshape(-1, *([1] * (original_samples.dim() - 1)))

        return per_sample(alpha) * original_samples + per_sample(sigma_t) * noise.to(original_samples.device)

    def scale_noise(self, sample: torch.Tensor, timestep: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """diffusers' flow img2img entry point: :meth:`add_noise` with the arguments in its order."""
        return self.add_noise(sample, noise, torch.as_tensor(timestep))

    # -- step levels ------------------------------------------------------------------------------
    def _step_schedule(self, n: int, mu: float | None) -> torch.Tensor:
        """The configured step schedule's ``n`` positive levels (:meth:`_final_levels` adds the end)."""
        levels = self._configured_levels(n, mu)
        return levels[levels > 0]

    def _configured_levels(self, n: int, mu: float | None) -> torch.Tensor:
        name = self.config.step_schedule
        options = dict(self.config.step_schedule_options or {})
        if self.is_flow:
            if name == "time_uniform" and not options:
                return self._flow_default_levels(n, mu)
            return steps.get(name)(n, noise_schedule=RectifiedFlow(shift=self._flow_factor(mu)), **options)
        if name == "time_uniform":
            options.setdefault("spacing", self.config.timestep_spacing)
            options.setdefault("steps_offset", self.config.steps_offset)
        levels = steps.get(name)(n, noise_schedule=self.noise_schedule, **options)
        if self._respacing is None:
            return levels
        positive = levels[levels > 0]
        return _respaced(self._respacing, n, float(positive[-1]), float(positive[0]))

    def _flow_factor(self, mu: float | None) -> float:
        """The σ-space scaling of the flow shift: ``shift``, or ``e^mu`` (``mu`` linear) when dynamic."""
        if not self.config.use_dynamic_shifting:
            return float(self.config.shift)
        if mu is None:
            raise DiffsampleError("this flow config uses dynamic shifting: pass mu= to set_timesteps")
        return math.exp(mu) if self.config.time_shift_type == "exponential" else float(mu)

    def _flow_shifted(self, u: torch.Tensor, mu: float | None) -> torch.Tensor:
        """Unshifted flow sigmas ``u`` → σ-space levels, shifted once (and ``shift_terminal``-stretched)."""
        m = self._flow_factor(mu)
        u = u.to(torch.float64)
        t = m * u / (1 + (m - 1) * u)  # = resolution_shift(u, m); σ-space: m·u/(1 − u)
        if self.config.shift_terminal:
            one_minus = 1 - t
            t = 1 - one_minus / (one_minus[-1] / (1 - self.config.shift_terminal))
        return _flow_sigma_space(t)

    def _flow_default_levels(self, n: int, mu: float | None) -> torch.Tensor:
        """diffusers' flow levels ``u = linspace(1, 1/N, n)``, shifted once, optionally re-spaced in ``t``."""
        big_n = self.config.num_train_timesteps
        u = torch.linspace(big_n, 1, n, dtype=torch.float64) / big_n if n > 1 else torch.ones(1, dtype=torch.float64)
        levels = self._flow_shifted(u, mu)
        if self._respacing is None:
            return levels
        t = levels / (1 + levels)
        t[levels >= FLOW_PURE_NOISE_SIGMA] = 1.0
        return _flow_sigma_space(_respaced(self._respacing, n, float(t[-1]), float(t[0])))

    def _levels_of_timesteps(self, ts: torch.Tensor) -> torch.Tensor:
        """σ-space levels of the network's own timesteps (fractional allowed), used as given."""
        big_n = self.config.num_train_timesteps
        hi = big_n if self.is_flow else big_n - 1
        if not bool(torch.isfinite(ts).all()) or bool((ts < 0).any()) or bool((ts > hi).any()):
            raise DiffsampleError(f"timesteps must lie in [0, {hi}], got {ts.tolist()}")
        if self.is_flow:
            return _flow_sigma_space(ts / big_n)
        levels = self.noise_schedule.sigma_space(ts)
        return torch.where(torch.isinf(levels), torch.full_like(levels, steps.ZERO_SNR_SIGMA), levels)

    def _final_levels(self, levels: torch.Tensor) -> torch.Tensor:
        """The walk's end: one final 0 (unless already there), or σ_min with ``final_sigmas_type="sigma_min"``."""
        if levels.numel() and float(levels[-1]) == 0.0:
            return levels
        if self.config.final_sigmas_type == "zero":
            return torch.cat([levels, levels.new_zeros(1)])
        end = levels[-1:] if self.is_flow else torch.tensor([self.noise_schedule.sigma_min], dtype=torch.float64)
        if float(levels[-1]) <= float(end[0]) * (1 + 1e-12):
            return levels
        return torch.cat([levels, end])

    # -- internals --------------------------------------------------------------------------------
    def _make_plan(self, sigmas: torch.Tensor) -> _Plan:
        """Dry run of the solver on a 1×1 state recording the network's time labels (module docstring)."""
        times: list[float] = []
        levels: list[float] = []
        starts: dict[int, int] = {}

        def network(x_t: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            times.append(float(t[0]))
            return torch.full_like(x_t, 0.5)  # any non-degenerate output: only the times are kept

        recorder = self._recipe.make(network, torch.float32)

        def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            out = recorder(x, sigma)
            if float(sigma.reshape(-1)[0]) > 0:
                levels.append(float(sigma.reshape(-1)[0]))
            return out

        def callback(info: dict[str, Any]) -> None:
            starts.setdefault(int(info["i"]), len(times) - 1)

        _walk(
            denoiser,
            torch.ones(1, 1),
            sigmas,
            self.spec.name,
            noise=_zero_noise,
            options=self.solver_options,
            pure_noise_sigma=self._pure_noise_start,
            callback=callback,
            check_finite=False,
        )
        if not times:
            raise DiffsampleError(f"solver {self.spec.name!r} made no model evaluation on {len(sigmas) - 1} steps")
        starts.setdefault(0, 0)
        return _Plan(torch.tensor(times, dtype=torch.float32), levels, starts)

    def _begin(self, t: float) -> tuple[int, int]:
        """``(step, evaluation index)`` where a walk starting at timestep ``t`` begins."""
        assert self._plan is not None
        times = self._plan.times
        if self._begin_index is not None:
            index = self._begin_index
            if not 0 <= index < len(times) or not _same_time(t, float(times[index])):
                raise DiffsampleError(
                    f"step() got timestep {t:g}, but set_begin_index({index}) points at "
                    f"{float(times[index]) if 0 <= index < len(times) else 'no entry'}"
                )
            for i, start in self._plan.starts.items():
                if start == index:
                    return i, index
            raise DiffsampleError(
                f"timesteps[{index}] is not the first evaluation of a step; a walk cannot start there"
            )
        for i, start in sorted(self._plan.starts.items()):
            if _same_time(t, float(times[start])):
                return i, start
        raise DiffsampleError(
            f"step() got timestep {t:g}, which does not start any step of the plan (timesteps = {times.tolist()})"
        )

    def _start_walk(
        self, t: float, sample: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None
    ) -> _Walk:
        """Cancel any walk in progress and start the solver at timestep ``t`` from the latent ``sample``."""
        assert self._plan is not None
        self._slot.cancel()
        step, index = self._begin(t)
        sigmas = self.sigmas[step:]
        if step > 0:
            tail = self._make_plan(sigmas).times
            if len(tail) != len(self._plan.times) - index or not torch.allclose(
                tail, self._plan.times[index:], rtol=_TIME_RTOL, atol=0
            ):
                raise DiffsampleError(
                    f"solver {self.spec.name!r} evaluates differently when started at step {step}: its walk over "
                    f"the remaining steps is not the tail of the plan, so it cannot start mid-plan"
                )
        dtype = work_dtype(sample.dtype)
        sigma0 = float(torch.tensor(float(sigmas[0]), dtype=dtype))
        alpha0 = self._recipe.input_scale(sigma0)
        x = sample.to(dtype) / append_dims(alpha0.to(sample.device, dtype), sample.dim())
        noise = self.noise
        if noise is None and self.spec.stochastic:
            noise = GeneratorNoise(generator)
        # the worker must not hold the scheduler (a pending walk would keep it alive past its finaliser)
        solver, options, net_dtype, recipe = self.spec.name, self.solver_options, sample.dtype, self._recipe
        pure_noise_sigma = self._pure_noise_start

        def target(network: Callable[..., torch.Tensor]) -> torch.Tensor:
            return _walk(
                recipe.make(network, net_dtype),
                x,
                sigmas,
                solver,
                noise=noise,
                options=options,
                pure_noise_sigma=pure_noise_sigma,
            )

        walk = _Walk(target)
        self._slot.walk = walk
        self._end_sigma = float(sigmas[-1])
        message = walk.start()
        self._cursor = index
        if message[0] != "eval" or not _same_time(float(message[2].reshape(-1)[0]), t):
            self._slot.cancel()
            self._cursor = None
            if message[0] == "error":
                raise message[1]
            raise DiffsampleError(f"solver {solver!r} did not start with an evaluation at timestep {t:g}")
        return walk

    def _check_sample(self, sample: torch.Tensor) -> None:
        returned = self._returned
        if returned is None:
            return
        same = sample.shape == returned.shape and torch.equal(sample, returned.to(sample.device, sample.dtype))
        if not same:
            self._slot.cancel()
            self._cursor = None
            raise DiffsampleError(
                "the pipeline changed the latent between steps (e.g. inpainting's blending); DiffsampleScheduler "
                "runs a solver whose state lives inside its call and cannot follow such edits"
            )

    def _finish_step(
        self, message: tuple[str, Any, Any], sample: torch.Tensor, return_dict: bool
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        assert self._plan is not None and self._cursor is not None
        kind, value, t_next = message
        if kind == "error":
            self._slot.walk = None
            self._cursor = None
            raise value
        if kind == "eval":
            self._cursor += 1
            expected = float(self._plan.times[self._cursor]) if self._cursor < len(self._plan.times) else math.nan
            if not _same_time(float(t_next.reshape(-1)[0]), expected):
                self._slot.cancel()
                self._cursor = None
                raise DiffsampleError(
                    f"solver {self.spec.name!r} asked for an evaluation at timestep {float(t_next.reshape(-1)[0]):g}, "
                    f"but the plan has {expected:g} there (its evaluations depend on more than the schedule)"
                )
            prev = value
        else:
            self._slot.walk = None
            self._cursor = None
            prev = value
            if self._end_sigma > 0:
                alpha = self._recipe.input_scale(self._end_sigma)
                prev = prev * append_dims(alpha.to(prev.device, prev.dtype), prev.dim())
            prev = prev.to(sample.dtype)
        self._returned = prev if kind == "eval" else None
        if not return_dict:
            return (prev,)
        return SchedulerOutput(prev_sample=prev)
