"""Diffusion tree sampling and search (DTS / DTS*; Jain, Sareen, Pedramfar & Ravanbakhsh 2025, "Diffusion Tree
Sampling: Scalable inference-time alignment of diffusion models", §3, Alg. 1).

The reverse chain is a depth-``n`` tree: a node holds a state ``x_i``, a visit count and a soft-value estimate
``v̂(x_i)`` of ``V_i(x_i) = α log E_{p(x_{i+1:n} | x_i)}[exp(r(x_n)/α)]``, which obeys the soft Bellman equation
``V_i(x_i) = α log E_{p(x_{i+1} | x_i)}[exp(V_{i+1}(x_{i+1})/α)]``. Each iteration

1. *selects* a path from the root: DTS samples a child with probability ``∝ exp(v̂(c)/α)`` (Boltzmann), DTS* takes
   the child of largest ``v̂``; a node with fewer than ``branching`` children is *expanded* instead (a new child
   ``x_{i+1} ~ p(· | x_i)``);
2. *rolls out* the new node to the data level with the model, every intermediate state joining the tree;
3. scores the leaf, ``v̂ = r(x_n)``, and *backs up* along the path the soft Bellman estimate
   ``v̂(x) = α log (1/|C|) Σ_{c ∈ C} exp(v̂(c)/α)`` over the node's children ``C``.

The root is a dummy node whose ``branching`` children are initial states ``x_0`` drawn from the model's prior. DTS
returns a sample by descending from the root with the Boltzmann rule (the tree's estimate of the tilted law
``p(x) exp(r(x)/α)/Z``; exact as the number of rollouts grows); DTS* returns the best leaf found.

Every tree is one output sample with its own seed; its rows draw from the stream of its first initial state, so
trees are independent. Costs: one network evaluation per node created at σ > 0, one reward evaluation per rollout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import DiffsampleError
from ..noise import derive_seed
from .engine import (
    RESAMPLING_STREAM,
    CountedReward,
    Particles,
    Proposal,
    ScalingCost,
    draw_uniforms,
    population_seeds,
    uniform_streams,
)
from .search import SearchResult

__all__ = ["tree_sample", "tree_search"]


@dataclass
class _Node:
    state: Particles | None  # None for the dummy root
    level: int  # −1 for the root
    parent: _Node | None
    children: list[_Node] = field(default_factory=list)
    value: float = -math.inf
    visits: int = 0


def _soft_backup(node: _Node, alpha: float) -> None:
    vals = torch.tensor([c.value for c in node.children if c.visits > 0], dtype=torch.float64)
    node.value = alpha * float(torch.logsumexp(vals / alpha, 0) - math.log(vals.numel()))


def _pick(children: list[_Node], alpha: float, greedy: bool, u: float) -> _Node:
    seen = [c for c in children if c.visits > 0]
    fresh = [c for c in children if c.visits == 0]
    if fresh:
        return fresh[0]
    vals = torch.tensor([c.value for c in seen], dtype=torch.float64)
    if greedy:
        return seen[int(vals.argmax())]
    cdf = torch.cumsum(torch.softmax(vals / alpha, 0), 0)
    return seen[min(int(torch.searchsorted(cdf, torch.tensor([u], dtype=torch.float64), right=True)), len(seen) - 1)]


def _grow(
    proposal: Proposal,
    reward: CountedReward,
    seed: int,
    rollouts: int,
    branching: int,
    alpha: float,
    greedy: bool,
) -> tuple[_Node, list[_Node], list[float]]:
    """One tree: returns the root, its leaves and the best reward after each rollout."""
    starts = proposal.start([derive_seed(seed, k) for k in range(branching)])
    streams = uniform_streams([seed], RESAMPLING_STREAM)
    root = _Node(None, -1, None)
    root.children = [_Node(starts.select(torch.tensor([k])), 0, root) for k in range(branching)]
    leaves: list[_Node] = []
    best: list[float] = []
    n = proposal.num_steps
    for _ in range(rollouts):
        node = root
        while True:  # selection / expansion
            if node.level >= n:
                break
            if node is not root and len(node.children) < branching:
                assert node.state is not None
                child = _Node(proposal.step(node.state).particles, node.level + 1, node)
                node.children.append(child)
                node = child
                break
            u = float(draw_uniforms(streams, 1, 1)[0, 0])
            node = _pick(node.children, alpha, greedy, u)
            if node.visits == 0:
                break
        while node.level < n:  # rollout: every state joins the tree
            assert node.state is not None
            child = _Node(proposal.step(node.state).particles, node.level + 1, node)
            node.children.append(child)
            node = child
        assert node.state is not None
        if node.visits == 0:
            node.value = float(reward(node.state.x.detach())[0])
            leaves.append(node)
        node.visits += 1
        up = node.parent
        while up is not None:  # soft Bellman backup
            up.visits += 1
            _soft_backup(up, alpha)
            up = up.parent
        best.append(max(leaf.value for leaf in leaves))
    return root, leaves, best


def _run(
    proposal: Proposal,
    reward: Callable[[torch.Tensor], torch.Tensor],
    rollouts: int,
    seeds: int | Sequence[int],
    samples: int,
    branching: int,
    alpha: float,
    greedy: bool,
) -> SearchResult:
    if rollouts < 1 or samples < 1 or branching < 1:
        raise DiffsampleError(f"rollouts, samples and branching must be >= 1, got {rollouts}, {samples}, {branching}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise DiffsampleError(f"alpha must be positive and finite, got {alpha}")
    began = time.perf_counter()
    counted = CountedReward(reward)
    evals = backward = aux = 0
    xs, rs, hist = [], [], []
    for seed in population_seeds(seeds, samples):
        root, leaves, best = _grow(proposal, counted, seed, rollouts, branching, alpha, greedy)
        spent = proposal.cost()
        evals += spent.network_evaluations
        backward += spent.backward_passes
        aux += spent.auxiliary_evaluations
        if greedy:
            leaf = max(leaves, key=lambda node: node.value)
        else:
            streams = uniform_streams([seed], RESAMPLING_STREAM + 1)
            leaf = root
            while leaf.children:
                leaf = _pick(leaf.children, alpha, False, float(draw_uniforms(streams, 1, 1)[0, 0]))
        assert leaf.state is not None
        xs.append(leaf.state.x.detach()[0])
        rs.append(leaf.value)
        hist.append(best)
    cost = ScalingCost(evals, backward, counted.calls, counted.evaluations, aux, time.perf_counter() - began)
    return SearchResult(
        torch.stack(xs), torch.tensor(rs, dtype=torch.float64), torch.tensor(hist, dtype=torch.float64), cost
    )


def tree_sample(
    proposal: Proposal,
    reward: Callable[[torch.Tensor], torch.Tensor],
    *,
    rollouts: int,
    seeds: int | Sequence[int],
    samples: int = 1,
    branching: int = 4,
    alpha: float = 1.0,
) -> SearchResult:
    """DTS: ``samples`` independent trees of ``rollouts`` rollouts each, one Boltzmann-descended sample per tree
    (module docstring); ``history`` is the best leaf reward after each rollout."""
    return _run(proposal, reward, rollouts, seeds, samples, branching, alpha, greedy=False)


def tree_search(
    proposal: Proposal,
    reward: Callable[[torch.Tensor], torch.Tensor],
    *,
    rollouts: int,
    seeds: int | Sequence[int],
    samples: int = 1,
    branching: int = 4,
    alpha: float = 1.0,
) -> SearchResult:
    """DTS*: greedy selection on the soft values, the best leaf of each tree (module docstring)."""
    return _run(proposal, reward, rollouts, seeds, samples, branching, alpha, greedy=True)
