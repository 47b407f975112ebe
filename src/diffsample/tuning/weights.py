"""Solver weights fitted to the teacher: the tuner's last stage, a ``nonstationary`` solver on the chosen levels.

A walk of ``n`` model calls on fixed levels, by any of this library's one-call-per-step solvers, makes every state a
linear combination of the start ``x_0`` and the model values ``D_0 … D_j`` (:mod:`diffsample.solvers.nonstationary`).
Bespoke Non-Stationary solvers (Shaul et al. 2024, BNS) free those weights and optimise them with the levels on the
end-point error; D-ODE (Kim et al. 2024) fits weights of past model values step by step to a teacher by least
squares. This stage does both, on the levels the search chose:

1. :func:`weights_of` writes the chosen ``plan`` walk in the weighted form, exactly: the walk is run on
   coefficient vectors, with a stand-in model that returns the ``k``-th unit vector at its ``k``-th call, so every
   state comes out as its weights over ``x_0, D_0, …`` (the solvers are linear in the model values;
   :func:`diffsample.solvers.nonstationary.plan_weights`).
2. :func:`fit_weights` walks the fit part of the calibration batch and, at each step ``j``, given ``x_0`` and the
   model values so far, sets row ``j`` to the least-squares weights that bring the next state onto the teacher:

       w_j = argmin_w  Σ_b ‖ Σ_k w_k · B_k^{(b)} − x^{teacher}_b(σ_{j+1}) ‖² + μ ‖w − w_j^{base}‖²,
       B = (x_0, D_0, …, D_j),   μ = ridge · tr(BᵀB)/(j + 2),

   then calls the model at the new point (so later rows see the states the earlier fitted rows make). The last
   row's target is the teacher's end point, so it is the least-squares read-out of the whole trajectory. The
   teacher's state between its fine levels is interpolated (:func:`teacher_at`). ``ridge`` pulls the weights
   towards the base walk's; the tuner tries a few and keeps the fit only if it lowers the *held-out* error.
3. :func:`search_levels` then moves the levels (a pattern search in ``log σ`` whose every trial is a fit), as BNS
   optimises levels and weights together: levels that suit a fixed solver are not those that suit fitted weights.
4. :func:`refine_weights` last minimises the end-point error itself over all weights, as BNS does (the step-by-step
   fit only brings each state onto the teacher, and with few steps the best points lie off the trajectory):
   Levenberg–Marquardt on the rows that place the model calls, the last row solved by least squares for each trial
   (variable projection, Golub & Pereyra 1973), the Jacobian by forward differences (one walk per weight).

Where no held-out part is set aside (automatic mode, :mod:`diffsample.auto`, whose whole calibration batch is a
few noises), :func:`cross_validate_weights` scores each ridge by K-fold cross-validation instead, and
:func:`fit_level_weights` fits any walk given by its levels and starting weights (a registered solver's,
:func:`diffsample.solvers.nonstationary.solver_weights`).

Each fit costs one walk (``n`` model calls) of the fit samples, and the normal equations are ``(j+2)²`` scalars; the
level search makes at most ``20·n`` fits; a refinement iteration ``(n−1)(n+2)/2 + 1`` walks or more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..contracts import Denoiser
from ..errors import DiffsampleError, NonFiniteError
from ..solvers.nonstationary import plan_weights, weighted_sum, weighted_walk
from ..solvers.plan_solver import plan_options
from ..transforms import GuardedDenoiser, work_dtype
from .search import Candidate, level_moves, plan_options_of
from .teacher import Teacher, teacher_subset

__all__ = [
    "AMPLIFICATION_LIMIT",
    "STEP_FIT_DATA_RATIO",
    "WEIGHT_RIDGES",
    "enough_data",
    "amplification",
    "CrossValidation",
    "Fit",
    "WeightsObjective",
    "cross_validate_weights",
    "fit_level_weights",
    "fit_weights",
    "refine_weights",
    "search_levels",
    "teacher_at",
    "weights_of",
    "within_limit",
]

WEIGHT_RIDGES: tuple[float, ...] = (0.0, 1e-8, 1e-6)
"""Ridge strengths the tuner fits with (relative to the mean diagonal of the normal equations); the held-out error
picks one. Measured on the digits networks: none (0) is best on most, 1e-6 where the fit samples are few for the
steps (NFE 15–20 on the smallest network)."""

_SPAN_ROUNDING = 1e-9
"""Relative distance outside the teacher's span still read as its end (levels moved in ``log σ`` and clamped at
``log σ_min`` come back through ``exp`` an ulp or so away)."""

_JITTER = 1e-12
"""Relative ridge always added, so collinear model values (a network whose ``D`` barely moves) stay solvable."""

AMPLIFICATION_LIMIT = 100.0
"""The most a fitted row may amplify the model's errors: the 1-norm of its model-value weights, ``Σ_k |w_{j,k+1}|``,
at most this. The exact flow combines model values with positive weights summing to about 1, published multistep
rows stay within about 5, and the fitted rows of automatic mode on the digits networks within 26; a row of 100
turns a 1 % model error into an error the size of the data. Least squares on nearly collinear model values (levels
close together, late steps where ``D`` barely moves) finds huge opposite weights that cancel on the fitted samples,
and an error or a jump of the model at a sample they did not contain (one near a mode boundary) is multiplied by
them. Seen: a 20-call plan on the 2-D ring whose level search had put levels 0.1 % apart got rows of 1 500–3 300,
and 2 of 64 fresh samples ended 1 243 away from the ODE's end point (held-out error 3.6e-6). Above the limit the
row's ridge is raised tenfold until it is within; if nothing is, the row keeps the walk's own weights (which, on
levels that close, may exceed it themselves). A first version bounded the row relative to the walk's own row
(10×): it touched network rows that help (up to 26× on `digits_cond` NFE 8) and missed the ring plan, whose own
rows there were large too."""


def weights_of(c: Candidate) -> list[list[float]]:
    """The ``nonstationary`` weights of the ``plan`` walk ``c``: row ``j`` gives the state after step ``j`` over
    ``x_0, D_0, …, D_j`` (module docstring, step 1; :func:`diffsample.solvers.nonstationary.plan_weights`)."""
    return plan_weights(c.walk(), plan_options(c.n_steps, **plan_options_of(c)))


def teacher_at(teacher: Teacher, sigma: float) -> torch.Tensor:
    """The teacher's state at ``sigma`` (float64): its own state on a fine level, else the cubic Lagrange
    interpolant in ``λ = −log σ`` through the four nearest fine levels (error ``O(Δλ⁴)`` of the λ-uniform grid)."""
    grid = teacher.grid.to(torch.float64)
    lo, hi = float(grid[-1]), float(grid[0])
    if not lo * (1 - _SPAN_ROUNDING) <= sigma <= hi * (1 + _SPAN_ROUNDING):
        raise DiffsampleError(f"sigma {sigma:g} outside the teacher's span [{lo:g}, {hi:g}]")
    sigma = min(max(sigma, lo), hi)  # a level set through exp(log σ_min) may lie an ulp outside
    hit = torch.nonzero(grid == sigma)
    if len(hit):
        return teacher.states[int(hit[0])].to(torch.float64)
    lam = -torch.log(grid)
    target = -math.log(sigma)
    i = int(torch.searchsorted(lam, torch.tensor(target, dtype=torch.float64)))
    lo = max(0, min(i - 2, len(lam) - 4))
    nodes = range(lo, min(lo + 4, len(lam)))
    out = torch.zeros_like(teacher.states[0], dtype=torch.float64)
    for a in nodes:
        w = 1.0
        for b in nodes:
            if b != a:
                w *= (target - float(lam[b])) / float(lam[a] - lam[b])
        out.add_(teacher.states[a].to(torch.float64), alpha=w)
    return out


def _design(basis: Sequence[torch.Tensor]) -> torch.Tensor:
    """The basis as the columns of a float64 matrix (one row per sample coordinate)."""
    return torch.stack([b.reshape(-1).to(torch.float64) for b in basis], 1)


def _solve(a: torch.Tensor, target: torch.Tensor, base: Sequence[float], ridge: float) -> list[float]:
    """The ridge least-squares weights of the columns of ``a`` (``x_0`` first, then model values) for ``target``,
    centred on ``base``; the ridge is raised tenfold while the model-value weights amplify more than
    :data:`AMPLIFICATION_LIMIT` allows (``base`` itself when nothing finite is within it)."""
    gram = a.T @ a
    rhs = a.T @ target.reshape(-1).to(torch.float64)
    scale = float(torch.trace(gram)) / len(gram)
    mu = (max(ridge, 0.0) + _JITTER) * scale
    w0 = torch.tensor(base, dtype=torch.float64)
    eye = torch.eye(len(gram), dtype=torch.float64)
    for _ in range(40):
        w = torch.linalg.solve(gram + mu * eye, rhs + mu * w0)
        if not bool(torch.isfinite(w).all()):
            break
        if _amplification(w.tolist()) <= AMPLIFICATION_LIMIT:
            return w.tolist()
        mu *= 10.0
    return list(base)


def _amplification(row: Sequence[float]) -> float:
    """``Σ_k |w_{k+1}|``: how much the row amplifies errors of the model values it combines."""
    return sum(abs(float(v)) for v in row[1:])


def amplification(weights: Sequence[Sequence[float]]) -> float:
    """The most any row of ``weights`` amplifies the model's errors (``max_j Σ_k |w_{j,k+1}|``, 0 for none)."""
    return max((_amplification(r) for r in weights), default=0.0)


def within_limit(weights: Sequence[Sequence[float]]) -> bool:
    """Whether no row of ``weights`` amplifies the model's errors beyond :data:`AMPLIFICATION_LIMIT`: the bound a
    fitted plan must keep. :func:`_solve` keeps each fitted row within it, but a row it cannot bring within keeps the
    walk's own weights, which on levels moved almost onto each other are large themselves, and the end-point
    refinement frees every weight at once: on the 2-D ring at NFE 20 the level search put two levels 0.1 % apart,
    the walk's own rows there amplified 143–225, and one of 512 fresh samples ended 1.18 from the ODE's end point
    (held-out error 5.5e-6 on 16 samples, issue #13 session 14)."""
    return amplification(weights) <= AMPLIFICATION_LIMIT


STEP_FIT_DATA_RATIO = 10
"""A step-by-step fit of rows of up to ``n + 1`` weights (``x_0`` and ``n`` model values) needs at least this many
fitted numbers (samples × coordinates) per weight: the rule of thumb of ten observations per parameter of a
regression (Harrell, *Regression Modeling Strategies*, 2015, §4.4); :func:`enough_data`. Issue #13 session 14, the
tuner on the 2-D ring (48 fit samples, 96 numbers): the plans fitted at NFE 15 / 20 (6.0 / 4.6 numbers per weight)
each sent one of 512 fresh samples 0.19–9.4 from the ODE's end point against a median error of 2e-5–9e-4, with
held-out errors of 5e-6–4e-5 on 16 samples. Session 15, automatic mode on the ring (16 calibration noises, 16
numbers per fold fit): at NFE 4 / 10 its weights ended 29 / 21 of 512 fresh samples more than ten times the median
error away (RMSE 0.20 / 0.040 against 0.065 / 0.012 without weights); with enough noises for this rule (50 / 110)
0.029 / 0.0027. A 64-D bed or an 8×8 network has 64 numbers per sample, so 16 noises hold the rule to NFE 50."""


def enough_data(numbers: int, calls: int) -> bool:
    """Whether ``numbers`` fitted numbers (samples × coordinates) are enough for a step-by-step fit of a walk of
    ``calls`` model calls: :data:`STEP_FIT_DATA_RATIO` per weight of its largest row, ``calls + 1``."""
    return int(numbers) >= STEP_FIT_DATA_RATIO * (int(calls) + 1)


@dataclass
class Fit:
    """Fitted weights, their end-point RMSE on the fitted samples and the model evaluations the fit spent."""

    weights: list[list[float]]
    error: float
    nfe: int


def fit_weights(
    denoiser: Denoiser, teacher: Teacher, c: Candidate, *, ridge: float = 0.0, base: list[list[float]] | None = None
) -> Fit:
    """Weights for the levels of ``c`` fitted step by step to ``teacher`` (module docstring, step 2), from the walk's
    own weights (:func:`weights_of`, or ``base`` when already computed): :func:`fit_level_weights` on ``c.walk()``."""
    return fit_level_weights(denoiser, teacher, c.walk(), base if base is not None else weights_of(c), ridge=ridge)


def fit_level_weights(
    denoiser: Denoiser,
    teacher: Teacher,
    levels: Sequence[float],
    base: Sequence[Sequence[float]],
    *,
    ridge: float = 0.0,
) -> Fit:
    """Weights for the walk on ``levels`` (ending at 0) fitted step by step to ``teacher`` (module docstring, step 2).

    Args:
        denoiser: the model (wrapped as the tuner's objective wraps it: guarded, in the work dtype).
        teacher: the teacher of the samples to fit; its span must hold every positive level.
        levels: the walk's levels, ``σ_max`` first, 0 last.
        base: the starting weights, one row per step (the walk's own solver's,
            :func:`diffsample.solvers.nonstationary.solver_weights`), the ridge's centre.
        ridge: relative ridge strength ``μ`` towards ``base`` (0: plain least squares).

    Returns:
        A :class:`Fit`: the fitted rows, the end-point RMSE they reach on the fitted samples (combined in float64)
        and the model evaluations spent per fit sample (``n``).
    """
    rows = [list(r) for r in base]
    walk = [float(v) for v in levels]
    dtype = work_dtype(teacher.start.dtype)
    guarded = GuardedDenoiser(denoiser, torch.tensor(walk, dtype=torch.float64), dtype)
    before = guarded.nfe
    x0 = teacher.start.to(dtype)
    basis: list[torch.Tensor] = [x0.to(torch.float64)]
    x_j = x0
    n = len(walk) - 1
    for j in range(n):
        d = guarded(x_j, torch.full((x0.shape[0],), walk[j], dtype=dtype))
        basis.append(d.to(torch.float64))
        target = teacher.final.to(torch.float64) if j == n - 1 else teacher_at(teacher, walk[j + 1])
        rows[j] = _solve(_design(basis), target, rows[j], ridge)
        nxt = weighted_sum(rows[j], basis)
        x_j = nxt.to(dtype) if j < n - 1 else nxt
    error = float((x_j - teacher.final.to(torch.float64)).square().mean().sqrt())
    return Fit(rows, error if math.isfinite(error) else math.inf, guarded.nfe - before)


@dataclass
class CrossValidation:
    """What K-fold cross-validation of fitted weights measured (:func:`cross_validate_weights`).

    ``errors`` maps each ridge to the pooled RMSE of the left-out folds, each walked with the weights fitted on the
    others; ``ridge`` is the best and ``error`` its RMSE; ``nfe`` the model evaluations spent per sample of the
    batch (each walk weighted by the share of the batch it walks)."""

    ridge: float
    error: float
    errors: dict[float, float]
    nfe: float


def cross_validate_weights(
    denoiser: Denoiser,
    teacher: Teacher,
    levels: Sequence[float],
    base: Sequence[Sequence[float]],
    *,
    ridges: Sequence[float] = WEIGHT_RIDGES,
    folds: int = 2,
) -> CrossValidation:
    """K-fold cross-validation of :func:`fit_level_weights` on ``teacher``'s batch, one score per ridge.

    The batch is cut into ``folds`` contiguous parts; for each ridge and part, weights are fitted on the other
    parts and the part is walked with them (:func:`diffsample.solvers.nonstationary.weighted_walk`, guarded as
    :func:`diffsample.sample` guards it); the squared end-point errors of all parts are pooled into one RMSE, an
    estimate of the error on noise the fit never saw that uses every sample once as held-out. A fit or walk that
    meets a non-finite model output scores ``inf``. Cost: ``2 · n`` evaluations per sample and ridge for 2 folds
    (every sample is fitted ``folds − 1`` times and walked once)."""
    batch = int(teacher.final.shape[0])
    if folds < 2 or batch < folds:
        raise DiffsampleError(f"cross-validation needs 2 <= folds <= batch size, got {folds} folds of {batch}")
    dtype = work_dtype(teacher.start.dtype)
    parts = torch.arange(batch).tensor_split(folds)
    n = len(levels) - 1
    errors: dict[float, float] = {}
    cost = 0.0
    for ridge in ridges:
        total = 0.0
        for part in parts:
            rest = torch.cat([p for p in parts if p is not part])
            spent: list[int] = []
            fit = None
            try:
                fit = fit_level_weights(denoiser, teacher_subset(teacher, rest), levels, base, ridge=ridge)
                out = _guarded_walk(denoiser, teacher.start[part].to(dtype), list(levels), fit.weights, spent)
                total += float((out.to(torch.float64) - teacher.final[part].to(torch.float64)).square().sum())
            except NonFiniteError:
                total = math.inf
            finally:  # a fit stopped by a non-finite output spent at most n calls
                cost += ((fit.nfe if fit is not None else n) * len(rest) + sum(spent) * len(part)) / batch
            if not math.isfinite(total):
                break
        err = math.sqrt(total / teacher.final.numel())
        errors[float(ridge)] = err if math.isfinite(err) else math.inf
    best = min(errors, key=lambda r: errors[r])
    return CrossValidation(best, errors[best], errors, cost)


def search_levels(
    denoiser: Denoiser,
    teacher: Teacher,
    c: Candidate,
    *,
    sigma_min: float,
    ridge: float = 0.0,
    delta: float = 0.25,
    delta_min: float = 1 / 64,
    max_fits: int | None = None,
    base_of: Callable[[Candidate], list[list[float]]] | None = None,
) -> tuple[Candidate, Fit, int]:
    """Move the free levels of ``c`` (all but ``σ_max``) to lower the error of the weights fitted on them.

    BNS optimises the levels with the weights; here a pattern search does it: one sweep moves each ``log σ_i`` by
    ``±δ`` (the moves of the tuner's search, :func:`.search.coordinate_search`) and keeps a move when the weights
    fitted on the new levels (:func:`fit_weights`, from the walk's own weights there) reach a lower end-point error
    on ``teacher``'s samples within :data:`AMPLIFICATION_LIMIT` (:func:`within_limit`); a sweep without improvement
    halves ``δ`` (``0.25`` down to ``delta_min``). No move brings two levels closer than ``delta_min`` in ``log σ``,
    the search's own resolution: the least-squares rows take the difference of two model values at almost the same
    level as a derivative and amplify it (on the 2-D ring at NFE 20 moves clamped 0.1 % from a neighbour made two such
    pairs, rows within :data:`AMPLIFICATION_LIMIT`, and one of 512 fresh samples ended 9.4 from the ODE's end point;
    issue #13 session 14). Each trial is one fit, ``n`` model calls of the samples; at most ``max_fits`` trials
    (default ``20·n``).

    ``base_of`` gives the starting weights (the ridge's centre) on a candidate's levels; by default the walk's own
    (:func:`weights_of`), for a registered solver's walk that solver's
    (:func:`diffsample.solvers.nonstationary.solver_weights`).

    Returns:
        The best levels (with ``c``'s choices), their fit, and the model evaluations spent per sample.
    """
    n = c.n_steps
    budget = 20 * n if max_fits is None else int(max_fits)
    start_of = base_of if base_of is not None else weights_of

    def fit_at(levels: Candidate) -> Fit:
        return fit_level_weights(denoiser, teacher, levels.walk(), start_of(levels), ridge=ridge)

    best, fit = c, fit_at(c)
    spent, trials, log_min = fit.nfe, 0, math.log(sigma_min)
    while delta >= delta_min and trials < budget:
        improved = False
        for i in range(1, n):
            for cand in level_moves(best, i, delta, log_min, min_gap=delta_min):
                if trials >= budget:
                    break
                try:
                    trial = fit_at(cand)
                except NonFiniteError:
                    continue
                finally:
                    trials += 1
                spent += trial.nfe
                if trial.error < fit.error and within_limit(trial.weights):
                    best, fit, improved = cand, trial, True
        if not improved:
            delta /= 2
    return best, fit, spent


class WeightsObjective:
    """The end-point RMSE against a teacher of the ``nonstationary`` walk with given weights on the levels of a
    candidate: the same guarded model calls and loop as :func:`diffsample.sample` with the plan, cost counted."""

    def __init__(self, denoiser: Denoiser, teacher: Teacher) -> None:
        self.denoiser = denoiser
        self.dtype = work_dtype(teacher.start.dtype)
        self.start = teacher.start.to(self.dtype)
        self.final = teacher.final.to(torch.float64)
        self.nfe = 0

    def __call__(self, c: Candidate, weights: list[list[float]]) -> float:
        spent: list[int] = []
        try:
            out = _guarded_walk(self.denoiser, self.start, c.walk(), weights, spent)
            err = float((out.to(torch.float64) - self.final).square().mean().sqrt())
        except NonFiniteError:
            err = math.inf
        finally:
            self.nfe += sum(spent)
        return err if math.isfinite(err) else math.inf


def _guarded_walk(
    denoiser: Denoiser,
    start: torch.Tensor,
    walk: list[float],
    rows: list[list[float]],
    spent: list[int],
    keep_basis: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The weighted walk from ``start`` (already in the work dtype) through the guarded model, as
    :func:`diffsample.sample` runs it; the model evaluations it spent (the wrapped model's running count) are
    appended to ``spent``, also when a non-finite model output stops it."""
    guarded = GuardedDenoiser(denoiser, torch.tensor(walk, dtype=torch.float64), start.dtype)
    before = guarded.nfe
    try:
        return weighted_walk(guarded, start, walk, rows, keep_basis=keep_basis)
    finally:
        spent.append(guarded.nfe - before)


def _project(
    denoiser: Denoiser, teacher: Teacher, walk: list[float], rows: list[list[float]], dtype: torch.dtype
) -> tuple[torch.Tensor, list[float], int]:
    """The end-point residual (flattened, float64) with the last row solved by least squares, that row, and the
    model evaluations spent (one walk of the rows that place the model calls)."""
    basis: list[torch.Tensor] = []
    spent: list[int] = []
    _guarded_walk(denoiser, teacher.start.to(dtype), walk, [*rows, [0.0] * (len(rows) + 2)], spent, basis)
    a = _design(basis)
    target = teacher.final.reshape(-1).to(torch.float64)
    last = _solve(a, target, [0.0] * len(basis), 0.0)
    return a @ torch.tensor(last, dtype=torch.float64) - target, last, spent[0]


def refine_weights(
    denoiser: Denoiser,
    teacher: Teacher,
    c: Candidate,
    weights: list[list[float]],
    *,
    iterations: int = 5,
    rel_step: float = 1e-3,
) -> Fit:
    """Minimise the end-point RMSE on ``teacher``'s samples over all the weights on the levels of ``c``, from
    ``weights`` (module docstring, step 4): at most ``iterations`` Levenberg–Marquardt steps on the rows that place
    the model calls (``(n−1)(n+2)/2`` numbers), the last row solved by least squares at every trial, forward
    differences of relative size ``rel_step``. Returns the best weights met (never worse than ``weights``' own)."""
    walk = c.walk()
    dtype = work_dtype(teacher.start.dtype)
    rows = [list(r) for r in weights[:-1]]
    sizes = [len(r) for r in rows]

    def unflatten(theta: torch.Tensor) -> list[list[float]]:
        out, k = [], 0
        for size in sizes:
            out.append(theta[k : k + size].tolist())
            k += size
        return out

    theta = torch.tensor([v for r in rows for v in r], dtype=torch.float64)
    r0, last, spent = _project(denoiser, teacher, walk, rows, dtype)
    f0 = float(r0.square().sum())
    damping = 1e-3
    for _ in range(max(0, iterations) if len(theta) else 0):
        jac = torch.empty(len(r0), len(theta), dtype=torch.float64)
        for k in range(len(theta)):
            step = rel_step * max(abs(float(theta[k])), 0.1)
            trial = theta.clone()
            trial[k] += step
            rk, _, cost = _project(denoiser, teacher, walk, unflatten(trial), dtype)
            spent += cost
            jac[:, k] = (rk - r0) / step
        gram, grad = jac.T @ jac, jac.T @ r0
        moved = False
        while damping < 1e8 and not moved:
            delta = torch.linalg.solve(gram + damping * torch.diag(torch.diag(gram) + 1e-30), -grad)
            try:
                r1, last1, cost = _project(denoiser, teacher, walk, unflatten(theta + delta), dtype)
            except NonFiniteError:
                damping *= 4
                continue
            spent += cost
            f1 = float(r1.square().sum())
            if math.isfinite(f1) and f1 < f0:
                theta, r0, f0, last, damping, moved = theta + delta, r1, f1, last1, damping / 3, True
            else:
                damping *= 4
        if not moved:
            break
    error = math.sqrt(f0 / max(1, len(r0)))
    return Fit([*unflatten(theta), last], error, spent)
