"""The library's own solvers on hand-made step schedules: the tuner's second fallback pool and weights bases.

The search's hand-made candidates (:func:`.tuner.hand_made_candidates`) are its own per-step strategies (DDIM,
DPM-Solver++(2M), third order, with and without corrector) on a few schedules. What a user would otherwise run is
this library's solvers: iPNDM (Zhang & Chen 2023), UniPC (Zhao et al. 2023), DEIS (Zhang & Chen 2023),
DPM-Solver(++) 2M/3M (Lu et al. 2022a, 2022b), … on log-SNR, Karras, KL-optimal or uniform-time steps. Each such
configuration of ``n`` calls is, on its levels, a fixed linear walk (:func:`diffsample.solvers.nonstationary.
solver_weights`), so the tuner scores it exactly as it scores fitted weights. No configuration is fitted to any
calibration sample, so every sample is held-out noise for it: the best is the one with the lowest RMSE over the whole
calibration batch (:func:`best_library_config`, four times the samples of the held-out quarter, which on the
mode-lottery beds picked walks twice the best one's error on fresh noise). The tuner keeps it as the plan when it
leads what the tuner selected by more than :data:`LIBRARY_MARGIN` (the plan then runs that solver), and fits weights
from it as from its own walks. Cost: one walk of ``n`` calls of the calibration batch per configuration
(``|solvers| × |schedules|``, 60 to 77 walks): ``60·n``–``77·n`` calls per sample, a few per cent of a tuning run
(about ``180·n²`` calls per sample).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .. import solvers
from ..contracts import Denoiser
from ..errors import BudgetError, DiffsampleError
from ..schedules import NoiseSchedule
from ..solvers.nonstationary import solver_weights
from .search import Candidate, levels_candidate, pooled_rmse
from .teacher import Teacher
from .weights import WeightsObjective

__all__ = [
    "LIBRARY_MARGIN",
    "LIBRARY_SCHEDULES",
    "LIBRARY_SOLVERS",
    "LibraryConfig",
    "LibraryScore",
    "best_library_config",
    "library_configs",
]

LIBRARY_SOLVERS: tuple[str, ...] = (
    "ddim",
    "dpm_solver_2m",
    "dpmpp_2m",
    "dpmpp_3m",
    "dpm_solver_3m",
    "ipndm",
    "ipndm_v",
    "unipc",
    "unipc_3m",
    "unipc_bh1",
    "deis",
)
"""The deterministic one-call-per-step solvers the pool holds (Euler is DDIM in σ-space; Heun calls twice a step); the
defaults' selection considers the same and those two (:data:`benchmarks.defaults_bench.SOLVERS`)."""

LIBRARY_SCHEDULES: tuple[str, ...] = (
    "logsnr",
    "karras",
    "kl_optimal",
    "logsnr+trailing",
    "karras+trailing",
    "kl_optimal+trailing",
)
"""The step schedules of the pool; a model with a noise schedule adds ``time_uniform`` and its trailing form (the
flow models' best walks, :data:`diffsample.generate.FAMILY_TABLES`)."""

_TIME_SCHEDULES = ("time_uniform", "time_uniform+trailing")

LIBRARY_MARGIN = 0.05
"""The lead a library configuration needs over the walk the tuner selected to replace it: its RMSE below
``(1 − LIBRARY_MARGIN)`` times that walk's (a tie keeps the selected walk), on the held-out samples against a searched
walk, on the whole calibration batch against a hand-made one (neither fitted to any of it). The pool holds 60–77
configurations whose per-sample errors are heavy-tailed on networks and a lottery of modes on the digits bed (many
walks there end exactly on the training images, RMSE 0): without a margin the best of so many replaced the tuned
plan on the figures' cells by chance and lost on fresh noise (issue #13, session 12: the 16×16 Stable
Diffusion-table networks at NFE 15, the digits bed with flow time at NFE 5–6), as automatic mode's candidates did
before :data:`diffsample.auto.AUTO_MARGIN`."""


@dataclass(frozen=True)
class LibraryConfig:
    """One solver on one step schedule: its walk (levels, 0 last) and the solver's weights there."""

    solver: str
    schedule: str
    walk: tuple[float, ...]
    weights: tuple[tuple[float, ...], ...]

    @property
    def label(self) -> str:
        return f"{self.solver} on {self.schedule}"

    def candidate(self) -> Candidate:
        """The walk's levels as a search candidate (its choices are placeholders: the weights are the solver's)."""
        return levels_candidate(self.walk)

    def rows(self) -> list[list[float]]:
        return [list(r) for r in self.weights]


def library_configs(
    n: int, sigma_min: float, sigma_max: float, noise_schedule: NoiseSchedule | None = None
) -> list[LibraryConfig]:
    """Every solver of :data:`LIBRARY_SOLVERS` on every schedule of :data:`LIBRARY_SCHEDULES` (and the time
    schedules where the model has a ``noise_schedule``) that walks ``σ_max → 0`` in exactly ``n`` calls."""
    from ..generate import schedule_levels

    names = LIBRARY_SCHEDULES + (_TIME_SCHEDULES if noise_schedule is not None else ())
    out: list[LibraryConfig] = []
    for solver in LIBRARY_SOLVERS:
        try:
            n_steps = solvers.spec(solver).steps_for_nfe(n)
        except BudgetError:  # fewer calls than the method needs
            continue
        if n_steps != n:
            continue
        for schedule in names:  # the time schedules are only among them when the model has a noise schedule
            walk = schedule_levels(schedule, n_steps, sigma_min, sigma_max, noise_schedule).tolist()
            if len(walk) != n + 1 or walk[-1] != 0.0:
                continue
            try:
                rows = solver_weights(solver, walk)
            except DiffsampleError:
                continue
            out.append(LibraryConfig(solver, schedule, tuple(walk), tuple(tuple(r) for r in rows)))
    return out


@dataclass(frozen=True)
class LibraryScore:
    """The best library configuration on a calibration batch given in parts (fit, held-out): its RMSE on each part,
    over all of them (what chose it), and the model evaluations spent per calibration sample."""

    config: LibraryConfig | None
    part_errors: tuple[float, ...]
    error: float
    nfe: float


def best_library_config(denoiser: Denoiser, teachers: Sequence[Teacher], configs: list[LibraryConfig]) -> LibraryScore:
    """The configuration with the lowest end-point RMSE over all samples of ``teachers`` (the calibration batch's
    parts, pooled: :func:`.search.pooled_rmse`; first of equals), its error on each part (``inf`` everywhere when
    every walk diverged) and the evaluations per sample spent (one walk of each configuration)."""
    scores = [WeightsObjective(denoiser, t) for t in teachers]
    sizes = [int(t.final.shape[0]) for t in teachers]
    best: tuple[LibraryConfig | None, tuple[float, ...], float] = (None, tuple(math.inf for _ in teachers), math.inf)
    for config in configs:
        parts = tuple(score(config.candidate(), config.rows()) for score in scores)
        err = pooled_rmse(parts, sizes)
        if err < best[2]:
            best = (config, parts, err)
    return LibraryScore(*best, float(scores[0].nfe))
