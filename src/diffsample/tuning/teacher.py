"""Teacher trajectories: the probability-flow ODE solved finely on a calibration batch, kept at every level.

The tuner needs the ODE solution ``x(σ)`` of each calibration state at every level of a fine grid (the
dynamic programme compares a few-step walk with it level by level) and at σ = 0 (the end-point error it
minimises). It must work for any denoiser, networks included, so it comes from this library's own
high-accuracy solver rather than from a test bed's exact reference:

* the fine grid is ``levels`` noise levels uniform in ``λ = −log σ`` from ``σ_max`` to ``σ_min``;
* each of its intervals is split into ``substeps`` λ-uniform steps, and DPM-Solver++(3M) (third order
  in λ, :func:`diffsample.solvers.dpm.dpmpp_3m`) walks the refined grid; its state at every fine level
  is recorded from the solver callback, which reports the state a step starts from;
* the last step, ``σ_min → 0``, is the exact first-order limit ``D(x(σ_min), σ_min)``, whose error along
  the ODE is ``O(σ_min²)`` (``D(x(σ), σ) = x(0) − σ² x''(0)/2 + O(σ³)``, :mod:`diffsample.solvers.unipc`).

With the defaults (120 levels, 4 substeps: 477 steps over the EDM span, ``h ≈ 0.022``) the teacher's end
point lies within about 1e-5 RMSE of the DOP853 reference on the library's test beds
(``tests/tuning/test_tuning.py`` checks it against :func:`diffsample.testbeds.reference_solution`), two to
three orders of magnitude below the few-step errors being tuned. Its cost, ``(levels − 1)·substeps + 1``
model calls on the calibration batch, is recorded in :attr:`Teacher.nfe`. It keeps ``levels`` copies of the
calibration batch (``states``); for large images lower ``levels`` or the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import steps
from ..contracts import Denoiser
from ..denoisers import as_denoiser
from ..errors import DiffsampleError
from ..sampling import sample

__all__ = ["Teacher", "teacher_subset", "teacher_trajectory"]


@dataclass
class Teacher:
    """The ODE solution of a calibration batch on a fine grid.

    Attributes:
        grid: the fine positive levels, float64, strictly decreasing from ``σ_max`` to ``σ_min``.
        states: ``x(grid[j])`` for every level, shape ``(len(grid), B, …)``; ``states[0]`` is the calibration batch.
        final: ``x(0)``, shape ``(B, …)``.
        nfe: model evaluations (per sample) the teacher spent.
        method: a one-line description for a plan's provenance.
    """

    grid: torch.Tensor
    states: torch.Tensor
    final: torch.Tensor
    nfe: int
    method: str

    @property
    def start(self) -> torch.Tensor:
        """The calibration batch (the states at ``σ_max``)."""
        return self.states[0]

    @property
    def sigma_max(self) -> float:
        return float(self.grid[0])

    @property
    def sigma_min(self) -> float:
        return float(self.grid[-1])


def teacher_trajectory(
    denoiser: Denoiser,
    x: torch.Tensor,
    *,
    sigma_min: float,
    sigma_max: float,
    levels: int = 120,
    substeps: int = 4,
    solver: str = "dpmpp_3m",
) -> Teacher:
    """Solve the PF-ODE from ``x`` (states at ``sigma_max``) to σ = 0, recording it on a fine λ-uniform grid.

    Args:
        denoiser: any σ-space denoiser (test bed or network).
        x: the calibration batch at ``sigma_max``, shape ``(B, …)``.
        sigma_min, sigma_max: the span of the fine grid (its lowest and highest positive levels).
        levels: positive levels of the fine grid (≥ 2).
        substeps: solver steps per fine interval (≥ 1).
        solver: a registered one-call-per-step solver whose callback reports each step's starting state.
    """
    if levels < 2 or substeps < 1:
        raise DiffsampleError(f"teacher needs levels >= 2 and substeps >= 1, got {levels} and {substeps}")
    fine = steps.logsnr((levels - 1) * substeps + 1, sigma_min, sigma_max)  # ends in 0
    grid = fine[:-1:substeps].clone()
    recorded: list[torch.Tensor] = []

    def keep(info: dict) -> None:
        if info["i"] % substeps == 0:
            recorded.append(info["x"].detach().clone())

    den = as_denoiser(denoiser)
    before = den.nfe
    final = sample(den, x, fine, solver=solver, callback=keep)
    if len(recorded) != levels:
        raise DiffsampleError(
            f"teacher solver {solver!r} reported {len(recorded)} states for {levels} levels; "
            "it must report once per step"
        )
    h = math.log(sigma_max / sigma_min) / ((levels - 1) * substeps)
    method = f"{solver}, {len(fine) - 1} steps (h = {h:.3g} in log-SNR) on [{sigma_min:g}, {sigma_max:g}] -> 0"
    return Teacher(grid, torch.stack(recorded), final, den.nfe - before, method)


def teacher_subset(teacher: Teacher, index: torch.Tensor) -> Teacher:
    """The teacher of the samples ``index`` of its batch (same grid, cost and method)."""
    return Teacher(teacher.grid, teacher.states[:, index], teacher.final[index], teacher.nfe, teacher.method)
