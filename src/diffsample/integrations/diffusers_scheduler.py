"""``DiffsampleScheduler``: any diffsample solver as a diffusers scheduler, inside unmodified pipelines.

This module imports diffusers at the top (the class subclasses its ``SchedulerMixin`` and
``ConfigMixin``); it is imported only on demand, through ``diffsample.integrations.DiffsampleScheduler``.

The sample convention
---------------------
The scheduler holds a DDPM table (:class:`~diffsample.schedules.DiscreteVP`, built from the usual
``beta_*``/``trained_betas``/``rescale_betas_zero_snr`` config keys). Its samples are VP samples, as
DDIM's and DPM-Solver's: the pipeline's latent at a timestep with σ-space level σ is ``x_t = α·x``
where ``x = x0 + σ·ε`` is the σ-space state, ``init_noise_sigma = 1`` and ``scale_model_input`` is the
identity. So the network sees exactly what :func:`~diffsample.integrations.load_diffusers_denoiser`
feeds it, and the timesteps are the same float32 time labels: a pipeline run with solver ``s`` and
``diffsample.sample(load_diffusers_denoiser(pipe), x_T / α_0, scheduler.sigmas, solver=s)`` make the
same model calls on the same inputs.

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
``order`` is the solver's evaluations per step. Stochastic solvers draw their noise from
``scheduler.noise`` when set (a diffsample noise source), else from the pipeline's ``generator``.

It cannot work for **adaptive** solvers (``dpm_adaptive``, registry flag ``adaptive``): how many
evaluations they make, and at which levels, depends on the model outputs through the error
controller, so no timestep list exists before the walk. ``set_timesteps`` refuses them.

Limits
------
* The pipeline must hand back the latent ``step`` returned (after at most a dtype cast): the
  solver's state lives inside its call and cannot follow edits made between steps (inpainting
  pipelines that blend known latents back in); such an edit raises an error rather than being
  silently ignored.
* DDPM tables only: flow-matching (``FlowMatch*``) and EDM configs are refused by ``from_config``.
* Starting mid-plan (img2img's ``set_begin_index``, or a first timestep that is not the plan's
  first) starts the solver afresh on the remaining steps; it must begin at a step boundary and the
  solver's evaluations on the shortened schedule must be the tail of the plan (not so for
  ``dpm_fast``, whose levels depend on the whole span).
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
from ..denoisers import append_dims
from ..errors import DiffsampleError
from ..parameterization import ModelDenoiser
from ..sampling import sample as run_solver
from ..sampling import work_dtype
from ..schedules import DiscreteVP
from .diffusers_model import is_edm_config, is_flow_config, parameterization_from_config

__all__ = ["DiffsampleScheduler", "GeneratorNoise"]

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

_TIME_RTOL = 1e-5


def _same_time(a: float, b: float) -> bool:
    return abs(a - b) <= _TIME_RTOL * max(1.0, abs(a), abs(b))


class GeneratorNoise:
    """A diffsample noise source drawing standard normals from one ``torch.Generator`` (diffusers' way).

    Draws ``torch.randn(x.shape, generator=g)`` on the generator's device in float32, then moves the
    result to x's device and dtype: a pipeline's ``generator=`` drives stochastic solvers with it.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def __call__(self, x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
        z = torch.randn(x.shape, generator=self.generator, device=self.generator.device, dtype=torch.float32)
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


class DiffsampleScheduler(SchedulerMixin, ConfigMixin):
    """A diffusers scheduler running a diffsample solver (module docstring: conventions and limits).

    Args (the registered config):
        num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr:
            the DDPM training table, as in diffusers.
        prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"``.
        solver: a name from :func:`diffsample.solvers.available` (not an adaptive one).
        solver_options: keyword options for the solver (JSON-serialisable to save the config).
        step_schedule: a name from :data:`diffsample.steps.SCHEDULES`; it gets ``n`` and
            ``noise_schedule=<the table>`` plus ``step_schedule_options``.
        step_schedule_options: keyword options for the step schedule (``sigma_min``, ``rho``, …).
        timestep_spacing, steps_offset: for ``step_schedule="time_uniform"`` (diffusers' meaning:
            ``"linspace"``, ``"leading"``, ``"trailing"``) unless given in ``step_schedule_options``.

    ``DiffsampleScheduler.from_config(pipe.scheduler.config, solver="unipc")`` takes the table and
    prediction type of any DDPM-table diffusers scheduler.
    """

    _compatibles = list(_TABLE_SCHEDULERS)
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
    ) -> None:
        param = parameterization_from_config(self.config)
        if not isinstance(param.noise_schedule, DiscreteVP):
            raise DiffsampleError("DiffsampleScheduler needs a DDPM table (beta_* or trained_betas)")
        self.noise_schedule: DiscreteVP = param.noise_schedule
        self.prediction = param.prediction
        self.spec = solvers.spec(solver)
        if self.spec.adaptive:
            raise DiffsampleError(
                f"solver {solver!r} chooses its steps from the model outputs (adaptive), so its evaluation "
                f"timesteps cannot be listed before the walk, as a diffusers pipeline needs"
            )
        steps.get(step_schedule)  # fail early on an unknown name
        self.solver_options: dict[str, Any] = dict(solver_options or {})
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
    def from_config(cls, config: Mapping[str, Any] | None = None, return_unused_kwargs: bool = False,
                    **kwargs: Any) -> Self | tuple[Self, dict[str, Any]]:
        """diffusers' ``from_config``, refusing configs that are not on a DDPM table (flow matching, EDM),
        whose keys would otherwise be dropped silently and leave a wrong default table."""
        if isinstance(config, Mapping) and (is_flow_config(config) or is_edm_config(config)):
            raise DiffsampleError(
                f"DiffsampleScheduler runs on DDPM tables; a flow-matching or EDM config is not one "
                f"({config.get('_class_name', 'no class name')}; use load_diffusers_denoiser and diffsample.sample "
                f"for such models)"
            )
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

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
        """1: the latents are VP samples (module docstring)."""
        return 1.0

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
        """The identity: the model takes the VP sample as it is."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: Sequence[int] | None = None,
        sigmas: Sequence[float] | None = None,
    ) -> None:
        """Make the step schedule and list every model evaluation of the solver in ``timesteps``.

        Exactly one of: ``num_inference_steps`` (the configured step schedule with that many steps),
        ``timesteps`` (integer table timesteps, e.g. AYS; the walk ends at 0 after the last), or
        ``sigmas`` (σ-space levels; a final 0 is appended when missing). ``self.sigmas`` is the step
        schedule, ``self.eval_sigmas`` the level of each entry of ``self.timesteps``.
        """
        if sum(v is not None for v in (num_inference_steps, timesteps, sigmas)) != 1:
            raise DiffsampleError("set_timesteps needs exactly one of num_inference_steps, timesteps, sigmas")
        self._slot.cancel()
        if sigmas is not None:
            levels = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
            if levels.numel() and float(levels[-1]) != 0.0:
                levels = torch.cat([levels, levels.new_zeros(1)])
        elif timesteps is not None:
            ts = torch.as_tensor(timesteps).flatten()
            if ts.is_floating_point() and not bool((ts == ts.round()).all()):
                raise DiffsampleError("timesteps= must be integer table timesteps")
            ts = ts.to(torch.int64)
            if bool((ts < 0).any()) or bool((ts >= self.noise_schedule.num_train_timesteps).any()):
                raise DiffsampleError(f"timesteps must lie in [0, {self.noise_schedule.num_train_timesteps - 1}]")
            levels = torch.cat([self.noise_schedule.sigma_space(ts.to(torch.float64)),
                                torch.zeros(1, dtype=torch.float64)])
        else:
            levels = self._step_schedule(int(num_inference_steps))  # type: ignore[arg-type]
        self.sigmas = steps.validate(levels)
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
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        """Give the solver the model output at ``timestep`` and return the latent of its next evaluation.

        On the last evaluation the solver finishes and ``prev_sample`` is its result (the VP sample
        at the schedule's last level, i.e. x̂0 when that is 0). Stochastic solvers draw from
        ``self.noise`` when it is set (any diffsample noise source, e.g. a Brownian tree), else from
        the pipeline's ``generator`` (:class:`GeneratorNoise`) as diffusers' ancestral schedulers do;
        with neither they raise (diffsample never uses a global RNG).
        """
        if self._plan is None:
            raise DiffsampleError("call set_timesteps before step")
        t = float(timestep)
        walk = self._slot.walk
        continuing = walk is not None and not walk.finished and self._cursor is not None and _same_time(
            t, float(self._plan.times[self._cursor]))
        if continuing:
            assert walk is not None
            self._check_sample(sample)
        else:
            walk = self._start_walk(t, sample, generator)
        message = walk.send(model_output)
        return self._finish_step(message, sample, return_dict)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``α_t·x0 + σ_t·ε`` on the table (fractional timesteps interpolated); one timestep per sample, or one."""
        t = torch.as_tensor(timesteps).detach().to("cpu", torch.float64).flatten()
        alpha, sigma_t = self.noise_schedule.alpha(t), self.noise_schedule.sigma(t)
        dtype = original_samples.dtype if original_samples.is_floating_point() else torch.float32

        def per_sample(v: torch.Tensor) -> torch.Tensor:
            v = v.to(original_samples.device, dtype)
            return v.reshape(-1, *([1] * (original_samples.dim() - 1)))

        return per_sample(alpha) * original_samples + per_sample(sigma_t) * noise.to(original_samples.device)

    # -- internals --------------------------------------------------------------------------------
    def _step_schedule(self, n: int) -> torch.Tensor:
        name = self.config.step_schedule
        options = dict(self.config.step_schedule_options or {})
        if name == "time_uniform":
            options.setdefault("spacing", self.config.timestep_spacing)
            options.setdefault("steps_offset", self.config.steps_offset)
        return steps.get(name)(n, noise_schedule=self.noise_schedule, **options)

    def _denoiser(self, network: Callable[..., torch.Tensor], dtype: torch.dtype) -> ModelDenoiser:
        return ModelDenoiser(network, self.noise_schedule, self.prediction, dtype=dtype, time_dtype=torch.float32)

    def _make_plan(self, sigmas: torch.Tensor) -> _Plan:
        """Dry run of the solver on a 1×1 state recording the network's time labels (module docstring)."""
        times: list[float] = []
        levels: list[float] = []
        starts: dict[int, int] = {}

        def network(x_t: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            times.append(float(t[0]))
            return torch.full_like(x_t, 0.5)  # any non-degenerate output: only the times are kept

        recorder = self._denoiser(network, torch.float32)

        def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            out = recorder(x, sigma)
            if float(sigma.reshape(-1)[0]) > 0:
                levels.append(float(sigma.reshape(-1)[0]))
            return out

        def callback(info: dict[str, Any]) -> None:
            starts.setdefault(int(info["i"]), len(times) - 1)

        run_solver(denoiser, torch.ones(1, 1), sigmas, solver=self.spec.name, noise=_zero_noise, callback=callback,
                   check_finite=False, **self.solver_options)
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
                f"timesteps[{index}] is not the first evaluation of a step; a walk cannot start there")
        for i, start in sorted(self._plan.starts.items()):
            if _same_time(t, float(times[start])):
                return i, start
        raise DiffsampleError(
            f"step() got timestep {t:g}, which does not start any step of the plan (timesteps = {times.tolist()})"
        )

    def _start_walk(self, t: float, sample: torch.Tensor, generator: torch.Generator | None) -> _Walk:
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
        dummy = self._denoiser(_zero_network, sample.dtype)
        alpha0 = dummy.network_inputs(torch.tensor([sigma0], dtype=torch.float64))[0]
        x = sample.to(dtype) / append_dims(alpha0.to(sample.device, dtype), sample.dim())
        noise = self.noise
        if noise is None and generator is not None and self.spec.stochastic:
            noise = GeneratorNoise(generator)
        # the worker must not hold the scheduler (a pending walk would keep it alive past its finaliser)
        solver, options, net_dtype = self.spec.name, self.solver_options, sample.dtype
        noise_schedule, prediction = self.noise_schedule, self.prediction

        def target(network: Callable[..., torch.Tensor]) -> torch.Tensor:
            denoiser = ModelDenoiser(network, noise_schedule, prediction, dtype=net_dtype, time_dtype=torch.float32)
            return run_solver(denoiser, x, sigmas, solver=solver, noise=noise, **options)

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

    def _finish_step(self, message: tuple[str, Any, Any], sample: torch.Tensor,
                     return_dict: bool) -> SchedulerOutput | tuple[torch.Tensor]:
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
                dummy = self._denoiser(_zero_network, sample.dtype)
                alpha = dummy.network_inputs(torch.tensor([self._end_sigma], dtype=torch.float64))[0]
                prev = prev * append_dims(alpha.to(prev.device, prev.dtype), prev.dim())
            prev = prev.to(sample.dtype)
        self._returned = prev if kind == "eval" else None
        if not return_dict:
            return (prev,)
        return SchedulerOutput(prev_sample=prev)


def _zero_network(x_t: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """A stand-in network (only its ModelDenoiser's ``network_inputs`` are used)."""
    return torch.zeros_like(x_t)
