"""The DC-Solver ratio search (Zhao et al. 2024, §4.2): per-step compensation ratios, stored as a plan.

DC-Solver (:mod:`diffsample.solvers.dc_solver`) re-reads the model value UniPC reuses at a shifted time
``λ*_i = λ_{i−1} + ρ_i (λ_i − λ_{i−1})``. The ratios are found greedily, one step at a time, on a few
calibration samples (the paper uses 10) against a reference trajectory ``x*(σ)``:

    ρ_i = argmin_ρ  ‖ Φ_i(x_i; ρ) − x*(σ_{i+1}) ‖² / (B·d),

where ``Φ_i`` is step ``i`` (compensation with ``ρ``, UniP predictor, the model call at the predicted point
and UniC) from the state ``x_i`` reached with the ratios already fixed, and ``x*`` is the reference
at the step's end level (``σ = 0`` for the last step). Each trial costs one model call on the calibration
batch (none for a data-prediction step into σ = 0). Steps ``i < dc_order`` keep ``ρ_i = 1``.

Optimisers
----------
* ``"adamw"`` — the paper's: ``ρ`` is a parameter started at 1 and moved by AdamW (learning rate 0.1,
  20 iterations in the reference diffusers code) on the gradient of the loss, which flows through the
  model call at the predicted point; the denoiser must be differentiable (the test beds are).
* ``"golden"`` — a derivative-free alternative for models without gradients: golden-section search on
  ``[1 − width, 1 + width]`` with ``iters`` loss evaluations, then the best of that and ``ρ = 1``.

The per-step losses are a proxy: a ratio that best matches the reference at ``σ_{i+1}`` need not lower
the end-point error. ``refine > 0`` (not in the paper) adds joint sweeps: coordinate by coordinate, a golden
search of ``ρ_j`` on the end-point calibration error with the other ratios fixed (``n − j`` model calls per
trial, from the state cached before step ``j``), kept only where it lowers that error.

Reference
---------
The paper's reference is a 200-step DDIM trajectory read at the nearest recorded time. Here it is, in
order of preference: a callable ``reference(x, σ_start, σ_end)`` returning the exact PF-ODE solution (for
a test bed, :func:`diffsample.testbeds.reference_solution`, DOP853), a tensor of the states at
``sigmas[1:]``, or (``None``) a fine DPM-Solver++(3M) walk through the plan's own levels with λ-steps of at
most ``teacher_h`` (the tuner's teacher, :mod:`.teacher`, whose end point lies within ~1e-5 of DOP853 at
``h ≈ 0.022``), finished by the exact first-order step into σ = 0.

Cascade polynomial regression (Zhao et al. 2024, §4.3)
-----------------------------------------------------
To skip the search at an unseen budget (and guidance scale ``w``), the paper fits the searched ratios of
a few configurations with a cascade of polynomials: the ratio of step ``i`` (``x = (i + 1)/NFE``) is a
cubic in ``x`` whose coefficients are quadratics in ``w/12`` whose coefficients are quadratics in
``NFE/50`` (their ``cascade_polynomial_regression``; 4·3·3 = 36 numbers). Expanded, that is a linear
model in the tensor-product basis ``x^k (w/12)^a (NFE/50)^b``, so :func:`fit_cpr` solves it by least
squares (the reference code calls ``curve_fit`` on the same model). Steps ``i < dc_order`` stay at 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .. import steps
from .._deprecation import renamed_keyword
from ..contracts import Denoiser
from ..denoisers import CallCounter
from ..errors import BudgetError, DiffsampleError, ShapeError
from ..sampling import sample
from ..solvers.dc_solver import DCState, DCWalk
from ..transforms import GuardedDenoiser, work_dtype
from .plan import Plan
from .provenance import library_version, model_name

__all__ = ["CPR", "METHODS", "dc_reference_states", "fit_cpr", "search_dc_ratios"]

METHODS = ("adamw", "golden")
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
Reference = Callable[[torch.Tensor, float, float], torch.Tensor] | torch.Tensor | None


def dc_reference_states(
    denoiser: Denoiser, x: torch.Tensor, sigmas: Sequence[float], *, teacher_h: float = 0.02
) -> tuple[torch.Tensor, int]:
    """The PF-ODE states at ``sigmas[1:]`` from ``x`` at ``sigmas[0]`` by a fine DPM-Solver++(3M) walk.

    Every interval ``[σ_{j+1}, σ_j]`` with ``σ_{j+1} > 0`` is split into ``⌈h_j / teacher_h⌉`` λ-uniform
    steps (``h_j = log(σ_j/σ_{j+1})``); the walk passes through every level exactly and its state there is
    recorded from the callback (the state a step starts from). A final σ = 0 is reached by the exact
    first-order limit ``D(x(σ_min), σ_min)`` (error ``O(σ_min²)``). Returns the states, shape
    ``(len(sigmas) − 1, B, …)``, and the model calls spent per sample.
    """
    if not teacher_h > 0:
        raise DiffsampleError(f"teacher_h must be positive, got {teacher_h!r}")
    pos = [float(v) for v in sigmas if v > 0]
    fine: list[float] = []
    marks: list[int] = []  # index in `fine` of every positive level
    for a, b in zip(pos, pos[1:], strict=False):
        marks.append(len(fine))
        k = max(1, math.ceil(math.log(a / b) / teacher_h))
        fine += torch.logspace(math.log10(a), math.log10(b), k + 1, dtype=torch.float64)[:-1].tolist()
    marks.append(len(fine))
    fine.append(pos[-1])
    ends_at_zero = float(sigmas[-1]) == 0
    if ends_at_zero:
        fine.append(0.0)
    wanted = set(marks)
    recorded: dict[int, torch.Tensor] = {}

    def keep(info: dict) -> None:
        if info["i"] in wanted:
            recorded[info["i"]] = info["x"].detach().clone()

    den = CallCounter(denoiser)  # this call's own evaluations, even when other threads share the model
    before = den.nfe
    with torch.no_grad():
        final = sample(den, x, torch.tensor(fine, dtype=torch.float64), solver="dpmpp_3m", callback=keep)
    states = [recorded[m] for m in marks[1:]] if ends_at_zero else [recorded[m] for m in marks[1:-1]]
    return torch.stack([*states, final]), den.nfe - before


def _targets(
    den: Denoiser, reference: Reference, calibration: torch.Tensor, s: list[float], teacher_h: float
) -> tuple[torch.Tensor, int, str]:
    n = len(s) - 1
    if reference is None:
        states, spent = dc_reference_states(den, calibration, s, teacher_h=teacher_h)
        return states, spent, f"dpmpp_3m through the plan's levels, log-SNR steps <= {teacher_h:g}"
    if isinstance(reference, torch.Tensor):
        if tuple(reference.shape) != (n, *calibration.shape):
            raise ShapeError(
                f"reference states must have shape {(n, *calibration.shape)} (the states at "
                f"sigmas[1:]), got {tuple(reference.shape)}"
            )
        return reference, 0, "given states"
    if not callable(reference):
        raise DiffsampleError(
            "reference must be None, a tensor of states at sigmas[1:] or a callable "
            "reference(x, sigma_start, sigma_end)"
        )
    states = [torch.as_tensor(reference(calibration, s[0], s[j])) for j in range(1, n + 1)]
    return torch.stack(states), 0, getattr(reference, "__name__", "callable")


def _mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out.to(target.dtype) - target).square().mean()


def _adamw(
    loss: Callable[[Any], torch.Tensor],
    iters: int,
    lr: float,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[float, int]:
    """The paper's optimiser: AdamW on ``ρ`` from 1, returning the last iterate as the reference code does.

    Loshchilov & Hutter (2019) with ``torch.optim.AdamW``'s defaults: ``ρ ← ρ(1 − lr·wd)``, then
    ``ρ ← ρ − lr·m̂/(√v̂ + eps)`` with bias-corrected moments ``m̂ = m/(1 − β₁ᵏ)``, ``v̂ = v/(1 − β₂ᵏ)`` of the
    gradient. Written out for the one scalar (torch.optim's first use costs seconds of set-up).
    """
    rho, m, v = 1.0, 0.0, 0.0
    for k in range(1, iters + 1):
        param = torch.tensor(rho, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(loss(param), param)
        g = float(grad)
        if not math.isfinite(g):  # a diverging trial: keep the last finite iterate
            break
        rho *= 1.0 - lr * weight_decay
        m = betas[0] * m + (1.0 - betas[0]) * g
        v = betas[1] * v + (1.0 - betas[1]) * g * g
        rho -= lr * (m / (1.0 - betas[0] ** k)) / (math.sqrt(v / (1.0 - betas[1] ** k)) + eps)
    return rho, iters


def _golden(loss: Callable[[Any], torch.Tensor], iters: int, center: float, width: float) -> tuple[float, int]:
    """Golden-section search of ``ρ`` on ``[center − width, center + width]``, kept only if it beats ``center``."""
    lo, hi = center - width, center + width
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = float(loss(a)), float(loss(b))
    evals = 2
    while evals < iters:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = float(loss(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = float(loss(b))
        evals += 1
    best, f_best = (a, fa) if fa <= fb else (b, fb)
    return (best if f_best < float(loss(center)) else center), evals + 1


def _run_from(walk: DCWalk, den: Denoiser, state: DCState | torch.Tensor, ratios: Sequence[float]) -> torch.Tensor:
    while isinstance(state, DCState):
        state = walk.step(den, state, ratios[state.i])
    return state


def _joint_refine(
    walk: DCWalk,
    den: Denoiser,
    start: DCState,
    ratios: list[float],
    final: torch.Tensor,
    sweeps: int,
    iters: int,
    width: float,
) -> int:
    """Coordinate sweeps over the ratios, each a golden search on the end-point calibration error (in place).

    Returns the loss evaluations made. Each coordinate keeps its value unless a trial lowers the error.
    """
    trials = 0
    for _ in range(sweeps):
        state: DCState | torch.Tensor = start
        for j in range(walk.n_steps):
            assert isinstance(state, DCState)
            if j >= walk.dc_order:

                def loss(rho: float, at: DCState = state, j: int = j) -> torch.Tensor:
                    trial = [*ratios[:j], rho, *ratios[j + 1 :]]
                    return _mse(_run_from(walk, den, at, trial), final)

                ratios[j], used = _golden(loss, iters, ratios[j], width)
                trials += used
            state = walk.step(den, state, ratios[j])
    return trials


@renamed_keyword("schedule", "step_schedule")
def search_dc_ratios(
    denoiser: Denoiser,
    *,
    calibration: torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor | None = None,
    nfe: int | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    step_schedule: str = "logsnr",
    reference: Reference = None,
    method: str = "adamw",
    iters: int = 20,
    lr: float = 0.1,
    width: float = 1.5,
    refine: int = 0,
    refine_width: float = 0.5,
    teacher_h: float = 0.02,
    model_id: str | None = None,
    dc_order: int = 2,
    **solver_options: Any,
) -> Plan:
    """Search DC-Solver's per-step ratios on a calibration batch and return them as a :class:`Plan`.

    Args:
        denoiser: a σ-space denoiser (test bed or network).
        calibration: states at the first level, shape ``(B, …)`` (e.g. ``σ_max · z``; the paper uses B = 10).
            Evaluate the plan on other noises.
        sigmas: the levels (ending in 0 or σ_min); or ``nfe`` with ``sigma_min``, ``sigma_max`` and a
            ``step_schedule`` name (default ``"logsnr"``; ``schedule=`` is its deprecated spelling) to make
            them (one model call per step).
        reference: how the target states are obtained (module docstring).
        method: ``"adamw"`` (the paper's, needs a differentiable denoiser) or ``"golden"``.
        iters: loss evaluations per step (AdamW iterations, or golden-section trials).
        lr: AdamW's learning rate; width: the golden-section interval ``1 ± width``.
        refine: after the per-step search, this many joint sweeps (module docstring) over the ratios on
            the end-point calibration error, each coordinate a golden search on ``ρ_j ± refine_width``
            (not in the paper; 0, the default, is the paper's search).
        teacher_h: λ-step of the default fine reference walk.
        model_id: a label for the provenance.
        dc_order, **solver_options: the options of :func:`~diffsample.solvers.dc_solver.dc_solver`
            (``order``, ``variant``, ``predict``, …), stored in the plan.

    Returns:
        A plan with solver ``"dc_solver"`` and options ``{"ratios": [...], "dc_order": ..., ...}``; its
        provenance records the calibration size, the calibration RMSE at the last level with the ratios
        (``error``) and without (``error_unipc``), the reference, and the search's wall time and NFE per
        calibration sample (``search_nfe``: the search; ``total_nfe``: with the reference walk and the UniPC run).
    """
    t_start = time.perf_counter()
    if method not in METHODS:
        raise DiffsampleError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if isinstance(iters, bool) or int(iters) != iters or iters < 2:
        raise DiffsampleError(f"iters must be an integer >= 2, got {iters!r}")
    if not isinstance(calibration, torch.Tensor) or calibration.dim() < 1 or calibration.shape[0] < 1:
        raise ShapeError("calibration must be a tensor of states at the first level, shape (B, ...)")
    den = CallCounter(denoiser)  # this call's own evaluations, even when other threads share the model
    if sigmas is None:
        if nfe is None:
            raise DiffsampleError("give the levels (sigmas=...) or a budget (nfe=...) with sigma_min/sigma_max")
        if isinstance(nfe, bool) or int(nfe) != nfe or nfe < 1:
            raise BudgetError(f"nfe must be a positive integer number of model evaluations, got {nfe!r}")
        n = int(nfe) // int(getattr(den, "nfe_per_call", 1))
        if n < 1:
            raise BudgetError(f"a budget of {nfe} evaluations buys no call of this denoiser")
        sigmas = steps.get(step_schedule)(n, float(sigma_min), float(sigma_max))
    elif nfe is not None:
        raise DiffsampleError("give either sigmas or nfe, not both")
    level_tensor = steps.validate(sigmas, name="sigmas")
    s = [float(v) for v in level_tensor.tolist()]
    walk = DCWalk(level_tensor, dc_order=dc_order, **solver_options)
    first = den.nfe
    dtype = work_dtype(calibration.dtype)
    cal = calibration.detach().to(dtype)
    targets, reference_nfe, reference_name = _targets(den, reference, cal, s, teacher_h)
    targets = targets.to(torch.float64)

    before = den.nfe
    guarded = GuardedDenoiser(den, level_tensor, dtype, check_finite=False)  # outputs in the work dtype
    ratios = [1.0] * walk.n_steps
    losses: list[float | None] = [None] * walk.n_steps
    trials = 0
    with torch.no_grad():
        start = walk.start(guarded, cal)
        state: DCState | torch.Tensor = start
        for i in range(walk.n_steps):
            assert isinstance(state, DCState)
            if i >= walk.dc_order:

                def loss(
                    rho: torch.Tensor, current: DCState = state, target: torch.Tensor = targets[i]
                ) -> torch.Tensor:
                    out = walk.step(guarded, current, rho)
                    return _mse(out.x if isinstance(out, DCState) else out, target)

                if method == "adamw":
                    ratios[i], used = _adamw(loss, int(iters), float(lr))
                else:
                    ratios[i], used = _golden(loss, int(iters), 1.0, float(width))
                trials += used
            state = walk.step(guarded, state, ratios[i])
            out = state.x if isinstance(state, DCState) else state
            losses[i] = float(_mse(out, targets[i]))
        final = targets[-1]
        if refine:
            trials += _joint_refine(walk, guarded, start, ratios, final, int(refine), int(iters), float(refine_width))
            losses[-1] = float(_mse(_run_from(walk, guarded, start, ratios), final))
    search_nfe = den.nfe - before

    rmse = math.sqrt(losses[-1]) if losses[-1] is not None else math.nan
    options = {"ratios": ratios, "dc_order": int(dc_order), **_json_options(solver_options)}
    with torch.no_grad():
        base = sample(den, cal, level_tensor, solver="dc_solver", **{**options, "ratios": None})
    rmse_unipc = math.sqrt(float(_mse(base, final)))
    total_nfe = den.nfe - first
    provenance = {
        "model": model_name(den, model_id),
        "nfe": walk.n_steps * int(getattr(den, "nfe_per_call", 1)),
        "calibration_size": int(cal.shape[0]),
        "sample_shape": list(cal.shape[1:]),
        "error": rmse,
        "error_unipc": rmse_unipc,
        "error_metric": f"RMSE at sigma = {s[-1]:g} against the reference on the calibration batch",
        "step_mse": losses,
        "reference": reference_name,
        "reference_nfe": reference_nfe,
        "method": method,
        "iters": int(iters),
        "trials": trials,
        "search_nfe": search_nfe,
        "total_nfe": total_nfe,
        "search_seconds": round(time.perf_counter() - t_start, 3),
        "library": library_version(),
    }
    return Plan(s, "dc_solver", options, provenance)


def _json_options(options: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in options.items():
        out[key] = [int(v) for v in value] if key == "disable_corrector" else value
    return out


@dataclass(frozen=True)
class CPR:
    """Cascade polynomial regression of DC ratios over (step position, guidance scale, NFE) (module docstring).

    ``coeffs[k][a][b]`` multiplies ``x^k (w/w_scale)^a (NFE/nfe_scale)^b`` with ``x = (i + 1)/NFE``.
    """

    coeffs: tuple[tuple[tuple[float, ...], ...], ...]
    dc_order: int = 2
    nfe_scale: float = 50.0
    guidance_scale: float = 12.0

    def ratios(self, nfe: int, guidance: float = 0.0) -> list[float]:
        """Predicted ratios for the ``nfe`` steps of a one-call-per-step walk at guidance scale ``guidance``."""
        if isinstance(nfe, bool) or int(nfe) != nfe or nfe < 1:
            raise BudgetError(f"nfe must be a positive integer, got {nfe!r}")
        g, m = float(guidance) / self.guidance_scale, int(nfe) / self.nfe_scale
        out = []
        for i in range(int(nfe)):
            if i < self.dc_order:
                out.append(1.0)
                continue
            x = (i + 1) / int(nfe)
            out.append(
                sum(
                    c * x**k * g**a * m**b
                    for k, by_g in enumerate(self.coeffs)
                    for a, by_n in enumerate(by_g)
                    for b, c in enumerate(by_n)
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "coeffs": [[list(r) for r in by_g] for by_g in self.coeffs],
            "dc_order": self.dc_order,
            "nfe_scale": self.nfe_scale,
            "guidance_scale": self.guidance_scale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CPR:
        coeffs = tuple(tuple(tuple(float(c) for c in r) for r in by_g) for by_g in data["coeffs"])
        return cls(
            coeffs,
            int(data.get("dc_order", 2)),
            float(data.get("nfe_scale", 50.0)),
            float(data.get("guidance_scale", 12.0)),
        )


def fit_cpr(
    searched: Sequence[tuple[int, float, Sequence[float]]],
    *,
    x_degree: int = 3,
    guidance_degree: int = 2,
    nfe_degree: int = 2,
    dc_order: int = 2,
    nfe_scale: float = 50.0,
    guidance_scale: float = 12.0,
) -> CPR:
    """Least-squares fit of a :class:`CPR` to searched ratios ``[(nfe, guidance, ratios), …]``.

    Only steps ``i ≥ dc_order`` are fitted. Use ``guidance_degree=0`` when every configuration has the same
    guidance (the search data cannot determine a dependence on it), and a ``nfe_degree`` below the number
    of distinct budgets. The minimum-norm solution is taken where the basis is rank-deficient.
    """
    degrees = (int(x_degree), int(guidance_degree), int(nfe_degree))
    if min(degrees) < 0:
        raise DiffsampleError(f"polynomial degrees must be >= 0, got {degrees}")
    rows, values = [], []
    for nfe, guidance, ratios in searched:
        if len(ratios) != int(nfe):
            raise DiffsampleError(f"{len(ratios)} ratios for a budget of {nfe} one-call steps")
        g, m = float(guidance) / guidance_scale, int(nfe) / nfe_scale
        for i in range(int(dc_order), int(nfe)):
            x = (i + 1) / int(nfe)
            rows.append(
                [
                    x**k * g**a * m**b
                    for k in range(degrees[0] + 1)
                    for a in range(degrees[1] + 1)
                    for b in range(degrees[2] + 1)
                ]
            )
            values.append(float(ratios[i]))
    if not rows:
        raise DiffsampleError("no searched ratios to fit (every configuration is shorter than dc_order + 1 steps)")
    basis = torch.tensor(rows, dtype=torch.float64)
    theta = (
        torch.linalg.lstsq(basis, torch.tensor(values, dtype=torch.float64).unsqueeze(1), driver="gelsd")
        .solution.flatten()
        .tolist()
    )
    shape = (degrees[0] + 1, degrees[1] + 1, degrees[2] + 1)
    coeffs = tuple(
        tuple(tuple(theta[(k * shape[1] + a) * shape[2] + b] for b in range(shape[2])) for a in range(shape[1]))
        for k in range(shape[0])
    )
    return CPR(coeffs, int(dc_order), float(nfe_scale), float(guidance_scale))
