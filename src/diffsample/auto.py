"""Automatic mode: pick the solver and step schedule for *this* model by a short reference run, once per model, fit
that solver's weights to the run where cross-validation says it helps, and move its levels with the weights.

``generate(..., nfe=n, auto=True)`` calls :func:`auto_choice`:

1. **calibration** — ``calibration`` noises (default :func:`calibration_size`: 16, seeded 0 … 15 through
   :func:`diffsample.noise.seeded`, or more for samples of few numbers, below) at ``σ_max``;
2. **reference** — the same states walked to σ = 0 by DPM-Solver++(3M) (Lu et al. 2022, third order) on
   ``max(8 n, 64)`` log-SNR steps: with an error of order ``h³`` its distance to the exact ODE end point is about
   ``8³ = 512`` times below that of a third-order walk of ``n`` steps. That holds for typical samples; a rare
   sample on a hard trajectory converges more slowly (on the 16×16 flow network, 32 noises: RMSE to the 477-step
   teacher 0.019 / 0.0049 / 0.0013 at 64 / 128 / 256 steps, one sample 0.1 at 64, the median 0.00055). A 2× / 4×
   longer reference (8 / 24 more runs) left the chosen walk's error on 64 fresh noises within ±11 % / ±6 % in 18
   of 19 cells (5 networks, NFE 4–20; 0.78× in the other), so this one stays;
3. **candidates** — every configuration of the family's candidate set (:data:`AUTO_CANDIDATES`: the static
   default and the runners-up of the selection procedure behind :data:`diffsample.generate.FAMILY_TABLES`), each
   run with the budget of ``n`` evaluations; the one with the lowest RMSE to the reference wins if it leads the
   family's static default for the budget (run first) by more than :data:`AUTO_MARGIN` (5 %); otherwise the static
   default stays, so auto mode only departs from it on evidence;
4. **weights** — the chosen walk's solver is linear in the model values, so its states are combinations of the
   start and the model values so far (:func:`~diffsample.solvers.nonstationary.solver_weights`); those weights are
   fitted to the reference trajectory step by step (D-ODE, Kim et al. 2024; the tuner's stage,
   :func:`diffsample.tuning.weights.fit_level_weights`), the levels kept. Whether to keep them is decided on noise
   the fit did not see: 2-fold cross-validation (:data:`AUTO_WEIGHT_FOLDS`; fit on 8 noises, walk the other 8 and
   the reverse) at each ridge of :data:`~diffsample.tuning.weights.WEIGHT_RIDGES`; if the best cross-validated RMSE
   leads the walk's own calibration RMSE by more than :data:`AUTO_MARGIN`, weights fitted on all the noises at
   that ridge replace the solver's own (run as the ``nonstationary`` solver, same levels, same calls). Each fold's
   fit needs :data:`~diffsample.tuning.weights.STEP_FIT_DATA_RATIO` fitted numbers (samples × coordinates) per
   weight of its largest row, as the tuner's does; with fewer the weights are not fitted (``weights_why``), and
   :func:`calibration_size` draws that many noises when none are given (an image of 64 numbers or more: 16 up to
   NFE 50; a 2-D point: ``10 (n + 1)``). On the 2-D ring with 16 noises (16 numbers per fold fit) the weights won
   cross-validation and sent up to 6 % of 512 fresh samples ten times the median error away (NFE 4: RMSE 0.20
   against 0.065 without weights); with the rule's 50 noises, 0.029 (issue #13, session 15);
5. **levels** — levels that suit the solver's own weights are not those that suit fitted ones (BNS, Shaul et al.
   2024, optimise both together), so the chosen walk's free levels (all but ``σ_max``) are then moved by the
   tuner's pattern search in ``log σ`` (:func:`diffsample.tuning.weights.search_levels`), each trial a fit on the
   whole calibration batch at the ridge cross-validation chose, kept when it lowers the fit's error there, at most
   :data:`AUTO_LEVEL_FITS` trials per call (:data:`AUTO_MAX_LEVEL_FITS` in all), with the weights' amplification
   limit and the search's smallest level gap. If a level moved, the walk runs the moved levels with their fitted
   weights (``sigmas``, ``levels_error``); if none did, step 4's decision stands. The move is not cross-validated:
   on 16 noises the 2-fold estimate of the whole procedure (search and fit on 8, walk the other 8) was seen to
   refuse moves that halved the error on fresh noise and keep others that raised it, so the rule rests on the
   measurement instead (:data:`AUTO_LEVEL_FITS`: lower error in most cells, up to 2.9× higher in a few);
6. **cache** — the choice is written (atomically) under ``cache_dir("auto")``, keyed by a fingerprint of the model
   (its outputs at two fixed inputs, so other weights under the same name get their own entry), its family,
   span, budget, calls per evaluation, the calibration noises, the candidate set and the weight fitting; a later
   call reads it back for the cost of the fingerprint alone.

**Cost**, in model calls of the calibration batch: ``2`` (fingerprint) ``+ max(8 n, 64)`` (reference) ``+ K·n``
(``K = 10`` candidates) ``+ 2·R·n`` (cross-validation, ``R = 3`` ridges: every noise fitted once and walked once per
ridge) ``+ n`` (the fit on the whole batch) ``+ F·n`` (the level search's ``F = min(4 n, 80)`` trial fits at most),
i.e. ``max(8, 64/n) + K + 2R + 1 + F`` sampling runs of ``n`` calls plus 2 calls: **at most 49 runs** at ``n = 4``,
57 at ``n = 8``, 105 from ``n = 20`` on (18–26 without the weights, ``fit_weights=False``). On the default 16
calibration samples that is, in per-sample model evaluations, 12.3 sampling runs of a 64-sample batch at ``n = 4``
and 26 at ``n ≥ 20``; paid once per model and budget (then 2 calls). The reference run keeps its
states for the fit: ``max(8 n, 64)`` copies of the calibration batch in memory. Why 16 noises: the choice is an RMSE
over the calibration batch, and the networks' per-sample errors are heavy-tailed (a few samples 10–40× the median),
so a small batch misjudges the batch RMSE that matters (with 4 noises a choice was seen to be 14× worse than the
default on 64 other noises). Measured on the 8 digits networks at NFE 4–20 (56 cells, 64 held-out noises), before
the weights: auto's choice ÷ the static default, geometric mean 0.91 / 0.87 / 0.88 on the VP networks and 1.04 /
1.00 / 0.99 on the flow networks with 8 / 16 / 32 noises, worse than the default by more than 5 % in 9 / 5 / 4 cells.
:class:`AutoChoice` records the exact count (``cost_nfe``, per calibration sample) and whether it came from the
cache.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch

from . import cache, files, noise, solvers, steps
from ._version import __version__
from .contracts import Denoiser
from .denoisers import CallCounter
from .errors import BudgetError, DiffsampleError, NonFiniteError, SigmaError
from .model_family import FAMILIES, SHORT_SPAN_SUFFIX, model_family, model_span, noise_schedule_of, short_span
from .sampling import sample
from .schedules import NoiseSchedule
from .solvers.nonstationary import solver_weights
from .tuning.search import levels_candidate
from .tuning.teacher import Teacher
from .tuning.weights import (
    AMPLIFICATION_LIMIT,
    STEP_FIT_DATA_RATIO,
    WEIGHT_RIDGES,
    Fit,
    cross_validate_weights,
    enough_data,
    search_levels,
)

__all__ = [
    "AUTO_CANDIDATES",
    "AUTO_LEVEL_FITS",
    "AUTO_MARGIN",
    "AUTO_MAX_LEVEL_FITS",
    "AUTO_WEIGHT_FOLDS",
    "GUIDED_SUFFIX",
    "AutoChoice",
    "auto_choice",
    "candidates_for",
    "reference_steps",
]

AUTO_CANDIDATES: dict[str, tuple[tuple[str, str], ...]] = {
    "vp_eps": (("unipc_3m", "kl_optimal+trailing"), ("ipndm", "logsnr+trailing"), ("unipc_3m", "logsnr"),
               ("unipc_3m", "logsnr+trailing"), ("ipndm", "kl_optimal"), ("unipc", "kl_optimal+trailing"),
               ("ipndm", "kl_optimal+trailing"), ("unipc_bh1", "kl_optimal+trailing"),
               ("dpmpp_3m", "kl_optimal+trailing"), ("ipndm", "karras+trailing")),
    "vp_eps+short": (("dpm_solver_3m", "karras+trailing"), ("unipc_3m", "logsnr"), ("unipc_3m", "karras"),
                     ("dpmpp_3m", "logsnr"), ("unipc_3m", "logsnr+trailing"), ("unipc_bh1", "kl_optimal+trailing"),
                     ("ipndm", "karras+trailing"), ("ipndm", "logsnr"), ("ipndm", "logsnr+trailing"),
                     ("unipc_3m", "time_uniform+trailing")),
    "vp_eps+cfg": (("ipndm", "kl_optimal+trailing"), ("unipc", "kl_optimal+trailing"), ("dpmpp_3m", "logsnr+trailing"),
                   ("unipc_3m", "kl_optimal+trailing"), ("dpm_solver_2m", "kl_optimal+trailing"),
                   ("dpmpp_2m", "kl_optimal+trailing"), ("dpmpp_3m", "kl_optimal+trailing"),
                   ("dpm_solver_3m", "kl_optimal+trailing"), ("euler", "kl_optimal+trailing"),
                   ("dpm_solver_3m", "logsnr+trailing")),
    "edm": (("unipc_bh1", "kl_optimal+trailing"), ("dpm_solver_3m", "karras+trailing"), ("unipc_3m", "logsnr+trailing"),
            ("unipc_3m", "logsnr"), ("unipc", "kl_optimal+trailing"), ("unipc_3m", "kl_optimal+trailing"),
            ("ipndm", "kl_optimal+trailing"), ("ipndm", "kl_optimal"), ("ipndm", "logsnr+trailing"),
            ("ipndm", "karras+trailing")),
    "flow": (("ipndm", "time_uniform+trailing"), ("ipndm", "time_uniform"), ("unipc_3m", "time_uniform+trailing"),
             ("unipc", "time_uniform+trailing"), ("unipc", "kl_optimal+trailing"), ("unipc_3m", "kl_optimal+trailing"),
             ("ipndm", "kl_optimal+trailing"), ("unipc_bh1", "time_uniform+trailing"),
             ("dpmpp_2m", "time_uniform+trailing"), ("dpm_solver_3m", "time_uniform+trailing")),
    "flow_shift": (("ipndm", "time_uniform+trailing"), ("unipc", "kl_optimal+trailing"),
                   ("ipndm", "kl_optimal+trailing"), ("ipndm", "kl_optimal"), ("unipc_3m", "kl_optimal+trailing"),
                   ("dpmpp_2m", "time_uniform+trailing"), ("dpmpp_3m", "time_uniform+trailing"),
                   ("unipc", "time_uniform+trailing"), ("unipc_3m", "time_uniform+trailing"),
                   ("deis", "time_uniform+trailing")),
}  # fmt: skip
"""Candidate (solver, step schedule) pairs per family, 10 each (``"<family>+cfg"``: for guided models, a call costing
2 evaluations; ``"vp_eps+short"``: models on a short span, :func:`~diffsample.model_family.short_span`, VP or
σ-space without a schedule): every
row of the static table (:data:`diffsample.generate.FAMILY_TABLES`, :data:`~diffsample.generate.SHORT_SPAN_TABLES`,
:data:`~diffsample.generate.GUIDED_TABLES`), then the configurations most often within 10 % of the best on a
network cell (NFE 4–20) of the same selection run (``python -m benchmarks defaults --select``), mostly walks that
end the trailing way (``+trailing``, :data:`diffsample.steps.TRAILING`); for EDM the digits networks seen as bare
σ-space functions (session 11 of issue #13; until then its set came from its beds alone). VP x0/v share the VP ε
sets."""

_SHARED = {"vp_x0": "vp_eps", "vp_v": "vp_eps"}

AUTO_MARGIN = 0.05
"""The lead on the calibration noises a candidate needs over the static default to replace it: its RMSE below
``(1 − AUTO_MARGIN)`` times the default's. The networks' per-sample errors are heavy-tailed, so 16 calibration noises
misjudge close calls. Measured on the selection's own noises (seeds 2 and 3, never the figures'), replaying the 161
cells' calibration runs (issue #13, session 8): auto ÷ static geometric mean 0.972 → 0.941 on the 8 networks, 0.780
→ 0.777 on the beds; cells worse than the static row by more than 5 % 26 → 21 (10 → 7 on the networks); the one
large effect is DPM-Solver++(3M) on log-SNR steps chosen on 16 noises for the 8×8 Stable Diffusion-table network at
NFE 20, 5.9× the static row's error on 128 others. Margins of 10–30 % cut the bad departures further but gave up
more good ones (cells better by > 5 %: 74 at 0, 73 at 5 %, 63 at 10 %, 50 at 30 %)."""

AUTO_WEIGHT_FOLDS = 2
"""Folds of the cross-validation that decides whether automatic mode keeps fitted solver weights (step 4 of the
module docstring): with 16 calibration noises, fits on 8 and walks of the other 8, each noise held out once."""

AUTO_LEVEL_FITS = 4
"""Trial fits per model call of the level search (step 5 of the module docstring): at most ``4 n`` (and
:data:`AUTO_MAX_LEVEL_FITS`) for a walk of ``n`` calls, about two sweeps of the ``2 (n − 1)`` moves of its free
levels. Measured (issue #13, session 16) on the figures' 32 units (exact beds on 512 noises, digits networks on 64,
NFE 4–20, 224 cells): the level search lowered automatic mode's error in 155 cells and raised it in 53 (by more than
10 % in 39, at most 2.9×), geometric mean 0.80×; cells within 0.8× the best peer 177 → 196. A prototype with at most
``2 n`` trial fits reached 194 and raised the error up to 33× (the 2-D ring at NFE 20)."""

AUTO_MAX_LEVEL_FITS = 80
"""The most trial fits of the level search for any budget (``4 n`` reaches it at ``n = 20``, the largest budget
measured): beyond it the search's cost, ``4 n`` trial walks of ``n`` calls, would grow as ``n²``."""

GUIDED_SUFFIX = "+cfg"
"""Key suffix of a family's candidate set for guided models in :data:`AUTO_CANDIDATES`."""


AUTO_CALIBRATION = 16
"""The fewest calibration noises automatic mode draws when not given them (:func:`calibration_size`): the networks'
per-sample errors are heavy-tailed, so the choice needs a batch (module docstring, *Why 16 noises*)."""


def calibration_size(sample_shape: tuple[int, ...] | torch.Size, nfe: int, nfe_per_call: int = 1) -> int:
    """How many calibration noises automatic mode draws for a budget of ``nfe`` evaluations (``nfe_per_call`` per
    call) when it is not given them: :data:`AUTO_CALIBRATION`, or more where a sample has too few numbers for the
    fitted weights' data rule (:data:`~diffsample.tuning.weights.STEP_FIT_DATA_RATIO` per weight of the largest row,
    ``n + 1`` for ``n`` calls) in each cross-validation fit, which sees ``(K − 1)/K`` of the batch
    (:data:`AUTO_WEIGHT_FOLDS` ``= K``):

        B = max(16, ⌈ratio · (n + 1) · K / ((K − 1) · d)⌉),   d = numbers per sample.

    An 8×8 image (``d = 64``) keeps 16 noises up to ``n = 50``; a 2-D point needs ``10 (n + 1)``: 50 at NFE 4, 210
    at NFE 20 (each a 2-D walk: the same cost in numbers as 16 images)."""
    numbers = math.prod(int(v) for v in sample_shape)
    if numbers < 1 or int(nfe) < 1 or int(nfe_per_call) < 1:
        raise DiffsampleError(f"calibration_size needs a sample shape and a budget, got {tuple(sample_shape)}, {nfe}")
    calls = max(1, int(nfe) // int(nfe_per_call))
    batch = AUTO_CALIBRATION
    while not enough_data(_fold_fit_size(batch) * numbers, calls):
        batch += 1
    return batch


def _fold_fit_size(batch: int) -> int:
    """Samples in the smallest cross-validation fit of a batch (the batch less its largest fold)."""
    return batch - -(-batch // AUTO_WEIGHT_FOLDS)


def candidates_for(family: str, guided: bool = False, sigma_max: float | None = None) -> tuple[tuple[str, str], ...]:
    """The candidate set of a family of :data:`~diffsample.model_family.FAMILIES` (``guided``: for a model whose
    call costs 2 evaluations, where the family has a guided set; ``sigma_max``: where the walk starts, for the VP
    families' short-span set)."""
    if family not in FAMILIES:
        raise DiffsampleError(f"unknown model family {family!r}; valid families: {', '.join(FAMILIES)}")
    base = _SHARED.get(family, family)
    if guided and f"{base}{GUIDED_SUFFIX}" in AUTO_CANDIDATES:
        return AUTO_CANDIDATES[f"{base}{GUIDED_SUFFIX}"]
    if short_span(family, sigma_max):  # one short-span set: VP models and schedule-less σ-space ones alike
        return AUTO_CANDIDATES[f"vp_eps{SHORT_SPAN_SUFFIX}"]
    return AUTO_CANDIDATES[base]


def reference_steps(nfe: int) -> int:
    """Steps of the reference walk for a budget of ``nfe`` calls: ``max(8·nfe, 64)``."""
    return max(8 * int(nfe), 64)


@dataclass(frozen=True)
class AutoChoice:
    """What automatic mode chose, the errors behind it and what it cost.

    ``errors`` maps ``"solver/schedule"`` to the RMSE against the reference on the calibration noises;
    ``weights``, when not empty, the ``nonstationary`` weights fitted on the chosen walk's levels that replace its
    own (``weights_error``: their cross-validated RMSE, set whenever a fit was scored, kept or not;
    ``weights_ridge``: the ridge it chose; ``weights_why``: why none replace the solver's own, ``""`` when they do);
    ``sigmas``, when not empty, the walk's levels (``σ_max`` first, 0 last) moved with the fitted weights, which
    replace the step schedule's (``levels_error``: the weights' RMSE on the calibration noises there, which they were
    fitted to); ``cost_nfe`` the model evaluations per calibration sample spent (fingerprint, reference, candidates,
    weights, levels; only the fingerprint when ``cached``) and ``choice_cost_nfe`` what making the choice cost (the
    same when not ``cached``); ``runs`` the cost in sampling runs of the budget.
    """

    solver: str
    step_schedule: str
    family: str
    nfe: int
    errors: dict[str, float] = field(default_factory=dict)
    reference_nfe: int = 0
    calibration_size: int = 0
    cost_nfe: int = 0
    cached: bool = False
    weights: list[list[float]] = field(default_factory=list)
    weights_error: float | None = None
    weights_ridge: float | None = None
    choice_cost_nfe: int = 0
    weights_why: str = ""
    sigmas: list[float] = field(default_factory=list)
    levels_error: float | None = None

    @property
    def label(self) -> str:
        """``"solver/schedule"``, with ``"+levels"`` when the levels were moved and ``"+weights"`` when fitted weights
        replace the solver's own."""
        return (
            f"{self.solver}/{self.step_schedule}"
            + ("+levels" if self.sigmas else "")
            + ("+weights" if self.weights else "")
        )

    def walk_on(
        self, sigmas: torch.Tensor, solver: str, options: dict[str, object]
    ) -> tuple[torch.Tensor, str, dict[str, object]]:
        """The levels, solver and options this choice walks, given those of the walk that
        :func:`diffsample.generate.configure` made for its solver and step schedule: the moved levels replace the
        schedule's, and the fitted weights the solver's own (run as the ``nonstationary`` solver)."""
        if self.sigmas:
            sigmas = torch.tensor(self.sigmas, dtype=sigmas.dtype, device=sigmas.device)
        if self.weights:
            return sigmas, "nonstationary", {"weights": self.weights}
        return sigmas, solver, options

    @property
    def runs(self) -> float:
        return self.cost_nfe / self.nfe


def _needs_time(step_schedule: str) -> bool:
    """Whether ``step_schedule`` steps in a model's time (it needs the model's noise schedule)."""
    return steps.get(step_schedule).needs_noise_schedule


def _walk_sigmas(
    schedule: str, n_steps: int, lo: float, hi: float, noise_schedule: NoiseSchedule | None
) -> torch.Tensor:
    from .generate import schedule_levels

    return schedule_levels(schedule, n_steps, lo, hi, noise_schedule)


def _fingerprint(den: CallCounter, shape: tuple[int, ...], lo: float, hi: float) -> bytes:
    """The model's outputs at two fixed inputs (2 calls): tells weights apart that share a name."""
    probe = noise.seeded([12345, 12346]).initial((2, *shape), 1.0, dtype=torch.float32)
    sig = torch.tensor([math.sqrt(lo * hi), hi], dtype=torch.float32)
    out = [den(probe[i : i + 1] * float(sig[i]), sig[i : i + 1]) for i in range(2)]
    return torch.cat(out).to(torch.float32).numpy().round(5).tobytes()


def auto_choice(
    denoiser: Denoiser,
    nfe: int,
    sample_shape: tuple[int, ...] | torch.Size,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    calibration: int | torch.Tensor | None = None,
    use_cache: bool = True,
    cache_folder: str | None = None,
    fit_weights: bool = True,
) -> AutoChoice:
    """Choose among the family's candidates by a short high-accuracy reference run (module docstring).

    Args:
        denoiser: the model; its family (:func:`~diffsample.model_family.model_family`) picks the candidate set
            and its noise schedule the span not given.
        nfe: the budget in model evaluations (a guided call counts 2).
        sample_shape: the shape of one sample, e.g. ``(1, 8, 8)``.
        sigma_min, sigma_max: the span (default: the model's noise schedule's).
        calibration: the number of calibration noises (seeded 0, 1, …) or unit-variance noises ``(B, …)``;
            default :func:`calibration_size` (16, more for samples of few numbers). With fewer than the fitted
            weights' data rule needs, the weights are not fitted (``weights_why`` says so).
        use_cache: read and write the choice in the disk cache (:mod:`diffsample.cache`).
        cache_folder: another folder for that cache.
        fit_weights: fit solver weights on the chosen walk's levels and keep them if cross-validation says they
            help (module docstring, step 4); ``False`` picks among the candidates only.
    """
    den = CallCounter(denoiser)
    family = model_family(denoiser)
    schedule = noise_schedule_of(denoiser)
    lo, hi = model_span(denoiser, sigma_min, sigma_max)
    if lo is None or hi is None or not 0 < lo < hi:
        raise SigmaError(f"automatic mode needs 0 < sigma_min < sigma_max (or a model with a noise schedule), "
                         f"got {lo!r} and {hi!r}")  # fmt: skip
    if int(nfe) != nfe or nfe < 1:
        raise BudgetError(f"nfe must be a positive integer number of model evaluations, got {nfe!r}")
    per_call = den.nfe_per_call
    calls = int(nfe) // per_call
    if calls < 1:
        raise BudgetError(f"a budget of {nfe} evaluations buys no call of a denoiser costing {per_call} each")
    shape = tuple(int(v) for v in sample_shape)
    if calibration is None:
        calibration = calibration_size(shape, int(nfe), per_call)
    if isinstance(calibration, torch.Tensor):
        z = calibration.to(torch.float64)
        if tuple(z.shape[1:]) != shape:
            raise DiffsampleError(f"calibration noises have shape {tuple(z.shape[1:])} per sample, not {shape}")
    else:
        if int(calibration) < 1:
            raise DiffsampleError(f"calibration must be a positive number of noises, got {calibration!r}")
        z = noise.seeded(list(range(int(calibration)))).initial((int(calibration), *shape), 1.0, dtype=torch.float64)
    from .generate import default_choice  # generate imports this module lazily too

    guided = per_call > 1
    static = default_choice(int(nfe), family, guided=guided, sigma_max=hi)
    usable = [c for c in candidates_for(family, guided, hi) if schedule is not None or not _needs_time(c[1])]
    cands = tuple(sorted(usable, key=lambda c: c != (static.solver, static.step_schedule)))
    settings = {
        "family": family,
        "span": [lo, hi],
        "nfe": int(nfe),
        "per_call": per_call,
        "candidates": [list(c) for c in cands],
        "reference": f"dpmpp_3m logsnr {reference_steps(calls)}",
        "margin": AUTO_MARGIN,
        "weights": {
            "ridges": list(WEIGHT_RIDGES),
            "folds": AUTO_WEIGHT_FOLDS,
            "limit": AMPLIFICATION_LIMIT,
            "data_ratio": STEP_FIT_DATA_RATIO,
            "level_fits": [AUTO_LEVEL_FITS, AUTO_MAX_LEVEL_FITS],
        }
        if fit_weights
        else False,
        "name": str(getattr(denoiser, "name", type(denoiser).__name__)),
        "library": __version__,
    }
    fingerprint = _fingerprint(den, shape, lo, hi)
    digest = cache.key_digest(settings, fingerprint, z.numpy().tobytes())
    path = cache.cache_dir("auto", cache_folder) / f"{digest}.json"
    if use_cache and path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        stored.update(cached=True, cost_nfe=den.nfe)
        return AutoChoice(**stored)
    dtype = torch.float32
    x = (z * hi).to(dtype)
    ref_sigmas = steps.logsnr(reference_steps(calls), lo, hi)
    before = den.nfe
    states: list[torch.Tensor] = []
    keep = (lambda info: states.append(info["x"].detach().clone())) if fit_weights else None
    reference = sample(den, x, ref_sigmas, solver="dpmpp_3m", callback=keep).to(torch.float64)
    reference_nfe = den.nfe - before
    errors: dict[str, float] = {}
    walks: dict[str, torch.Tensor] = {}
    for solver, sched in cands:
        try:
            n_steps = solvers.spec(solver).steps_for_nfe(calls)
            sig = _walk_sigmas(sched, n_steps, lo, hi, schedule)
            walks[f"{solver}/{sched}"] = sig
            out = sample(den, x, sig, solver=solver)
            err = float((out.to(torch.float64) - reference).square().mean().sqrt())
        except (BudgetError, SigmaError, NonFiniteError):
            err = math.inf
        errors[f"{solver}/{sched}"] = err if math.isfinite(err) else math.inf
    best = min(errors, key=lambda k: (errors[k], list(errors).index(k)))
    if not math.isfinite(errors[best]):
        raise DiffsampleError("automatic mode: every candidate diverged on the calibration noises")
    default = f"{static.solver}/{static.step_schedule}"
    if default in errors and errors[best] >= (1 - AUTO_MARGIN) * errors[default]:
        best = default
    solver, sched = best.split("/")
    cost: float = den.nfe
    fitted = _Fitted()
    if fit_weights:
        teacher = Teacher(ref_sigmas[:-1].to(torch.float64), torch.stack(states), reference, reference_nfe, "auto")
        fitted = _fitted_weights(den, teacher, solver, walks[best], errors[best], lo)
        cost += fitted.nfe  # not den's count: the fold walks on part of the batch count by their share of it
    choice = AutoChoice(
        solver,
        sched,
        family,
        int(nfe),
        errors,
        reference_nfe,
        int(z.shape[0]),
        math.ceil(cost - 1e-9),
        weights=fitted.weights,
        weights_error=fitted.error,
        weights_ridge=fitted.ridge,
        choice_cost_nfe=math.ceil(cost - 1e-9),
        weights_why=fitted.why if fit_weights else "off",
        sigmas=fitted.sigmas,
        levels_error=fitted.levels_error,
    )
    if use_cache:
        stored = {k: v for k, v in asdict(choice).items() if k not in ("cached", "cost_nfe")}
        stored["errors"] = {k: (v if math.isfinite(v) else None) for k, v in stored["errors"].items()}
        for key in ("weights_error", "levels_error"):
            if stored[key] is not None and not math.isfinite(stored[key]):
                stored[key] = None
        files.atomic_write_text(path, json.dumps(stored, indent=1) + "\n")
    return choice


@dataclass
class _Fitted:
    """Automatic mode's fitted weights (empty when not kept) with the levels they were moved to (empty when not
    moved), their cross-validated error and ridge, the moved walk's calibration error, and the model evaluations the
    stages spent per calibration sample."""

    weights: list[list[float]] = field(default_factory=list)
    error: float | None = None
    ridge: float | None = None
    nfe: float = 0.0
    why: str = ""
    sigmas: list[float] = field(default_factory=list)
    levels_error: float | None = None


def _fitted_weights(
    den: Denoiser, teacher: Teacher, solver: str, sigmas: torch.Tensor, error: float, sigma_min: float
) -> _Fitted:
    """Steps 4 and 5 of the module docstring: weights fitted on the chosen walk's levels from its solver's own
    (:func:`~diffsample.solvers.nonstationary.solver_weights`), cross-validated at each ridge; then the levels moved
    with the weights fitted on the whole batch at the ridge cross-validation chose (:func:`_moved_levels`). A walk
    whose levels moved runs them with those weights; one whose levels did not move keeps the weights fitted on the
    whole batch only if their cross-validated RMSE leads the walk's own calibration RMSE by more than
    :data:`AUTO_MARGIN`."""
    batch = int(teacher.final.shape[0])
    if batch < AUTO_WEIGHT_FOLDS:
        return _Fitted(why=f"{batch} calibration noises, fewer than the {AUTO_WEIGHT_FOLDS} folds")
    if not 0 < error < math.inf:
        return _Fitted(why="the chosen walk meets the reference exactly" if error == 0 else "no finite error")
    try:
        base = solver_weights(solver, sigmas)
    except DiffsampleError:  # a walk with no such weights (not one call per level): nothing to fit
        return _Fitted(why=f"{solver} has no per-level weights on this walk")
    calls = len(base)
    fold_numbers = _fold_fit_size(batch) * (teacher.final.numel() // batch)
    if not enough_data(fold_numbers, calls):
        return _Fitted(
            why=f"{fold_numbers} fitted numbers per fold for rows of {calls + 1} weights, fewer than "
            f"{STEP_FIT_DATA_RATIO} per weight (calibration_size gives enough noises)"
        )
    levels = sigmas.tolist()
    cv = cross_validate_weights(den, teacher, levels, base, folds=AUTO_WEIGHT_FOLDS)
    cv_error = cv.error if math.isfinite(cv.error) else None
    try:
        walk, fit, spent = _moved_levels(den, teacher, solver, levels, cv.ridge, sigma_min)
    except NonFiniteError:
        return _Fitted([], cv_error, cv.ridge, cv.nfe + calls, "the fit met a non-finite model output")
    nfe = cv.nfe + spent
    if walk != levels:
        return _Fitted(fit.weights, cv_error, cv.ridge, nfe, "", walk, fit.error)
    if not cv.error < (1 - AUTO_MARGIN) * error:
        why = f"cross-validated error {cv.error:.4g} does not lead the walk's {error:.4g} by {AUTO_MARGIN:.0%}"
        return _Fitted([], cv_error, cv.ridge, nfe, why)
    return _Fitted(fit.weights, cv_error, cv.ridge, nfe)


def _moved_levels(
    den: Denoiser, teacher: Teacher, solver: str, levels: list[float], ridge: float, sigma_min: float
) -> tuple[list[float], Fit, float]:
    """The chosen walk's free levels moved with the weights fitted on them (:func:`~diffsample.tuning.weights.
    search_levels`, at most :data:`AUTO_LEVEL_FITS` trial fits per call and :data:`AUTO_MAX_LEVEL_FITS` in all, each
    fit from the solver's own weights on the trial's levels): the walk's levels (``levels`` when no move lowered the
    fit's calibration error), their fit on the whole batch and the evaluations spent per calibration sample (the
    first fit, on ``levels``, included)."""
    moved, fit, spent = search_levels(
        den,
        teacher,
        levels_candidate(levels),
        sigma_min=sigma_min,
        ridge=ridge,
        max_fits=min(AUTO_LEVEL_FITS * (len(levels) - 1), AUTO_MAX_LEVEL_FITS),
        base_of=lambda c: solver_weights(solver, c.walk()),
    )
    return moved.walk(), fit, float(spent)
