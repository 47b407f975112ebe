"""Search over noises and paths with a verifier: best-of-N, zero-order search, path search (branch and re-noise).

Ma et al. 2025, "Inference-Time Scaling for Diffusion Models beyond Scaling Denoising Steps" (§3.2):

* **random search / best-of-N** — ``N`` independent samples, keep the one with the highest verifier score;
* **zero-order search** — around a pivot initial noise ``n``, draw ``N`` neighbours, sample from each, move the pivot
  to the best one if it beats the pivot, repeat. Neighbours are ``√(1 − λ²) n + λ ε`` (a step of size ``λ`` that
  keeps the neighbours standard normal, so every candidate is still a draw of the model's initial law);
* **search over paths** — run ``N`` particles to a checkpoint level, score ``r(x̂0)``, keep the best ``N/b``,
  copy each ``b`` times, re-noise the copies back ``back`` levels by the forward process (each copy with its own
  noise) and continue; at the end keep the best sample.

Every network evaluation, backward pass and verifier evaluation is counted in the returned
:class:`~diffsample.scaling.engine.ScalingCost` (the final scoring included). Populations are independent and seeded
as in :mod:`.engine`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from ..errors import DiffsampleError
from ..noise import derive_seed, seeded
from .engine import CountedReward, Particles, Proposal, ProposalCost, ScalingCost, population_seeds, slot_seeds

__all__ = ["NoiseStartProposal", "RenoisingProposal", "SearchResult", "best_of_n", "path_search", "zero_order_search"]

_F64 = torch.float64


@runtime_checkable
class NoiseStartProposal(Proposal, Protocol):
    """A proposal that can start from given initial states (continuous samplers: the initial noise)."""

    @property
    def sigmas(self) -> list[float]: ...

    @property
    def shape(self) -> tuple[int, ...]: ...

    def start_from(self, seeds: Sequence[int], x: torch.Tensor) -> Particles: ...


@runtime_checkable
class RenoisingProposal(Proposal, Protocol):
    """A proposal that can move particles back to an earlier level by its forward process."""

    def renoise(self, particles: Particles, level: int) -> Particles: ...


@dataclass
class SearchResult:
    """``x``: ``(G, …)`` the best sample per population; ``rewards``: ``(G,)`` its verifier score; ``history``:
    ``(G, rounds)`` best score after each round (one round for best-of-N); ``cost``."""

    x: torch.Tensor
    rewards: torch.Tensor
    history: torch.Tensor
    cost: ScalingCost


def _cost(proposals_spent: list[ProposalCost], reward: CountedReward, began: float) -> ScalingCost:
    return ScalingCost(
        sum(c.network_evaluations for c in proposals_spent),
        sum(c.backward_passes for c in proposals_spent),
        reward.calls,
        reward.evaluations,
        sum(c.auxiliary_evaluations for c in proposals_spent),
        time.perf_counter() - began,
    )


def _run(proposal: Proposal, parts: Particles) -> Particles:
    while parts.level < proposal.num_steps:
        parts = proposal.step(parts).particles
    return parts


def _check(n: int, populations: int) -> None:
    if n < 1 or populations < 1:
        raise DiffsampleError(f"the number of candidates and of populations must be >= 1, got {n} and {populations}")


def best_of_n(
    proposal: Proposal,
    reward: Callable[[torch.Tensor], torch.Tensor],
    *,
    n: int,
    seeds: int | Sequence[int],
    populations: int = 1,
) -> SearchResult:
    """Random search: ``n`` independent samples per population, keep the best under ``reward``."""
    _check(n, populations)
    began = time.perf_counter()
    pops = population_seeds(seeds, populations)
    counted = CountedReward(reward)
    parts = _run(proposal, proposal.start(slot_seeds(pops, n)))
    r = counted(parts.x.detach()).reshape(populations, n)
    best = r.argmax(1)
    x = parts.x.detach().reshape(populations, n, *parts.x.shape[1:])[torch.arange(populations), best]
    top = r.max(1).values
    return SearchResult(x, top, top[:, None], _cost([proposal.cost()], counted, began))


def zero_order_search(
    proposal: NoiseStartProposal,
    reward: Callable[[torch.Tensor], torch.Tensor],
    *,
    n: int,
    rounds: int,
    seeds: int | Sequence[int],
    step_size: float = 0.5,
    populations: int = 1,
) -> SearchResult:
    """Zero-order search around a pivot initial noise (module docstring): ``rounds`` rounds of ``n`` neighbours.

    With a deterministic proposal (``AncestralProposal(..., eta=0)``) a candidate's sample is a function of its
    initial noise, as in Ma et al.; a stochastic proposal draws fresh path noise for every candidate of every round.
    """
    _check(n, populations)
    if rounds < 1 or not 0.0 < step_size <= 1.0:
        raise DiffsampleError(f"rounds must be >= 1 and step_size in (0, 1], got {rounds} and {step_size}")
    if not isinstance(proposal, NoiseStartProposal):
        raise DiffsampleError(f"{type(proposal).__name__} cannot start from given noise (needs start_from)")
    began = time.perf_counter()
    g = populations
    pops = population_seeds(seeds, g)
    counted = CountedReward(reward)
    spent = []
    sigma0 = proposal.sigmas[0]
    # the pivot: one ordinary sample per population (slot seeds of stream n, apart from the candidates' 0 … n−1)
    pivot_seeds = [derive_seed(s, n) for s in pops]
    pivot_parts = _run(proposal, proposal.start(pivot_seeds))
    spent.append(proposal.cost())
    pivot_noise = _initial_noise(proposal, pivot_seeds)
    best_x = pivot_parts.x.detach()
    best_r = counted(best_x)
    history = []
    for j in range(rounds):
        cand_seeds = slot_seeds([derive_seed(s, 2**32 + j) for s in pops], n)
        eps = _initial_noise(proposal, [derive_seed(s, 2**32) for s in cand_seeds])
        lam = step_size
        cand = math.sqrt(1.0 - lam**2) * pivot_noise.repeat_interleave(n, 0) + lam * eps
        parts = _run(proposal, proposal.start_from(cand_seeds, sigma0 * cand))
        spent.append(proposal.cost())
        r = counted(parts.x.detach()).reshape(g, n)
        top, arg = r.max(1)
        better = top > best_r
        rows = torch.arange(g) * n + arg
        best_r = torch.where(better, top, best_r)
        mask = better.reshape(g, *([1] * (best_x.dim() - 1)))
        best_x = torch.where(mask, parts.x.detach()[rows], best_x)
        pivot_noise = torch.where(mask, cand[rows], pivot_noise)
        history.append(best_r)
    return SearchResult(best_x, best_r, torch.stack(history, 1), _cost(spent, counted, began))


def _initial_noise(proposal: NoiseStartProposal, seeds: Sequence[int]) -> torch.Tensor:
    """Standard normals of the proposal's particle shape, row ``r`` from ``seeds[r]`` (first draw of the stream)."""
    return seeded(list(seeds)).standard_normal((len(seeds), *proposal.shape), dtype=_F64)


def path_search(
    proposal: RenoisingProposal,
    reward: Callable[[torch.Tensor], torch.Tensor],
    *,
    n: int,
    checkpoints: Sequence[int],
    seeds: int | Sequence[int],
    branch: int = 2,
    back: int = 1,
    populations: int = 1,
) -> SearchResult:
    """Search over paths (module docstring): ``n`` particles per population; at every level in ``checkpoints`` keep
    the best ``n / branch`` by ``r(x̂0)``, copy each ``branch`` times, re-noise back ``back`` levels, continue."""
    _check(n, populations)
    if branch < 1 or n % branch:
        raise DiffsampleError(f"branch must divide n (n={n}), got {branch}")
    if not isinstance(proposal, RenoisingProposal):
        raise DiffsampleError(f"{type(proposal).__name__} cannot re-noise particles (needs renoise)")
    stops = sorted({int(c) for c in checkpoints})
    if any(not 0 < c < proposal.num_steps for c in stops) or any(c - back < 0 for c in stops) or back < 0:
        raise DiffsampleError(f"checkpoints must lie in (0, {proposal.num_steps}) and be >= back={back}, got {stops}")
    began = time.perf_counter()
    g = populations
    pops = population_seeds(seeds, g)
    counted = CountedReward(reward)
    parts = proposal.start(slot_seeds(pops, n))
    history = []
    done: set[int] = set()
    keep = n // branch
    while parts.level < proposal.num_steps:
        parts = proposal.step(parts).particles
        if parts.level in stops and parts.level not in done:
            done.add(parts.level)
            r = counted(parts.x0_hat.detach()).reshape(g, n)
            history.append(r.max(1).values)
            top = r.topk(keep, dim=1).indices  # (G, keep)
            rows = (top + torch.arange(g)[:, None] * n).repeat_interleave(branch, 1).reshape(-1)
            parts = parts.select(rows)
            if back > 0:
                parts = proposal.renoise(parts, parts.level - back)
    r = counted(parts.x.detach()).reshape(g, n)
    top, arg = r.max(1)
    history.append(top)
    x = parts.x.detach()[torch.arange(g) * n + arg]
    return SearchResult(x, top, torch.stack(history, 1), _cost([proposal.cost()], counted, began))
