"""Solver–schedule search: per-step strategies and noise levels, scored by the end-point error vs the teacher.

In the spirit of the unified sampling framework's search (Liu et al. 2024, USF/S³), a candidate is

    positive levels  σ_max = σ_0 > σ_1 > … > σ_{n−1} ≥ σ_min   (then 0; n steps = n model calls)
    per step i:      prediction ∈ {data, noise}, order ∈ {1, 2, 3}, corrector ∈ {off, on}, variant ∈ {bh2, bh1}

run by :func:`diffsample.solvers.plan_solver.plan_solver`, and its score is the RMSE at σ = 0 against the
teacher on the calibration batch: ``E = sqrt(mean_{b,d} (x_b − x_b^teacher(0))²)``. S³ fits a predictor of
sample quality to avoid running candidates; here a run of ``n`` calls on the calibration batch *is* the
cheap exact score, so the search evaluates candidates directly and counts every evaluation.

The search is deterministic and budgeted, in two stages:

* **coordinate (pattern) search** from the best few starting points (the dynamic-programming schedules of
  :mod:`.dp` combined with a few uniform strategies: DPM-Solver++(2M), DDIM, UniPC-2, UniPC-3, …). One sweep
  visits each step in turn: it tries every other strategy for that step (all 24 combinations of the four
  choices, so that e.g. the prediction type and the order can change together) and moves ``log σ_i`` by
  ``±δ`` (kept strictly between its neighbours and within ``[σ_min, σ_max)``); a change is kept when it
  lowers ``E``. A sweep without improvement halves ``δ`` (from 0.25 down to 1/128); the search stops there
  or when its evaluation budget is spent;
* **iterated local search** (Lourenço, Martin & Stützle 2003; a (1+1) evolutionary search whose offspring
  are polished by the coordinate search): the incumbent is perturbed — each step's strategy redrawn with
  probability 0.3, each ``log σ_i`` moved by ``N(0, 0.3²)`` — refined, and kept if better. The coordinate
  search changes one step at a time and stops in the first local optimum of the discrete choices; the
  kicks change several steps at once. The random generator is seeded.

Candidates that differ only in choices without effect (an order above the points visited, a variant
where no one-point rule is used, anything on the step into σ = 0 but the prediction type, …) are
normalised to one form and every score is cached, so no run is repeated.
"""

from __future__ import annotations

import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from .._deprecation import renamed_keyword
from ..contracts import Denoiser
from ..denoisers import as_denoiser
from ..errors import NonFiniteError
from ..solvers.plan_solver import MAX_ORDER, PREDICTIONS, VARIANTS, WalkState, plan_options, plan_walk
from ..transforms import GuardedDenoiser, work_dtype
from .teacher import Teacher

__all__ = [
    "STARTING_STRATEGIES",
    "STRATEGY_NAMES",
    "Candidate",
    "Choice",
    "Objective",
    "SearchResult",
    "canonical",
    "coordinate_search",
    "iterated_search",
    "levels_candidate",
    "perturb",
    "plan_options_of",
    "pooled_rmse",
    "starting_points",
]

MIN_LOG_GAP = 1e-3  # smallest log-ratio between consecutive levels a move may create


@dataclass(frozen=True)
class Choice:
    """The strategy of one step (options of :func:`~diffsample.solvers.plan_solver.plan_solver`)."""

    prediction: str = "data"
    order: int = 2
    corrector: bool = False
    variant: str = "bh2"


@dataclass(frozen=True)
class Candidate:
    """Positive levels ``σ_0 … σ_{n−1}`` (the walk appends 0) and one :class:`Choice` per step."""

    sigmas: tuple[float, ...]
    choices: tuple[Choice, ...]

    @property
    def n_steps(self) -> int:
        return len(self.sigmas)

    def walk(self) -> list[float]:
        return [*self.sigmas, 0.0]


def levels_candidate(walk: Sequence[float]) -> Candidate:
    """The walk on ``walk``'s levels (``σ_max`` first, 0 last) as a search candidate whose weights come from
    elsewhere (a registered solver's, fitted ones): its per-step choices are placeholders."""
    n = len(walk) - 1
    return Candidate(tuple(float(v) for v in walk[:-1]), tuple(Choice("data", 1) for _ in range(n)))


def _normal(i: int, ch: Choice) -> Choice:
    """Step ``i`` (not into σ = 0) uses ``k = min(order, i + 1)`` points; ``variant`` only enters a one-point
    rule (``k = 2``, or ``k = 1`` with the corrector)."""
    k = min(ch.order, i + 1)
    variant = ch.variant if (k == 2 or (k == 1 and ch.corrector)) else "bh2"
    return Choice(ch.prediction, k, ch.corrector, variant)


def canonical(c: Candidate) -> Candidate:
    """The normal form of ``c``: choices that cannot change the walk are set to fixed values.

    Besides :func:`_normal`: the step into σ = 0 is first order without corrector, and its prediction
    type matters only after a corrected step (noise prediction returns ``D + x_i − x_i^{pred}``, data
    prediction ``D``); so a corrector before a data-prediction step into 0 has no effect either.
    """
    n = c.n_steps
    out = [_normal(i, ch) for i, ch in enumerate(c.choices[:-1])]
    if n >= 2 and out[-1].corrector and c.choices[-1].prediction == "noise":
        out.append(Choice("noise", 1, False, "bh2"))
    else:
        if n >= 2:
            out[-1] = _normal(n - 2, replace(out[-1], corrector=False))
        out.append(Choice("data", 1, False, "bh2"))
    return Candidate(tuple(float(s) for s in c.sigmas), tuple(out))


def plan_options_of(c: Candidate) -> dict[str, list]:
    """The per-step option lists of :func:`~diffsample.solvers.plan_solver.plan_solver` for ``c``."""
    return {
        "prediction": [ch.prediction for ch in c.choices],
        "order": [ch.order for ch in c.choices],
        "corrector": [ch.corrector for ch in c.choices],
        "variant": [ch.variant for ch in c.choices],
    }


class Objective:
    """``E(candidate)``: the end-point RMSE of the walk against the teacher, cached, with its cost counted.

    A run computes exactly what ``diffsample.sample(denoiser, teacher.start, candidate.walk(), solver="plan",
    …)`` computes (the same guarded model calls and the same loop, :func:`~diffsample.solvers.plan_solver.plan_walk`),
    so a plan built from a candidate reproduces its scored run bit for bit (the tests check it). The state at
    the start of every step is kept (least recently used first out, within ``prefix_bytes``) under the
    levels and choices that determine it, and a candidate is run from the last step it shares with an
    earlier run: a move at step ``i`` of ``n`` costs ``n − i`` model calls, not ``n``.
    ``evals`` counts the runs, ``nfe`` the model evaluations they spent (per calibration sample).
    """

    def __init__(self, denoiser: Denoiser, teacher: Teacher, prefix_bytes: int = 256 * 2**20) -> None:
        self.denoiser = as_denoiser(denoiser)
        self.teacher = teacher
        self.cache: dict[Candidate, float] = {}
        self.evals = 0
        self.nfe = 0
        self.dtype = work_dtype(teacher.start.dtype)
        self.start = teacher.start.to(self.dtype)
        self.final = teacher.final.to(torch.float64)
        self.prefix_bytes = int(prefix_bytes)
        self._prefixes: OrderedDict[tuple, WalkState] = OrderedDict()
        self._state_bytes = 0

    @staticmethod
    def _key(c: Candidate, i: int) -> tuple:
        """What the state at the start of step ``i`` depends on: the levels to ``σ_i``, the first ``i`` choices."""
        return (c.sigmas[: i + 1], c.choices[:i])

    def _keep(self, c: Candidate) -> Callable[[WalkState], None]:
        def keep(state: WalkState) -> None:
            if not self._state_bytes:
                x, visits = state[1], state[2]
                self._state_bytes = x.element_size() * x.numel() * (1 + 2 * len(visits))
            if self._state_bytes * (len(self._prefixes) + 1) > self.prefix_bytes:
                if not self._prefixes:
                    return
                self._prefixes.popitem(last=False)
            self._prefixes[self._key(c, state[0])] = state

        return keep

    def run(self, c: Candidate) -> torch.Tensor:
        """The final state of candidate ``c`` (canonical form) on the calibration batch."""
        resume = None
        for i in range(c.n_steps - 1, 0, -1):
            state = self._prefixes.get(self._key(c, i))
            if state is not None:
                self._prefixes.move_to_end(self._key(c, i))
                resume = state
                break
        walk = torch.tensor(c.walk(), dtype=torch.float64)
        guarded = GuardedDenoiser(self.denoiser, walk, self.dtype)
        before = guarded.nfe
        choices = plan_options(c.n_steps, **plan_options_of(c))
        try:
            return plan_walk(guarded, self.start, c.walk(), choices, resume=resume, keep=self._keep(c))
        finally:
            self.nfe += guarded.nfe - before

    def __call__(self, c: Candidate) -> float:
        c = canonical(c)
        if c in self.cache:
            return self.cache[c]
        self.evals += 1
        try:
            out = self.run(c)
            err = float((out.to(torch.float64) - self.final).square().mean().sqrt())
        except NonFiniteError:
            err = math.inf
        if not math.isfinite(err):
            err = math.inf
        self.cache[c] = err
        return err


def pooled_rmse(errors: Sequence[float], sizes: Sequence[int]) -> float:
    """The RMSE over the union of batches of ``sizes`` samples whose RMSEs are ``errors``:
    ``sqrt(Σ sizes_i · errors_i² / Σ sizes_i)`` (parts of size 0 count for nothing; one part's is its own, exactly)."""
    total = sum(sizes)
    if total <= 0:
        raise ValueError("pooled_rmse needs at least one sample")
    counted = [(e, k) for e, k in zip(errors, sizes, strict=True) if k]
    if len(counted) == 1:
        return counted[0][0]
    return math.sqrt(sum(k * e * e for e, k in counted) / total)


def _all_choices() -> list[Choice]:
    return [
        Choice(p, o, c, v)
        for p in PREDICTIONS
        for o in range(1, MAX_ORDER + 1)
        for c in (False, True)
        for v in VARIANTS
    ]


def _choice_moves(c: Candidate, i: int) -> list[Candidate]:
    """Candidates differing from ``c`` in the strategy of step ``i`` (every other one, several choices at once)."""
    out, seen = [], {canonical(c)}
    for alt in _all_choices():
        cand = Candidate(c.sigmas, c.choices[:i] + (alt,) + c.choices[i + 1 :])
        key = canonical(cand)
        if key not in seen:
            seen.add(key)
            out.append(cand)
    return out


def level_moves(c: Candidate, i: int, delta: float, log_min: float, min_gap: float = MIN_LOG_GAP) -> list[Candidate]:
    """Candidates with ``log σ_i`` moved by ``±delta`` inside ``(log σ_{i+1}, log σ_{i−1})`` and ``≥ log σ_min``,
    at least ``min_gap`` in ``log σ`` from both neighbours."""
    if i == 0:
        return []
    logs = [math.log(s) for s in c.sigmas]
    hi = logs[i - 1] - min_gap
    lo = (logs[i + 1] + min_gap) if i + 1 < len(logs) else log_min
    out = []
    for d in (delta, -delta):
        v = min(max(logs[i] + d, lo), hi)
        if abs(v - logs[i]) > 1e-12 and lo <= v <= hi:
            sig = list(c.sigmas)
            sig[i] = math.exp(v)
            out.append(Candidate(tuple(sig), c.choices))
    return out


@dataclass
class SearchResult:
    """What a search found: ``best`` by ``error`` on its objective; with a held-out check (``validate``),
    ``held_best`` is the incumbent with the lowest held-out error ``held_error``, and ``stopped_early`` says
    whether the held-out error stopped the search."""

    best: Candidate
    error: float
    evals: int
    sweeps: int
    seconds: float
    held_best: Candidate | None = None
    held_error: float = math.inf
    stopped_early: bool = False


def coordinate_search(
    objective: Objective,
    start: Candidate,
    *,
    sigma_min: float,
    max_evals: int = 600,
    delta: float = 0.25,
    delta_min: float = 1 / 128,
    search_choices: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Pattern search from ``start`` over per-step choices and ``log σ`` (module docstring).

    Stops when ``δ`` falls below ``delta_min`` or after ``max_evals`` new runs of ``objective``.
    """
    t0 = time.perf_counter()
    best = canonical(start)
    err = objective(best)
    first = objective.evals
    log_min = math.log(sigma_min)
    sweeps = 0
    while delta >= delta_min and objective.evals - first < max_evals:
        sweeps += 1
        improved = False
        for i in range(best.n_steps):
            moves: list[Candidate] = []
            if search_choices:
                moves += _choice_moves(best, i)
            moves += level_moves(best, i, delta, log_min)
            for cand in moves:
                if objective.evals - first >= max_evals:
                    break
                e = objective(cand)
                if e < err:
                    best, err, improved = canonical(cand), e, True
        if progress:
            progress(f"sweep {sweeps}: delta {delta:.4g}, error {err:.5g}, {objective.evals - first} evals")
        if not improved:
            delta /= 2
    return SearchResult(best, err, objective.evals - first, sweeps, time.perf_counter() - t0)


def perturb(
    c: Candidate, rng: random.Random, *, sigma_min: float, p_choice: float = 0.3, log_sigma_noise: float = 0.3
) -> Candidate:
    """A random neighbour for a restart: each step's choice redrawn with probability ``p_choice``, each free
    ``log σ_i`` moved by ``N(0, log_sigma_noise²)``, then sorted and kept in ``[σ_min, σ_max)`` with gaps."""
    pool = _all_choices()
    choices = tuple(rng.choice(pool) if rng.random() < p_choice else ch for ch in c.choices)
    top = math.log(c.sigmas[0])
    logs = sorted(
        (
            min(max(math.log(s) + rng.gauss(0.0, log_sigma_noise), math.log(sigma_min)), top - MIN_LOG_GAP)
            for s in c.sigmas[1:]
        ),
        reverse=True,
    )
    for i in range(len(logs)):  # repair the gaps from the top down, then from the bottom up
        logs[i] = min(logs[i], (logs[i - 1] if i else top) - MIN_LOG_GAP)
    floor = math.log(sigma_min)
    for i in range(len(logs) - 1, -1, -1):
        logs[i] = max(logs[i], floor if i == len(logs) - 1 else logs[i + 1] + MIN_LOG_GAP)
    return Candidate((c.sigmas[0], *(math.exp(v) for v in logs)), choices)


def iterated_search(
    objective: Objective,
    start: Candidate,
    *,
    sigma_min: float,
    kicks: int = 8,
    kick_evals: int = 150,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    validate: Callable[[Candidate], float] | None = None,
    patience: int = 2,
) -> SearchResult:
    """Iterated local search (Lourenço, Martin & Stützle 2003): ``kicks`` times, perturb the incumbent
    (:func:`perturb`), run :func:`coordinate_search` from there with at most ``kick_evals`` runs, and keep the
    result if it is better. The coordinate search alone stops in the first local optimum of the discrete
    choices; the kicks change several steps at once. Seeded, so the result is reproducible.

    With ``validate`` (the error on held-out noise, e.g. another :class:`Objective`), every new incumbent is
    also scored there; the search remembers the incumbent with the lowest held-out error and stops early once
    ``patience`` incumbents in a row lowered the calibration error without lowering the held-out one (early
    stopping on a validation set: the calibration error still falls, the error on other noise no longer does).
    """
    t0 = time.perf_counter()
    rng = random.Random(seed)
    best = canonical(start)
    err = objective(best)
    first = objective.evals
    held_best, held_err = (best, validate(best)) if validate is not None else (None, math.inf)
    stale, stopped, done = 0, False, 0
    for k in range(kicks):
        done = k + 1
        res = coordinate_search(
            objective, perturb(best, rng, sigma_min=sigma_min), sigma_min=sigma_min, max_evals=kick_evals
        )
        if res.error < err:
            best, err = res.best, res.error
            if validate is not None:
                v = validate(best)
                if v < held_err:
                    held_best, held_err, stale = best, v, 0
                else:
                    stale += 1
        if progress:
            held = f", held-out best {held_err:.5g}" if validate is not None else ""
            progress(f"kick {k + 1}/{kicks}: {res.error:.5g} (best {err:.5g}{held}), {res.evals} runs")
        if validate is not None and stale >= max(1, patience):
            stopped = True
            break
    return SearchResult(
        best, err, objective.evals - first, done, time.perf_counter() - t0, held_best, held_err, stopped
    )


def uniform_choices(n_steps: int, choice: Choice) -> tuple[Choice, ...]:
    return tuple(choice for _ in range(n_steps))


STRATEGY_NAMES: dict[Choice, str] = {
    Choice("data", 2, False, "bh2"): "DPM-Solver++(2M)",
    Choice("data", 1, False, "bh2"): "DDIM",
    Choice("data", 2, True, "bh2"): "UniPC-2 (bh2)",
    Choice("data", 3, True, "bh2"): "UniPC-3 (bh2)",
    Choice("noise", 2, False, "bh2"): "DPM-Solver-2M",
    Choice("data", 1, True, "bh1"): "DDIM + UniC-1 (bh1)",
}
"""The published solver each uniform starting strategy is (for a plan's provenance)."""

STARTING_STRATEGIES: tuple[Choice, ...] = (
    Choice("data", 2, False, "bh2"),  # DPM-Solver++(2M)
    Choice("data", 1, False, "bh2"),  # DDIM
    Choice("data", 2, True, "bh2"),  # UniPC-2 (bh2)
    Choice("data", 3, True, "bh2"),  # UniPC-3
    Choice("noise", 2, False, "bh2"),  # DPM-Solver-2M
    Choice("data", 1, True, "bh1"),  # DDIM + UniC-1 (bh1)
)
"""Uniform strategies tried on every starting schedule (the published solvers the plan solver contains)."""


@renamed_keyword("schedules", "step_schedules")
def starting_points(
    step_schedules: Sequence[Sequence[float]], strategies: Sequence[Choice] = STARTING_STRATEGIES
) -> list[Candidate]:
    """Every step schedule (positive levels) combined with every uniform strategy."""
    out = []
    for s in step_schedules:
        for ch in strategies:
            out.append(Candidate(tuple(float(v) for v in s), uniform_choices(len(s), ch)))
    return out
