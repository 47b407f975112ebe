"""Step schedules by dynamic programming over a fine σ grid, scored against a teacher trajectory.

Both programmes choose ``n`` steps ``σ_max = g_{i_0} > g_{i_1} > … > g_{i_{n−1}} > 0`` among the fine
levels ``g_0 > … > g_{M−1}`` of a :class:`~diffsample.tuning.teacher.Teacher` (node ``M`` stands for σ = 0);
every step costs one model call.

GITS-style: additive local costs (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion
Sampling", §4)
    The cost of a step ``i → j`` is the error of one first-order (DDIM) step started *on the teacher*,
    ``c(i, j) = RMSE(x̂_j, x(g_j))`` with ``x̂_j = D_i + (g_j/g_i)(x(g_i) − D_i)`` and ``D_i = D(x(g_i), g_i)``
    (into σ = 0: ``x̂ = D_i``), and the schedule minimises ``Σ_steps c`` exactly (:func:`min_cost_path`,
    Bellman's recursion ``C_k(j) = min_i C_{k−1}(i) + c(i, j)``). All costs come from ``M`` model calls
    (one per fine level), whatever ``n``. The sum of local errors bounds the end-point error when the
    flow does not expand errors (triangle inequality), which the PF-ODE of these beds roughly satisfies
    on the way down; it ignores how errors propagate and the higher-order solvers' history.

OSS-style: propagated student states (Pei et al. 2025, "Optimal Stepsize for Diffusion Sampling", §3.2)
    Stage ``k`` holds, for every level ``j``, the student's *own* state after ``k`` steps along the best
    path found to ``j`` (and the model values it visited). The next stage evaluates the model once on each
    held state (one batched call per stage) and takes one step of the chosen solver strategy from it to
    every lower level; level ``j`` keeps the predecessor whose result is closest to the teacher's
    ``x(g_j)``. The last stage steps to σ = 0 and keeps the predecessor with the least end-point error. The
    steps use the true multistep history of the path, so the error returned is exactly the end-point error
    of the returned schedule run with that strategy (:func:`propagated_dp` checks it in the tests). It is a
    greedy recursion (the best state at ``j`` after ``k`` steps need not lie on the best ``n``-step path),
    as in the paper; it costs about ``n·M`` model evaluations of the calibration batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..contracts import Denoiser
from ..errors import DiffsampleError
from ..solvers.plan_solver import Visit, step_update
from .teacher import Teacher

__all__ = ["DPResult", "Evaluator", "gits_costs", "min_cost_path", "propagated_dp"]


class Evaluator:
    """Calls a denoiser on stacks of states and counts the work in calibration-batch evaluations.

    ``rows`` states of one calibration batch each go through the model in chunks of at most ``max_rows``
    samples, each row with its own σ (the denoiser contract allows a ``(B,)`` sigma). :attr:`nfe` is the
    number of samples evaluated divided by the calibration size, times the denoiser's ``nfe_per_call``:
    the model evaluations a per-sample run would spend.
    """

    def __init__(self, denoiser: Denoiser, batch: int, max_rows: int = 8192) -> None:
        self.denoiser = denoiser
        self.batch = batch
        self.max_rows = max(int(max_rows), batch)
        self.samples = 0

    @property
    def nfe(self) -> float:
        return self.samples / self.batch * int(getattr(self.denoiser, "nfe_per_call", 1))

    def __call__(self, states: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
        """``D`` at ``states`` of shape ``(R, B, …)``, row ``r`` at level ``sigmas[r]``; returns that shape."""
        r, b = states.shape[0], states.shape[1]
        flat = states.reshape(r * b, *states.shape[2:])
        sig = torch.tensor(sigmas, dtype=torch.float64).repeat_interleave(b).to(states.device)
        outs = []
        for lo in range(0, r * b, self.max_rows):
            hi = min(lo + self.max_rows, r * b)
            outs.append(self.denoiser(flat[lo:hi], sig[lo:hi].to(flat.dtype)).to(states.dtype))
        self.samples += r * b
        return torch.cat(outs).reshape(states.shape)


def _rmse_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMSE over all but the first axis, float64: ``(R, B, …) × (R, B, …) → (R,)``."""
    return (a.to(torch.float64) - b.to(torch.float64)).flatten(1).square().mean(1).sqrt()


def min_cost_path(cost: torch.Tensor, n_steps: int) -> tuple[list[int], float]:
    """The path ``0 = i_0 < i_1 < … < i_n = L − 1`` of exactly ``n_steps`` edges minimising ``Σ cost[i_k, i_{k+1}]``.

    ``cost`` is an ``(L, L)`` matrix of which only the entries above the diagonal are read (``+inf``
    forbids an edge). Bellman's recursion ``C_k(j) = min_{i<j} C_{k−1}(i) + cost[i, j]`` over the ``n``
    stages, ``O(n L²)``. Returns the nodes and the total cost.
    """
    cost = torch.as_tensor(cost, dtype=torch.float64)
    size = cost.shape[0]
    if cost.shape != (size, size) or not 1 <= n_steps <= size - 1:
        raise DiffsampleError(
            f"min_cost_path needs a square cost matrix and 1 <= n_steps <= {size - 1}, "
            f"got shape {tuple(cost.shape)} and n_steps={n_steps}"
        )
    upper = torch.triu(torch.ones(size, size, dtype=torch.bool), diagonal=1)
    edges = torch.where(upper, cost, torch.full_like(cost, math.inf))
    best = torch.full((size,), math.inf, dtype=torch.float64)
    best[0] = 0.0
    back = []
    for _ in range(n_steps):
        total = best[:, None] + edges  # (from, to)
        best, arg = total.min(0)
        back.append(arg)
    if not math.isfinite(float(best[-1])):
        raise DiffsampleError(f"no path of {n_steps} finite-cost edges from node 0 to node {size - 1}")
    path = [size - 1]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return path[::-1], float(best[-1])


def gits_costs(teacher: Teacher, evaluate: Evaluator) -> torch.Tensor:
    """The GITS local-cost matrix ``(M + 1, M + 1)`` (node ``M`` is σ = 0): first-order steps from the teacher.

    Costs ``M`` calibration-batch evaluations (one per fine level, batched).
    """
    grid = teacher.grid.tolist()
    m = len(grid)
    states = teacher.states
    denoised = evaluate(states, grid)
    cost = torch.full((m + 1, m + 1), math.inf, dtype=torch.float64)
    for i in range(m):
        ratio = torch.tensor([g / grid[i] for g in grid[i + 1 :]], dtype=states.dtype)
        shape = (-1,) + (1,) * (states.dim() - 1)
        steps_to = denoised[i] + ratio.reshape(shape) * (states[i] - denoised[i])  # DDIM to every lower level
        cost[i, i + 1 : m] = _rmse_rows(steps_to, states[i + 1 :])
        cost[i, m] = float(_rmse_rows(denoised[i][None], teacher.final[None])[0])
    return cost


@dataclass
class DPResult:
    """A schedule from :func:`propagated_dp`: fine-grid indices of the positive levels and the end-point RMSE."""

    indices: list[int]
    sigmas: list[float]
    error: float


@dataclass
class _Node:
    state: torch.Tensor
    visits: list[Visit]  # model values on the path before this node, newest first
    parent: int
    error: float


def propagated_dp(
    teacher: Teacher,
    evaluate: Evaluator,
    n_steps: int,
    *,
    prediction: str = "data",
    order: int = 2,
    variant: str = "bh2",
    progress: Callable[[str], None] | None = None,
) -> DPResult:
    """OSS-style dynamic programme (module docstring) for ``n_steps`` steps of one fixed strategy.

    The steps are those of :func:`diffsample.solvers.plan_solver.plan_solver` without corrector, with the
    given ``prediction``, ``order`` and ``variant`` at every step (orders warm up from the points visited).
    Returns the positive levels (``σ_max`` first; a walk appends 0) and the end-point RMSE against the
    teacher, which is the RMSE of that exact run.
    """
    grid = teacher.grid.tolist()
    m = len(grid)
    if not 1 <= n_steps <= m:
        raise DiffsampleError(f"propagated_dp: n_steps must be between 1 and {m} (the fine levels), got {n_steps}")
    stages: list[dict[int, _Node]] = [{0: _Node(teacher.start, [], -1, 0.0)}]
    shape = (-1,) + (1,) * teacher.start.dim()
    final_best: tuple[float, int, torch.Tensor] | None = None
    for k in range(n_steps):
        held = stages[-1]
        idx = sorted(held)
        denoised = evaluate(torch.stack([held[i].state for i in idx]), [grid[i] for i in idx])
        last = k == n_steps - 1
        top = m - 1 - (n_steps - k - 2)  # levels after j must leave room for the remaining steps
        nxt: dict[int, _Node] = {}
        for r, i in enumerate(idx):
            node = held[i]
            visits = [Visit(grid[i], node.state, denoised[r]), *node.visits[:2]]
            levels = [0.0] if last else grid[i + 1 : top + 1]
            if not levels:
                continue
            sig = [v.sigma for v in visits]
            ups = [step_update(sig, s, prediction=prediction, order=order, variant=variant) for s in levels]
            noise = prediction == "noise"
            outs = [v.output(noise) for v in visits]
            keep = torch.tensor([u.keep for u in ups], dtype=node.state.dtype).reshape(shape)
            cur = torch.tensor([u.cur for u in ups], dtype=node.state.dtype).reshape(shape)
            x = keep * node.state + cur * outs[0]
            for q in range(len(ups[0].prev)):
                x = x + torch.tensor([u.prev[q] for u in ups], dtype=node.state.dtype).reshape(shape) * outs[q + 1]
            if last:
                err = float(_rmse_rows(x, teacher.final[None])[0])
                if final_best is None or err < final_best[0]:
                    final_best = (err, i, x[0])
                continue
            errs = _rmse_rows(x, teacher.states[i + 1 : top + 1]).tolist()
            for off, e in enumerate(errs):
                j = i + 1 + off
                if math.isfinite(e) and (j not in nxt or e < nxt[j].error):
                    nxt[j] = _Node(x[off], visits, i, e)
        if last:
            break
        if not nxt:
            raise DiffsampleError("propagated_dp: every candidate step diverged")
        stages.append(nxt)
        if progress:
            progress(f"dp stage {k + 1}/{n_steps}: {len(nxt)} levels")
    if final_best is None:
        raise DiffsampleError("propagated_dp: every candidate path diverged")
    error, j, _ = final_best
    path = [j]
    for stage in reversed(stages[1:]):
        path.append(stage[path[-1]].parent)
    path = path[::-1]
    return DPResult(path, [grid[i] for i in path], error)
