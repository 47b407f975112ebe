"""Picard iteration of a solver's walk over a sliding window of steps (ParaDiGMS, Shih et al. 2023).

A step-wise solver walks ``x_{j+1} = Φ_j(x_j)``, ``j = 0 … n−1``, where ``Φ_j`` is one call of the solver on the two
levels ``sigmas[j:j+2]`` (Euler, Heun, DPM-Solver-2S …; an SDE step with its noise ``z_j`` fixed in advance, so
``Φ_j`` is a deterministic map). Shih et al. ("Parallel Sampling of Diffusion Models", NeurIPS 2023, eq. 5) solve the
whole walk as a fixed point: on a window of ``w`` steps starting at ``t``, every round updates all points at once,

    x^{k+1}_{j+1} = x_t + Σ_{i=t}^{j} ( Φ_i(x^k_i) − x^k_i ),        t ≤ j < t + w,

so the ``w`` evaluations ``Φ_i(x^k_i)`` of a round are independent and run as one batched model call per stage
(:mod:`.lockstep`). The same iterate is computed here as the scan

    x^{k+1}_{t} = x_t,      x^{k+1}_{j+1} = Φ_j(x^k_j) + ( x^{k+1}_j − x^k_j ),

equal to eq. 5 in exact arithmetic (by induction on ``j``), with one property eq. 5 lacks in floating point: where
a point did not move (``x^{k+1}_j = x^k_j`` bitwise) the correction is exactly zero and ``x^{k+1}_{j+1} = Φ_j(x^k_j)``
bitwise, so the fixed point is the sequential walk itself, not a rounding of it.

Convergence and the window (Shih et al., Algorithm 1): after a round, point ``j`` has converged when its change
``‖x^{k+1}_j − x^k_j‖`` (root mean square over the sample's elements) is at most ``tol``; the window of each sample
slides to the first point that has not converged, and the point after the window's start always has (it depends only
on ``x_t``, which is final). So every round advances every window by at least one step: **rounds ≤ steps**, and
with ``tol = 0`` the result is the sequential walk bitwise (for a denoiser whose rows do not depend on the other
rows of its batch: point ``t + m`` is final after ``m`` rounds). With ``tol > 0`` accepted points differ from the
sequential ones by about ``tol`` each. New points entering the window start from the window's last estimate.

Each sample has its own window, so sample ``i``'s result and its round count depend on its own start and noise only,
never on the other samples of the batch. Multistep solvers are refused: their step reads the previous steps' model
values, so one call on ``sigmas[j:j+2]`` is not their step ``j``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from .. import contracts, solvers, steps
from ..errors import DiffsampleError
from ..sampling import sample
from ..transforms.base import work_dtype
from ..transforms.guard import step_index
from .lockstep import Lockstep

__all__ = ["STEPWISE_SOLVERS", "PicardResult", "StepNoise", "picard", "sequential"]

STEPWISE_SOLVERS = frozenset(
    {"euler", "heun", "dpm_solver_1", "dpm_solver_2s", "dpm_solver_3s", "dpmpp_2s", "ddim", "ddpm", "euler_ancestral"}
)
"""Registered solvers whose walk is the composition of their one-step walks on ``sigmas[j:j+2]`` (bitwise; a test
checks it). EDM's sampler is not: its churn ``γ = S_churn/N`` depends on the number of steps of the call."""


@dataclass(frozen=True)
class PicardResult:
    """The state at ``sigmas[-1]`` and what it cost.

    ``rounds``: Picard rounds (the largest over the samples' windows, which run together); ``batched_calls``:
    denoiser calls made, the latency in model calls (sequential: ``sequential_calls``); ``row_evaluations``: rows
    evaluated in all (every sample, every window slot); ``sequential_calls``: model calls of the sequential walk.
    """

    x: torch.Tensor
    rounds: int
    batched_calls: int
    row_evaluations: int
    sequential_calls: int
    steps: int

    @property
    def evaluations_per_sample(self) -> float:
        """Model evaluations per sample, the total work (sequential: ``sequential_calls``)."""
        return self.row_evaluations / self.x.shape[0]

    @property
    def speedup(self) -> float:
        """``sequential_calls / batched_calls``: the speed-up in model-call latency over the sequential walk."""
        return self.sequential_calls / self.batched_calls


class StepNoise:
    """Noise fixed in advance: ``draws[j]`` (shape ``(B, …)``) is the draw of step ``j`` of the walk down ``sigmas``.

    As a noise source ``noise(x, σ, σ')`` it returns the draw of the step starting at σ, so the sequential walk
    (:func:`sequential`) and the Picard rounds, which call step ``j`` many times, see the same ``z_j``.
    """

    def __init__(self, draws: torch.Tensor, sigmas: torch.Tensor) -> None:
        if draws.shape[0] != len(sigmas) - 1:
            raise DiffsampleError(f"{draws.shape[0]} noise draws for a walk of {len(sigmas) - 1} steps")
        self.draws = draws
        self.sigmas = sigmas

    @classmethod
    def draw(cls, source: contracts.NoiseSource, x: torch.Tensor, sigmas: torch.Tensor) -> StepNoise:
        """One draw of ``source`` per step, in step order: with :func:`diffsample.noise.seeded`, step ``j``'s draw
        is call ``j`` of each sample's stream, as in a sequential walk that draws once per step."""
        levels = [float(s) for s in sigmas.tolist()]
        draws = [source(x, levels[j], levels[j + 1]).to(dtype=x.dtype) for j in range(len(levels) - 1)]
        return cls(torch.stack(draws), sigmas)

    def __call__(self, x: torch.Tensor, sigma: float, sigma_next: float | None = None) -> torch.Tensor:
        draw = self.draws[step_index(self.sigmas, float(sigma))]
        if draw.shape != x.shape:
            raise DiffsampleError(f"fixed noise of shape {tuple(draw.shape)} for x of shape {tuple(x.shape)}")
        return draw

    def rows(self, j: int, rows: torch.Tensor) -> Callable[..., torch.Tensor]:
        """A noise source giving step ``j``'s draw of the samples ``rows`` (a one-step walk of those rows)."""
        draw = self.draws[j, rows]
        return lambda x, *_: draw


def stepwise_solver(solver: str) -> str:
    """``solver`` if its walk is a composition of one-step walks (:data:`STEPWISE_SOLVERS`), else an error."""
    solvers.spec(solver)  # an unknown name lists the registered ones
    if solver not in STEPWISE_SOLVERS:
        raise DiffsampleError(
            f"Picard sampling needs a step-wise solver (one step = one call on sigmas[j:j+2]); {solver!r} is not: "
            f"a multistep step reads earlier steps' model values. Step-wise solvers: {sorted(STEPWISE_SOLVERS)}"
        )
    return solver


def sequential(
    denoiser: contracts.Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    solver: str = "euler",
    *,
    noise: contracts.NoiseSource | None = None,
    **options: Any,
) -> torch.Tensor:
    """The sequential walk :func:`picard` solves, with the same noise fixed in advance (its reference)."""
    sigmas = steps.validate(sigmas)
    fixed = _fixed_noise(noise, solver, x.to(work_dtype(x.dtype)), sigmas)
    return sample(denoiser, x, sigmas, solver=solver, noise=fixed, **options)


def picard(
    denoiser: contracts.Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    solver: str = "euler",
    *,
    noise: contracts.NoiseSource | None = None,
    window: int | None = None,
    tol: float = 1e-3,
    check_finite: bool = True,
    **options: Any,
) -> PicardResult:
    """Walk ``x`` down ``sigmas`` with ``solver`` by Picard iteration (module docstring).

    Args:
        denoiser: ``D(x, sigma) -> x0_hat``; called on stacked rows with one σ per row (no conditioning keywords).
        x: the state at ``sigmas[0]``, shape ``(B, …)``.
        sigmas: the noise levels (validated as for :func:`diffsample.sample`).
        solver: a step-wise solver (:data:`STEPWISE_SOLVERS`).
        noise: for a stochastic solver, a noise source drawn once per step in advance (:class:`StepNoise`), or a
            :class:`StepNoise` itself.
        window: steps per window (default: all of them).
        tol: the root-mean-square change per sample under which a point has converged, in x's units; 0 iterates
            to the sequential walk bitwise.
        check_finite: as for :func:`diffsample.sample`.
        **options: the solver's options.

    Returns:
        A :class:`PicardResult`: the state at ``sigmas[-1]`` and rounds and model calls against the sequential walk.
    """
    name = stepwise_solver(solver)
    sigmas = steps.validate(sigmas)
    n = len(sigmas) - 1
    w = n if window is None else int(window)
    if w < 1:
        raise DiffsampleError(f"window must be a positive number of steps, got {window!r}")
    if not tol >= 0:
        raise DiffsampleError(f"tol must be >= 0, got {tol!r}")
    x = x.to(work_dtype(x.dtype), copy=True)
    fixed = _fixed_noise(noise, name, x, sigmas)
    traj = x.unsqueeze(0).repeat(n + 1, *([1] * x.dim()))  # traj[j]: the estimate of x_j, all start at x_0
    start = torch.zeros(x.shape[0], dtype=torch.long)  # each sample's window start: x_start is final
    walk = partial(_step, name=name, sigmas=sigmas, fixed=fixed, check_finite=check_finite, options=options)
    rounds = calls = rows = 0
    with ThreadPoolExecutor(max_workers=n) as pool:  # windows of samples apart span up to n steps
        while bool((start < n).any()):
            phi, lock = _round(pool, denoiser, traj, start, w, n, walk)
            start = _advance(traj, phi, start, w, n, tol)
            rounds, calls, rows = rounds + 1, calls + lock.calls, rows + lock.rows
    sequential_calls = solvers.spec(name).nfe_on(sigmas, **options)
    return PicardResult(traj[n], rounds, calls, rows, sequential_calls, n)


def _fixed_noise(
    noise: contracts.NoiseSource | None, solver: str, x: torch.Tensor, sigmas: torch.Tensor
) -> StepNoise | None:
    """The per-step noise of a stochastic solver's walk, drawn once (``None`` for a deterministic solver)."""
    if noise is None or isinstance(noise, StepNoise) or not solvers.spec(solver).stochastic:
        return noise if isinstance(noise, StepNoise) else None
    return StepNoise.draw(noise, x, sigmas)


def _step(
    denoiser: contracts.Denoiser,
    x: torch.Tensor,
    j: int,
    rows: torch.Tensor,
    *,
    name: str,
    sigmas: torch.Tensor,
    fixed: StepNoise | None,
    check_finite: bool,
    options: dict[str, Any],
    grad: bool,
    inference: bool,
) -> torch.Tensor:
    """``Φ_j(x)``: one call of the solver on ``sigmas[j:j+2]`` for the samples ``rows``, in the caller's grad mode."""
    noise = None if fixed is None else fixed.rows(j, rows)
    with torch.inference_mode(inference), torch.set_grad_enabled(grad):
        return sample(denoiser, x, sigmas[j : j + 2], solver=name, noise=noise, check_finite=check_finite, **options)


def _round(
    pool: ThreadPoolExecutor,
    denoiser: contracts.Denoiser,
    traj: torch.Tensor,
    start: torch.Tensor,
    w: int,
    n: int,
    walk: Callable[..., torch.Tensor],
) -> tuple[torch.Tensor, Lockstep]:
    """``Φ_j(x_j)`` for every step ``j`` in some sample's window, batched across steps: ``(phi, lockstep)``."""
    end = torch.clamp(start + w, max=n)
    members = []
    for j in range(int(start.min()), int(end.max())):
        rows = ((start <= j) & (j < end)).nonzero().flatten()
        if len(rows):
            members.append((j, rows))
    lock = Lockstep(denoiser, len(members))
    modes = {"grad": torch.is_grad_enabled(), "inference": torch.is_inference_mode_enabled()}
    futures = [
        pool.submit(lock.run, m, partial(walk, lock.proxy(m), traj[j, rows], j, rows, **modes))
        for m, (j, rows) in enumerate(members)
    ]
    phi = torch.zeros_like(traj[:-1])
    for (j, rows), future in zip(members, futures, strict=True):
        phi[j, rows] = future.result()
    return phi, lock


def _advance(traj: torch.Tensor, phi: torch.Tensor, start: torch.Tensor, w: int, n: int, tol: float) -> torch.Tensor:
    """Update ``traj`` in place by the scan (module docstring) and return each sample's new window start."""
    new_start = start.clone()
    for t in torch.unique(start[start < n]).tolist():
        rows = (start == t).nonzero().flatten()
        e = min(t + w, n)
        old = traj[t : e + 1, rows].clone()
        new = old.clone()
        for j in range(t, e):
            new[j - t + 1] = phi[j, rows] + (new[j - t] - old[j - t])
        change = (new[1:] - old[1:]).reshape(e - t, len(rows), -1).square().mean(2).sqrt()  # (slots, rows)
        converged = change <= tol
        converged[0] = True  # x_{t+1} depends on the final x_t only
        done = converged.long().cumprod(0).sum(0)  # leading converged points per row
        traj[t + 1 : e + 1, rows] = new[1:]
        traj[e + 1 :, rows] = new[-1]  # points beyond the window start from its last estimate
        new_start[rows] = t + done
    return new_start
