"""``diffsample.tune``: the best plan for a model and an NFE budget, found on a calibration batch.

Pipeline (each stage counted in model evaluations of the calibration batch and in wall time):

1. **Teacher** (:mod:`.teacher`): the PF-ODE from the calibration states solved by this library's own
   high-accuracy solver on a fine λ-uniform grid, kept at every level (≈ 477 evaluations by default).
2. **Schedules by dynamic programming** (:mod:`.dp`): GITS's additive local-cost programme (exact
   optimum of its surrogate, ``M`` evaluations) and OSS's propagated-state programme for a few uniform
   strategies (DDIM, DPM-Solver++(2M), order 3), each about ``n·M′`` evaluations on a sub-grid of
   ``M′`` levels; plus the hand-made log-SNR, Karras and KL-optimal schedules (log-SNR and KL-optimal also
   ending the trailing way, without a call at σ_min).
3. **Search** (:mod:`.search`): every starting schedule × a few uniform strategies is scored; the best
   ``refine`` distinct ones are refined by the coordinate search over per-step choices and ``log σ``,
   then ``kicks`` rounds of iterated local search start from the best.
4. **Selection on held-out noise** (``holdout``, a quarter of the calibration batch by default): stages 2–3 see
   only the other samples. The search's results (best start, each refined optimum, and the iterated search's
   incumbent with the lowest held-out error; that search also stops once ``patience`` new incumbents in a row
   did not lower the held-out error) are scored on the held-out samples. The hand-made candidates
   (:func:`hand_made_candidates`: six published solvers on the schedules of :data:`HAND_SCHEDULES`) and the
   library's own solvers on hand-made steps (:mod:`.library`: iPNDM, UniPC, DEIS, DPM-Solver(++) 2M/3M, … on
   log-SNR, Karras, KL-optimal and, for a model with a time, uniform-time steps; 60–77 walks) are fitted to no
   sample, so the best of each is the one with the lowest error over the whole calibration batch (held-out noise
   for them, four times the held-out quarter). The plan is the best search result on the held-out samples, or the
   best hand-made configuration when that is at least as good there, or the best library one when that leads by
   more than :data:`.library.LIBRARY_MARGIN` (on the held-out samples against a search result, over the whole batch
   against a hand-made walk; ``fallback``; a library one is then run by name), so the plan is never worse on
   held-out noise than the hand-made configuration chosen, nor more than 5 % worse than the library one. This is
   validation-set model selection and early stopping (e.g. Prechelt 1998, "Early stopping — but when?"): the
   search can fit the calibration batch's particular trajectories (its error there falls while the error on other
   noise rises); held-out samples measure what carries over.
5. **Fitted weights** (:mod:`.weights`): on the chosen levels the walk is rewritten as a non-stationary linear
   solver (BNS, Shaul et al. 2024: each state a weighted sum of the start and every model value so far) and its
   weights are fitted to the teacher step by step by least squares on the fit samples (D-ODE, Kim et al. 2024),
   from the chosen walk, the best hand-made one and the best library one, at the ridge strengths
   :data:`.weights.WEIGHT_RIDGES`.
   The best fit on held-out noise then has its levels moved with the weights (:func:`.weights.search_levels`) and
   its end-point error minimised over all weights (BNS's objective, :func:`.weights.refine_weights`; only with
   :data:`REFINE_DATA_RATIO` fitted numbers per weight), each step kept only if it lowers the held-out error. The
   result replaces the chosen walk only if it lowers the held-out error (the plan then runs the ``nonstationary``
   solver), so the rule of stage 4 still holds. It needs held-out samples and
   :data:`.weights.STEP_FIT_DATA_RATIO` fitted numbers per weight of its largest row, and keeps no rows that
   amplify the model's errors beyond :data:`.weights.AMPLIFICATION_LIMIT`.
6. **Refit on the whole batch** (``refit``): once held-out noise has chosen fitted weights, their end-point error
   is minimised over every calibration sample, the held-out quarter included (:func:`.weights.refine_weights`
   from the chosen weights, where the stage-5 refinement's data rule holds): validation chooses the model, then the
   chosen model is re-estimated on all the data (as cross-validated model selection with a final refit does).
   Kept only if the batch error falls, no row exceeds the amplification limit and, on the held-out samples, the
   plan still does not trail the best hand-made walk. The provenance's ``heldout_error`` stays that of the weights
   the held-out samples chose (the last unbiased figure); ``weights.refit`` records the batch errors before and
   after. Only for plans of at most :data:`REFIT_MAX_CALLS` calls: measured on fresh noise (issue #13, session 15),
   on the 8×8 and 16×16 digits networks at NFE 4–6 the refit lowered the plan's error in 44 of 51 cells (e.g.
   ``digits_uncond`` NFE 4 0.0706 → 0.0625), at NFE 8 it raised it in the 3 cells compared (10–30 %).

Cost and scaling: the model sees ``teacher_nfe + M′ + S_dp·n·M′ + N_search`` evaluations of the calibration
batch (``M′ = M/dp_stride`` DP levels, ``S_dp = 3`` DP strategies). With the defaults the search makes
``E ≈ 360·n`` runs, and as each run restarts from the first step it changes (:class:`.search.Objective`)
it costs about ``n/2`` calls, so ``N_search ≈ 180·n²``: measured 3.8k (n = 4) to 20k (n = 10) NFE per
calibration sample in all, teacher (477) and programmes (at most ``M′ + 3·n·M′``) included. The fitted weights
(stage 5) add ``n`` calls per fit, at most ``6 + 20·n`` fits, and ``≈ n³/2`` calls per refinement iteration (five
at most); ``stages.weights_nfe`` records them, ``stages.refit_nfe`` the refit's (one more refinement, of the whole
batch). Everything else is
``O(n·M′²)`` scalar and small tensor arithmetic. The wall time is therefore that NFE times the cost of one
model call on the calibration batch: linear in the model's cost and in the batch size ``B``, quadratic in
``n``. On the CPU test beds (B = 256) it is seconds to minutes per budget; for a network, count a call of
the batch (chunked by ``max_rows``) and multiply. :attr:`Plan.provenance` records the exact figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import steps
from ..contracts import Denoiser
from ..denoisers import CallCounter, as_denoiser
from ..errors import BudgetError, DiffsampleError, NonFiniteError, ShapeError
from ..model_family import noise_schedule_of
from ..solvers.nonstationary import solver_weights
from .dp import Evaluator, gits_costs, min_cost_path, propagated_dp
from .library import LIBRARY_MARGIN, LibraryConfig, LibraryScore, best_library_config, library_configs
from .plan import Plan
from .provenance import library_version, model_name
from .search import (
    STARTING_STRATEGIES,
    STRATEGY_NAMES,
    Candidate,
    Choice,
    Objective,
    canonical,
    coordinate_search,
    iterated_search,
    plan_options_of,
    pooled_rmse,
    starting_points,
)
from .teacher import Teacher, teacher_subset, teacher_trajectory
from .weights import (
    STEP_FIT_DATA_RATIO,
    WEIGHT_RIDGES,
    WeightsObjective,
    amplification,
    enough_data,
    fit_weights,
    refine_weights,
    search_levels,
    weights_of,
    within_limit,
)

__all__ = ["DP_STRATEGIES", "HAND_SCHEDULES", "hand_made_candidates", "held_out_count", "split_teacher", "tune"]

DP_STRATEGIES: tuple[Choice, ...] = (Choice("data", 1), Choice("data", 2), Choice("data", 3))
"""Uniform strategies for which the propagated-state programme is run."""


def tune(
    denoiser: Denoiser,
    *,
    nfe: int,
    sigma_min: float,
    sigma_max: float,
    calibration: torch.Tensor,
    model_id: str | None = None,
    teacher: Teacher | None = None,
    teacher_levels: int = 120,
    teacher_substeps: int = 4,
    dp_stride: int = 2,
    refine: int = 2,
    max_evals: int | None = None,
    kicks: int = 8,
    kick_evals: int | None = None,
    seed: int = 0,
    max_rows: int = 8192,
    holdout: float = 0.25,
    patience: int = 2,
    fit_solver_weights: bool = True,
    refit: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Plan:
    """Tune noise levels and per-step solver choices for ``denoiser`` at a budget of ``nfe`` evaluations.

    Args:
        denoiser: a σ-space denoiser (test bed or network); a guided denoiser costing 2 per call gets
            ``nfe // 2`` calls.
        nfe: the budget in model evaluations per sample; the plan never spends more.
        sigma_min, sigma_max: the span: the walk starts at ``sigma_max``, its lowest positive level lies
            in ``[sigma_min, sigma_max)``, and it ends at 0.
        calibration: states at ``sigma_max``, shape ``(B, …)`` (e.g. ``sigma_max · z``); use other noises
            than those you evaluate the plan on.
        model_id: a label for the plan's provenance (default: the denoiser's ``name`` or class name).
        teacher: a precomputed :class:`Teacher` for ``calibration`` (else one is solved here).
        teacher_levels, teacher_substeps: the teacher's fine grid (:func:`teacher_trajectory`).
        dp_stride: the dynamic programmes use every ``dp_stride``-th fine level.
        refine: how many of the best distinct starting points the coordinate search refines.
        max_evals: search runs allowed per refined starting point (default ``60·n`` for ``n`` model calls).
        kicks, kick_evals: restarts of the iterated local search from the best point, and runs per restart
            (default ``30·n``).
        seed: the iterated search's random seed (the whole tuning is deterministic).
        max_rows: most samples per model call in the batched stages.
        holdout: the fraction of the calibration batch held out (its last samples): the search fits the rest,
            and the plan is the search result with the lowest error on the held-out part, or the best
            hand-made candidate (:func:`hand_made_candidates`, best over the whole batch, which none of them was
            fitted to) when that is at least as good there, or the best library configuration (:mod:`.library`,
            likewise) when that leads by more than ``LIBRARY_MARGIN``. 0 selects on the calibration error.
        patience: the iterated search stops once this many of its new incumbents in a row did not lower the
            held-out error.
        fit_solver_weights: run the fitted-weights stage (stage 5 of the module docstring).
        refit: once held-out noise has chosen fitted weights, minimise their end-point error on the whole
            calibration batch (stage 6 of the module docstring; plans of at most ``REFIT_MAX_CALLS`` calls).
        progress: called with one line per stage.

    Returns:
        A :class:`Plan` (solver ``"plan"``, ``"nonstationary"`` when fitted weights won on held-out noise, or a
        library solver's name when that configuration did, :mod:`.library`) whose provenance records the model
        id, budget, calibration size, end-point RMSE vs the teacher (``error`` on the whole batch, ``fit_error``
        and ``heldout_error`` on its two parts), how it was selected (``selected_by``, ``stopped_early``,
        ``fallback``, ``hand_made_best``, ``library_best``, ``weights``: the fitted-weights stage's outcome), the
        teacher's NFE and method, and the tuning cost: wall time, ``tuning_nfe`` (model evaluations per
        calibration sample) and ``tuning_model_calls`` (batched denoiser calls).
    """
    t_start = time.perf_counter()
    den = as_denoiser(denoiser)
    own = CallCounter(den)  # the tuning's own NFE, whatever other threads do with the same model
    if not isinstance(calibration, torch.Tensor) or calibration.dim() < 1 or calibration.shape[0] < 1:
        raise ShapeError("calibration must be a tensor of states at sigma_max with shape (B, …)")
    if int(nfe) != nfe or nfe < 1:
        raise BudgetError(f"nfe must be a positive integer number of model evaluations, got {nfe!r}")
    per_call = int(getattr(den, "nfe_per_call", 1))
    n = int(nfe) // per_call
    if n < 1:
        raise BudgetError(f"a budget of {nfe} evaluations buys no call of a denoiser costing {per_call} each")
    sigma_min, sigma_max = float(sigma_min), float(sigma_max)
    if not 0 < sigma_min < sigma_max:
        raise DiffsampleError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    log = progress or (lambda _msg: None)
    max_evals = 60 * n if max_evals is None else int(max_evals)
    kick_evals = 30 * n if kick_evals is None else int(kick_evals)

    t0 = time.perf_counter()
    if teacher is None:
        teacher = teacher_trajectory(
            own, calibration, sigma_min=sigma_min, sigma_max=sigma_max, levels=teacher_levels, substeps=teacher_substeps
        )
    elif not torch.equal(teacher.start, calibration.to(teacher.start.dtype)):
        raise DiffsampleError("the teacher given was not solved from this calibration batch")
    teacher_seconds = time.perf_counter() - t0
    log(f"teacher: {teacher.nfe} NFE, {teacher_seconds:.1f}s ({teacher.method})")

    batch = calibration.shape[0]
    held = held_out_count(batch, holdout)
    fit_teacher, held_teacher = split_teacher(teacher, batch - held)
    fit = batch - held
    sub = Teacher(
        fit_teacher.grid[::dp_stride], fit_teacher.states[::dp_stride], fit_teacher.final, teacher.nfe, teacher.method
    )
    if float(sub.grid[-1]) != teacher.sigma_min:  # keep σ_min among the DP levels
        sub = Teacher(
            torch.cat([sub.grid, fit_teacher.grid[-1:]]),
            torch.cat([sub.states, fit_teacher.states[-1:]]),
            fit_teacher.final,
            teacher.nfe,
            teacher.method,
        )
    evaluate = Evaluator(own, fit, max_rows)
    schedules: list[list[float]] = []
    t0 = time.perf_counter()
    if n <= len(sub.grid):
        grid = sub.grid.tolist()
        path, _ = min_cost_path(gits_costs(sub, evaluate), n)
        schedules.append([grid[i] for i in path[:-1]])
        for strategy in DP_STRATEGIES:
            res = propagated_dp(
                sub, evaluate, n, prediction=strategy.prediction, order=strategy.order, variant=strategy.variant
            )
            schedules.append(res.sigmas)
    hand = hand_made_candidates(n, sigma_min, sigma_max)
    schedules += [list(c.sigmas) for c in hand[:: len(STARTING_STRATEGIES)]]
    dp_seconds = time.perf_counter() - t0
    log(f"dynamic programmes: {len(schedules)} schedules, {evaluate.nfe:.0f} NFE, {dp_seconds:.1f}s")

    objective = Objective(own, fit_teacher)
    validate = Objective(own, held_teacher) if held else None
    t0 = time.perf_counter()
    scored: dict[Candidate, float] = {}
    for cand in starting_points(schedules, STARTING_STRATEGIES):
        scored.setdefault(canonical(cand), objective(cand))
    starts = sorted(scored.items(), key=lambda kv: kv[1])
    log(f"starting points: best {starts[0][1]:.5g} of {len(starts)}")
    best: tuple[float, Candidate] = (starts[0][1], starts[0][0])
    pool: list[Candidate] = [starts[0][0]]  # the search's results, from which held-out noise selects
    refined: set[Candidate] = set()
    for cand, err0 in starts:  # starts that end in an optimum already found do not count
        if len(refined) >= max(1, refine) or not math.isfinite(err0):
            break
        res = coordinate_search(objective, cand, sigma_min=sigma_min, max_evals=max_evals)
        log(f"search from {err0:.5g}: {res.error:.5g} ({res.evals} runs, {res.sweeps} sweeps)")
        refined.add(res.best)
        pool.append(res.best)
        if res.error < best[0]:
            best = (res.error, res.best)
    stopped_early = False
    if kicks > 0 and math.isfinite(best[0]):
        res = iterated_search(
            objective,
            best[1],
            sigma_min=sigma_min,
            kicks=kicks,
            kick_evals=kick_evals,
            seed=seed,
            progress=progress,
            validate=validate,
            patience=patience,
        )
        stopped_early = res.stopped_early
        log(f"iterated search: {res.error:.5g} ({res.evals} runs{', stopped on held-out error' * stopped_early})")
        pool.append(res.best if res.held_best is None else res.held_best)
        if res.error < best[0]:
            best = (res.error, res.best)
    if not math.isfinite(best[0]):
        raise DiffsampleError("tuning failed: every candidate walk diverged on the calibration batch")
    selection = _select(pool, hand, objective, validate)
    library = library_configs(n, sigma_min, sigma_max, noise_schedule_of(denoiser))
    lib = best_library_config(own, [fit_teacher, held_teacher] if held else [fit_teacher], library)
    lib_best = lib.config
    if lib_best is not None and _library_leads(lib, selection, held):
        selection.use_library(lib_best, lib.part_errors[0], lib.part_errors[-1] if held else math.inf)
    search_seconds = time.perf_counter() - t0
    cand = selection.chosen
    log(f"selected: {selection.describe()}")
    fitted, weights_seconds = None, 0.0
    weights_data = fit_teacher.final.numel()  # the numbers each step's fit matches (fit samples × coordinates)
    if fit_solver_weights and held and enough_data(weights_data, n):
        t0 = time.perf_counter()
        fitted = _fit_stage(own, fit_teacher, held_teacher, selection, hand, sigma_min, lib_best)
        weights_seconds = time.perf_counter() - t0
        log(f"fitted weights: {fitted.describe()} ({weights_seconds:.1f}s)")
        if fitted.kept:
            selection.fit_error, selection.held_error = fitted.fit_error, fitted.held_error
    refitted = None
    if (
        refit
        and n <= REFIT_MAX_CALLS
        and fitted is not None
        and fitted.kept
        and _refinable(fit_teacher, fitted.weights)
    ):
        t0 = time.perf_counter()
        refitted = _refit(own, teacher, held_teacher, fitted, selection.hand_held_error)
        weights_seconds += time.perf_counter() - t0
        log(f"refit on the whole batch: {refitted.describe()}")

    fit_nfe = evaluate.nfe + objective.nfe + (fitted.fit_nfe if fitted else 0)
    held_nfe = (validate.nfe if validate is not None else 0) + (fitted.held_nfe if fitted else 0)
    library_nfe = lib.nfe  # the library pool's walks, each of the whole batch
    refit_nfe = refitted.nfe if refitted else 0.0  # walks of the whole batch
    tuning_nfe = teacher.nfe + (fit_nfe * fit + held_nfe * held) / batch + library_nfe + refit_nfe
    provenance = {
        "model": model_name(den, model_id),
        "nfe": int(nfe),
        "model_calls": n,
        "sigma_min": sigma_min,
        "sigma_max": sigma_max,
        "calibration_size": batch,
        "sample_shape": list(calibration.shape[1:]),
        "error": refitted.error if refitted and refitted.kept else selection.batch_error(fit, held),
        "error_metric": "RMSE at sigma = 0 against the teacher on the calibration batch",
        "fit_size": fit,
        "fit_error": selection.fit_error,
        "heldout_size": held,
        "heldout_error": selection.held_error if held else None,
        "selected_by": "held-out error" if held else "calibration error",
        "stopped_early": stopped_early,
        "fallback": selection.fallback,
        "hand_made_best": selection.hand_summary(),
        "library_best": {
            "config": lib_best.label if lib_best is not None else None,
            "calibration_error": _finite(lib.error),
            "fit_error": _finite(lib.part_errors[0]),
            "heldout_error": _finite(lib.part_errors[-1]) if held else None,
            "considered": len(library),
        },
        "weights": (fitted.summary() | {"refit": refitted.summary() if refitted else None})
        if fitted
        else _weights_skipped(fit_solver_weights, held, weights_data, n),
        "teacher_nfe": teacher.nfe,
        "teacher_method": teacher.method,
        "tuning_nfe": round(tuning_nfe, 3),
        "tuning_model_calls": own.calls,
        "tuning_seconds": round(time.perf_counter() - t_start, 3),
        "stages": {
            "teacher_seconds": round(teacher_seconds, 3),
            "dp_nfe": round(evaluate.nfe, 3),
            "dp_seconds": round(dp_seconds, 3),
            "search_runs": objective.evals,
            "search_nfe": objective.nfe,
            "heldout_runs": validate.evals if validate is not None else 0,
            "heldout_nfe": held_nfe,
            "search_seconds": round(search_seconds, 3),
            "library_nfe": round(library_nfe, 3),
            "weights_nfe": fitted.fit_nfe if fitted else 0,
            "refit_nfe": round(refit_nfe, 3),
            "weights_seconds": round(weights_seconds, 3),
        },
        "library": library_version(),
    }
    if fitted is not None and fitted.kept:
        weights = refitted.weights if refitted is not None and refitted.kept else fitted.weights
        return Plan(fitted.candidate.walk(), "nonstationary", {"weights": weights}, provenance)
    if selection.library is not None:
        return Plan(list(selection.library.walk), selection.library.solver, {}, provenance)
    return Plan(cand.walk(), "plan", plan_options_of(cand), provenance)


HAND_SCHEDULES: tuple[str, ...] = ("logsnr", "karras", "kl_optimal", "logsnr+trailing", "kl_optimal+trailing")
"""The hand-made step schedules the tuner starts from and falls back to (KL-optimal: Sabour et al. 2024's
``σ = tan`` of uniform ``arctan σ``, the low-budget winner of the defaults' selection; ``+trailing``: the same
ending without a call at σ_min, :data:`diffsample.steps.TRAILING`, the small-budget winners on networks)."""


def hand_made_candidates(n: int, sigma_min: float, sigma_max: float) -> list[Candidate]:
    """The hand-made configurations the tuner considers: every published strategy of
    :data:`~.search.STARTING_STRATEGIES` on every schedule of :data:`HAND_SCHEDULES` (schedule-major order)."""
    if n == 1:
        levels = [[sigma_max]]
    else:
        levels = [steps.get(name)(n, sigma_min, sigma_max, append_zero=False).tolist() for name in HAND_SCHEDULES]
    return [canonical(c) for c in starting_points(levels, STARTING_STRATEGIES)]


def hand_made_label(c: Candidate, index: int) -> str:
    """``"<solver> on <schedule>"`` for the ``index``-th entry of :func:`hand_made_candidates`."""
    schedule = HAND_SCHEDULES[index // len(STARTING_STRATEGIES)] if c.n_steps > 1 else "one step"
    return f"{STRATEGY_NAMES[STARTING_STRATEGIES[index % len(STARTING_STRATEGIES)]]} on {schedule}"


def held_out_count(batch: int, holdout: float) -> int:
    """Samples of a calibration batch of ``batch`` held out for selection: ``round(holdout · batch)``, at least
    one and leaving at least one to fit (none when ``holdout`` is 0 or the batch has one sample)."""
    if not 0 <= holdout < 1:
        raise DiffsampleError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    if holdout == 0 or batch < 2:
        return 0
    return min(max(1, round(holdout * batch)), batch - 1)


def split_teacher(teacher: Teacher, fit: int) -> tuple[Teacher, Teacher]:
    """The teacher of the first ``fit`` calibration samples and that of the rest (the held-out part)."""
    batch = torch.arange(teacher.final.shape[0])
    return teacher_subset(teacher, batch[:fit]), teacher_subset(teacher, batch[fit:])


@dataclass
class Selection:
    """The plan chosen from the search's results and the hand-made candidates, with the errors behind the choice."""

    chosen: Candidate
    fit_error: float
    held_error: float
    fallback: bool
    hand_label: str
    hand_fit_error: float
    hand_held_error: float
    hand_error: float  # the best hand-made walk's RMSE over the whole batch, which chose it
    hand: Candidate | None = None
    library: LibraryConfig | None = None

    def use_library(self, config: LibraryConfig, fit_error: float, held_error: float) -> None:
        """Make the library configuration ``config`` the plan (it led the selected walk by more than
        :data:`.library.LIBRARY_MARGIN`, :func:`_library_leads`)."""
        self.chosen, self.library, self.fallback = config.candidate(), config, True
        self.fit_error, self.held_error = fit_error, held_error

    def batch_error(self, fit: int, held: int) -> float:
        """The RMSE over the whole calibration batch (fit and held-out parts pooled)."""
        if not held:
            return self.fit_error
        return pooled_rmse((self.fit_error, self.held_error), (fit, held))

    def hand_summary(self) -> dict[str, object]:
        return {
            "config": self.hand_label,
            "calibration_error": _finite(self.hand_error),
            "fit_error": self.hand_fit_error,
            "heldout_error": _finite(self.hand_held_error),
        }

    @property
    def label(self) -> str:
        """What the chosen walk is: ``"tuned"``, or the hand-made or library configuration it fell back to."""
        if self.library is not None:
            return f"library {self.library.label}"
        return f"hand-made {self.hand_label}" if self.fallback else "tuned"

    def describe(self) -> str:
        which = f"{self.label} (fallback)" if self.fallback else "tuned"
        return f"{which}, fit {self.fit_error:.5g}, held-out {self.held_error:.5g}"


def _select(
    pool: list[Candidate], hand: list[Candidate], objective: Objective, validate: Objective | None
) -> Selection:
    """The search result with the lowest held-out error, unless the best hand-made candidate is at least as good
    there (then that one: the plan is never worse on held-out noise than the hand-made configuration chosen).

    The search fitted its results to the fit samples, so only the held-out ones measure them; a hand-made walk is
    fitted to no sample, so the whole batch measures it, and the best hand-made candidate is the one with the lowest
    RMSE over the whole batch (four times the held-out quarter's samples: on the mode-lottery beds the best of 30 on
    16 samples was a walk twice the best one's error on fresh noise, issue #13 session 13). Without held-out samples:
    the lowest calibration error, the same fallback rule on it."""
    score = validate if validate is not None else objective
    parts = [o for o in (objective, validate) if o is not None]
    sizes = [int(o.teacher.final.shape[0]) for o in parts]

    def whole(c: Candidate) -> float:  # an unfitted walk's error on every calibration sample
        return pooled_rmse([o(c) for o in parts], sizes)

    tuned = min(pool, key=lambda c: (score(c), objective(c)))
    k = min(range(len(hand)), key=lambda i: (whole(hand[i]), score(hand[i])))
    fallback = score(hand[k]) <= score(tuned) and canonical(hand[k]) != canonical(tuned)
    chosen = hand[k] if fallback else tuned
    held = validate(chosen) if validate is not None else math.inf
    return Selection(
        chosen,
        objective(chosen),
        held,
        fallback,
        hand_made_label(hand[k], k),
        objective(hand[k]),
        validate(hand[k]) if validate is not None else math.inf,
        whole(hand[k]),
        hand[k],
    )


def _library_leads(lib: LibraryScore, selection: Selection, held: int) -> bool:
    """Whether the best library configuration replaces the selected walk: it must lead by more than
    :data:`.library.LIBRARY_MARGIN` on the samples neither was fitted to: the held-out ones against a searched walk,
    the whole batch against a hand-made one (a fallback); without held-out samples, on the calibration error."""
    keep = 1 - LIBRARY_MARGIN
    if not held:
        return lib.error < keep * selection.fit_error
    if selection.fallback:
        return lib.error < keep * selection.hand_error
    return lib.part_errors[-1] < keep * selection.held_error


def _finite(value: float) -> float | None:
    """``value``, or ``None`` (JSON's null) where it is not finite."""
    return value if math.isfinite(value) else None


@dataclass
class FittedWeights:
    """The fitted-weights stage's outcome: the best fit on held-out noise and whether it replaced the chosen walk."""

    candidate: Candidate
    weights: list[list[float]]
    base: str
    ridge: float
    fit_error: float
    held_error: float
    held_error_before: float
    kept: bool
    fits: int
    fit_nfe: float
    held_nfe: float

    def summary(self) -> dict[str, object]:
        return {
            "fitted": self.kept,
            "base": self.base,
            "ridge": self.ridge,
            "fit_error": self.fit_error,
            "heldout_error": self.held_error if math.isfinite(self.held_error) else None,
            "heldout_error_before": self.held_error_before,
            "fits": self.fits,
            "amplification": amplification(self.weights),
            "method": "non-stationary solver weights (BNS form) fitted step by step to the teacher (least squares)",
        }

    def describe(self) -> str:
        verdict = "kept" if self.kept else "not kept"
        return (
            f"{verdict}, best on {self.base} (ridge {self.ridge:g}): held-out {self.held_error:.5g} "
            f"vs {self.held_error_before:.5g}"
        )


def _weights_skipped(enabled: bool, held: int, data: int, n: int) -> dict[str, object]:
    """The provenance of a fitted-weights stage that did not run, and why."""
    if not enabled:
        why = "off"
    elif not held:
        why = "no held-out samples"
    else:
        why = f"{data} fitted numbers for rows of {n + 1} weights, fewer than {STEP_FIT_DATA_RATIO} per weight"
    return {"fitted": False, "why": why}


REFINE_DATA_RATIO = 50
"""The end-point refinement of the weights runs only with at least this many fitted numbers (samples × coordinates)
per weight it frees, ``(n−1)(n+2)/2``: on the 2-D ring with 48 fit samples it lowered the held-out error of NFE 5 by
a fifth while a few of 64 fresh samples ended 0.1 away (60× the step-by-step fit's error); on the 64-D digits
networks (3 072 numbers, so up to NFE 10) and 256-D ones (to NFE 21) it carried over to fresh noise."""


REFIT_MAX_CALLS = 6
"""The refit (stage 6) runs on plans of at most this many model calls. Measured on the digits networks (issue #13,
session 15; 64 noises the tuning never saw, against the same tuning without the refit): at NFE 4–6 (9–20 weights
freed) the refit lowered the plan's error in 44 of 51 cells (geometric mean 0.94×, 0.83–1.016×); at NFE 8 (35
weights) it raised it in the 3 cells compared head to head, by 10 %, 23 % and 30 % (`digits_uncond`, `digits16_flow`,
`digits16_uncond_sd_small`), while the batch error fell by 2–3 %: with more freed weights the extra quarter of the
batch buys a closer fit to it, not to fresh noise. The bound follows the budget ranges of the default tables
(NFE 4–6)."""


def _refinable(fit_teacher: Teacher, weights: list[list[float]]) -> bool:
    """Whether the fit samples hold :data:`REFINE_DATA_RATIO` numbers per weight the end-point refinement frees
    (every row but the last, which it solves by least squares)."""
    return fit_teacher.final.numel() >= REFINE_DATA_RATIO * sum(len(r) for r in weights[:-1])


@dataclass
class Refit:
    """Stage 6's outcome: the chosen weights' end-point error minimised on the whole calibration batch."""

    weights: list[list[float]]
    kept: bool
    error_before: float
    error: float
    held_error: float
    nfe: float
    why: str

    def summary(self) -> dict[str, object]:
        return {
            "kept": self.kept,
            "calibration_error_before": self.error_before,
            "calibration_error": self.error,
            "heldout_error_seen": _finite(self.held_error),
            "why": self.why,
            "method": "end-point refinement (Levenberg-Marquardt) of the chosen weights on every calibration sample",
        }

    def describe(self) -> str:
        verdict = "kept" if self.kept else f"not kept ({self.why})"
        return f"{verdict}: calibration error {self.error_before:.5g} -> {self.error:.5g}"


def _refit(
    denoiser: Denoiser, teacher: Teacher, held_teacher: Teacher, fitted: FittedWeights, hand_held_error: float
) -> Refit:
    """Stage 6 (module docstring): the weights held-out noise chose, their end-point error minimised over every
    calibration sample, the held-out ones included (:func:`.weights.refine_weights`): selection on held-out noise,
    then the chosen model re-estimated on all the data. Kept only if the rows stay within
    :data:`.weights.AMPLIFICATION_LIMIT`, the batch error falls, and on the held-out samples the plan still does not
    trail the best hand-made walk (the stage-4 rule, now on samples the refit saw)."""
    whole = WeightsObjective(denoiser, teacher)
    before = whole(fitted.candidate, fitted.weights)
    try:
        fit = refine_weights(denoiser, teacher, fitted.candidate, fitted.weights)
    except NonFiniteError:
        return Refit(fitted.weights, False, before, before, math.inf, whole.nfe, "a non-finite model output")
    nfe = whole.nfe + fit.nfe
    held = WeightsObjective(denoiser, held_teacher)
    held_error = held(fitted.candidate, fit.weights)
    nfe += held.nfe * held_teacher.final.shape[0] / teacher.final.shape[0]
    if not within_limit(fit.weights):
        why = "rows beyond the amplification limit"
    elif not fit.error < before:
        why = "no lower calibration error"
    elif held_error > hand_held_error:
        why = "the held-out samples trail the best hand-made walk"
    else:
        return Refit(fit.weights, True, before, fit.error, held_error, nfe, "")
    return Refit(fitted.weights, False, before, fit.error, held_error, nfe, why)


def _fit_stage(
    denoiser: Denoiser,
    fit_teacher: Teacher,
    held_teacher: Teacher,
    selection: Selection,
    hand: list[Candidate],
    sigma_min: float,
    library: LibraryConfig | None = None,
) -> FittedWeights:
    """Stage 5 (module docstring): weights fitted on the fit samples from the chosen walk, from the best hand-made
    one and from the best library configuration (:mod:`.library`), at each of :data:`WEIGHT_RIDGES`; the levels of
    the best on the held-out samples are then moved with the weights (:func:`.weights.search_levels`). The best on
    held-out noise is kept if it lowers the error there below the chosen walk's. No weights whose rows amplify the
    model's errors beyond :data:`.weights.AMPLIFICATION_LIMIT` are considered (:func:`.weights.within_limit`): 16
    held-out samples cannot show the rare sample such rows send far off."""

    plan_base = weights_of

    def library_base(solver: str) -> Callable[[Candidate], list[list[float]]]:
        return lambda c: solver_weights(solver, c.walk())

    chosen_base = library_base(selection.library.solver) if selection.library is not None else plan_base
    bases = [(selection.chosen, selection.label, chosen_base)]
    if selection.hand is not None and canonical(selection.hand) != canonical(selection.chosen):
        bases.append((selection.hand, "hand-made " + selection.hand_label, plan_base))
    if library is not None and library is not selection.library:
        bases.append((library.candidate(), f"library {library.label}", library_base(library.solver)))
    held = WeightsObjective(denoiser, held_teacher)

    def held_within(c: Candidate, weights: list[list[float]]) -> float:  # inf for rows beyond the bound
        return held(c, weights) if within_limit(weights) else math.inf

    fit_nfe, fits, best = 0.0, 0, None
    for cand, label, base_of in bases:
        start = base_of(cand)
        for ridge in WEIGHT_RIDGES:
            try:
                fit = fit_weights(denoiser, fit_teacher, cand, ridge=ridge, base=start)
            except NonFiniteError:
                continue
            fit_nfe, fits = fit_nfe + fit.nfe, fits + 1
            if not within_limit(fit.weights):  # a row kept the walk's own weights, which amplify beyond the bound
                continue
            err = held(cand, fit.weights)
            if best is None or err < best[0]:
                best = (err, cand, fit, label, ridge, base_of)
    if best is None:
        return FittedWeights(
            selection.chosen, [], "none", 0.0, math.inf, math.inf, selection.held_error, False, 0, fit_nfe, held.nfe
        )
    err, cand, fit, label, ridge, base_of = best
    moved, moved_fit, spent = search_levels(
        denoiser, fit_teacher, cand, sigma_min=sigma_min, ridge=ridge, base_of=base_of
    )
    fit_nfe += spent
    moved_err = held_within(moved, moved_fit.weights)
    if moved_err < err:
        err, cand, fit, label = moved_err, moved, moved_fit, label + ", levels moved"
    refined = None
    if _refinable(fit_teacher, fit.weights):
        try:
            refined = refine_weights(denoiser, fit_teacher, cand, fit.weights)
        except NonFiniteError:
            refined = None
    if refined is not None:
        fit_nfe += refined.nfe
        refined_err = held_within(cand, refined.weights)
        if refined_err < err:
            err, fit, label = refined_err, refined, label + ", end point refined"
    kept = err < selection.held_error
    fit_error = fit.error
    if kept:  # the plan's own walk on the fit samples (the fits combine in float64)
        on_fit = WeightsObjective(denoiser, fit_teacher)
        fit_error = on_fit(cand, fit.weights)
        fit_nfe += on_fit.nfe
    return FittedWeights(
        cand, fit.weights, label, ridge, fit_error, err, selection.held_error, kept, fits, fit_nfe, held.nfe
    )


def evaluate_plan(denoiser: Denoiser, plan: Plan, x: torch.Tensor, reference: torch.Tensor) -> float:
    """RMSE of ``sample(denoiser, x, plan=plan)`` against ``reference`` (e.g. held-out exact solutions)."""
    from ..sampling import sample

    out = sample(denoiser, x, plan=plan)
    return float((out.to(torch.float64) - reference.to(torch.float64)).square().mean().sqrt())
