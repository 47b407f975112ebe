"""``diffsample.sample``: validate the inputs, guard the model, run a registered solver.

The update maths runs in float32 (float64 when x is float64) whatever the network's dtype: x is
promoted before the walk and every denoiser output is cast to that dtype. A model output with
NaN/Inf raises :class:`~diffsample.errors.NonFiniteError` naming the step index and σ.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import solvers, steps
from .denoisers import Denoiser, WrappedDenoiser, as_denoiser
from .errors import DiffsampleError, NonFiniteError, ShapeError, SigmaError

__all__ = ["sample", "work_dtype", "GuardedDenoiser"]


def all_finite(t: torch.Tensor) -> bool:
    """True when no element of ``t`` is NaN or ±Inf.

    One sum reduction (no full-size boolean tensor): NaN and ±Inf propagate through a sum, so a
    finite sum proves every element finite; a non-finite sum (possibly an overflow of huge finite
    values) is confirmed element-wise.
    """
    return math.isfinite(float(t.sum())) or bool(torch.isfinite(t).all())


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the solver's update maths uses for a state of ``dtype`` (never below float32)."""
    if not dtype.is_floating_point:
        raise ShapeError(f"x must be a floating-point tensor, got dtype {dtype}")
    return torch.float64 if dtype == torch.float64 else torch.float32


class GuardedDenoiser(WrappedDenoiser):
    """Wraps a denoiser for one walk: casts its output to the work dtype and checks it is finite.

    It does not count evaluations itself (``nfe`` and ``calls`` read through to the wrapped
    denoiser), so NFE is counted exactly once.
    """

    def __init__(self, inner: Denoiser, sigmas: torch.Tensor, dtype: torch.dtype, check_finite: bool = True):
        super().__init__(inner)
        self.sigmas = sigmas
        self.dtype = dtype
        self.check_finite = check_finite

    def _step_of(self, sigma: float) -> int:
        """Index i of the step σ_i ≥ σ > σ_{i+1} that an evaluation at σ belongs to.

        σ reaches the model in x's dtype, so the comparison allows float32 round-off (1e-6 relative);
        an evaluation at the last level (a second stage ending at σ_n) is named as the last step.
        """
        above = (self.sigmas >= sigma * (1 - 1e-6)).nonzero()
        return min(int(above[-1]), len(self.sigmas) - 2) if len(above) else 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        out = self.inner(x, sigma, **kwargs).to(self.dtype)
        if self.check_finite and not all_finite(out):
            s = float(torch.as_tensor(sigma).reshape(-1)[0])
            bad = (~torch.isfinite(out)).reshape(out.shape[0], -1).any(1).nonzero().flatten().tolist()
            raise NonFiniteError(
                f"the model returned NaN/Inf at step {self._step_of(s)} (sigma={s:.6g}) "
                f"for batch indices {bad[:8]}{' …' if len(bad) > 8 else ''}"
            )
        return out


def sample(
    denoiser: Any,
    x: torch.Tensor,
    sigmas: torch.Tensor | None = None,
    solver: str | None = None,
    noise: Any = None,
    callback: Any = None,
    *,
    plan: Any = None,
    check_finite: bool = True,
    **options: Any,
) -> torch.Tensor:
    """Walk ``x`` (the state at ``sigmas[0]``) down the noise levels ``sigmas`` with ``solver``.

    Args:
        denoiser: ``D(x, sigma) -> x0_hat`` in σ-space (a :class:`~diffsample.denoisers.Denoiser`
            or any callable of that form, which then gets an NFE counter).
        x: the state at ``sigmas[0]``, shape ``(B, …)``; from pure noise, ``x = sigmas[0] · z``.
        sigmas: strictly decreasing, non-negative noise levels (e.g. :func:`diffsample.steps.karras`).
        solver: a name from :func:`diffsample.solvers.available` (default ``"euler"``).
        noise: a noise source (:func:`diffsample.noise.seeded`) for stochastic solvers.
        callback: called after each model evaluation of a step with a dict (i, x, sigma, sigma_next,
            denoised).
        plan: a :class:`diffsample.Plan` (or the path of one saved as JSON) from :func:`diffsample.tune`:
            its noise levels, solver and options are used. ``sigmas``, ``solver`` and options may still be
            passed if they agree with the plan's; a conflict raises.
        check_finite: raise on NaN/Inf model outputs (default on).
        **options: solver-specific options.

    Returns:
        The state at ``sigmas[-1]`` in the work dtype (float32, or float64 for float64 input).
    """
    if plan is not None:
        sigmas, solver, options = _from_plan(plan, sigmas, solver, options)
    if sigmas is None:
        raise SigmaError("sample() needs sigmas (a step schedule such as diffsample.steps.karras(...)) or a plan")
    solver = "euler" if solver is None else solver
    sigmas = steps.validate(sigmas)
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ShapeError(f"x must have shape (B, …) with B >= 1, got {tuple(x.shape)}")
    fn = solvers.get(solver)
    dtype = work_dtype(x.dtype)
    guarded = GuardedDenoiser(as_denoiser(denoiser), sigmas, dtype, check_finite)
    out = fn(guarded, x.to(dtype), sigmas, noise=noise, callback=callback, **options)
    if check_finite and not all_finite(out):
        raise NonFiniteError(f"solver {solver!r} produced NaN/Inf although every model output was finite")
    return out


def _from_plan(plan: Any, sigmas: Any, solver: str | None, options: dict[str, Any]
               ) -> tuple[torch.Tensor, str, dict[str, Any]]:
    """The levels, solver and options of ``plan``, checked against any passed alongside it."""
    from .tuning.plan import Plan  # the tuner sits above the sampler; imported only when a plan is given

    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    planned = plan.sigma_tensor()
    if sigmas is not None:
        given = steps.validate(sigmas)
        if given.shape != planned.shape or not torch.allclose(given, planned, rtol=1e-12, atol=0.0):
            raise SigmaError("sample() got both sigmas and a plan with different noise levels; pass one of them")
    if solver is not None and solver != plan.solver:
        raise DiffsampleError(f"sample() got solver={solver!r} and a plan for solver {plan.solver!r}")
    clash = [k for k in options if k in plan.options and options[k] != plan.options[k]]
    if clash:
        raise DiffsampleError(f"sample() options {clash} conflict with the plan's; leave them out to use the plan")
    return planned, plan.solver, {**plan.options, **options}

