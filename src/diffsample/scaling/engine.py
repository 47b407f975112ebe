"""The particle engine shared by every inference-time scaling method (continuous and masked discrete).

A sampler is seen as a Markov chain over levels ``0 → 1 → … → n`` (noise to data). A :class:`Proposal` advances a
batch of particles one level and reports the clean prediction ``x̂0`` of the new state (for intermediate rewards)
and, when it knows them, the log-densities of its own transition ``log q(x_{i+1} | x_i)`` and of the pretrained
model's transition ``log p(x_{i+1} | x_i)``. The engine runs ``K`` particles in each of ``G`` populations, weights
them with Feynman–Kac potentials, resamples when the effective sample size drops, corrects the last weights so the
target is the reward-tilted law ``p(x) exp(r(x)/α) / Z``, and estimates ``log Z``.

Feynman–Kac steering (Singhal et al. 2025, "A General Framework for Inference-time Scaling and Steering of Diffusion
Models", §3, eqs. 4–6): with intermediate log-values ``ℓ_i`` (default ``r(x̂0_i)/α``; any value function may be
passed, e.g. the exact log-twist ``log E[exp(r(x0)/α) | x_i]``), the potential ``log G_i`` at level ``i < n`` is

* ``difference``: ``ℓ_i − ℓ_{i−1}`` (``ℓ_0 = 0``): a twisted SMC whose twist is ``exp(ℓ_i)``;
* ``max``:        ``max_{j ≤ i} ℓ_j``;
* ``sum``:        ``Σ_{j ≤ i} ℓ_j``;
* ``current``:    ``ℓ_i``;

and at the last level ``log G_n = r(x_n)/α − Σ_{i<n} log G_i`` along the particle's own ancestry (the sums are
carried through resampling), so the product of potentials along every path is ``exp(r(x_n)/α)`` and the weighted
particles target the tilted law whatever the scheme. With a proposal ``q`` other than the model's ``p``, every
step adds ``log p(x_{i+1} | x_i) − log q(x_{i+1} | x_i)`` (twisted SMC; Wu et al. 2023, "Practical and
Asymptotically Exact Conditional Sampling in Diffusion Models", Alg. 1).

Resampling (:mod:`.resampling`) happens after a step whose weights have ``ESS < ess_threshold · K``; the normaliser
estimate is ``log Ẑ = Σ_{resampling steps and the end} log (1/K) Σ_k w_k`` (Doucet & Johansen 2009, eq. 31), an
unbiased estimate of ``Z = E_p[exp(r(x)/α)]`` (``exp(log Ẑ)`` is unbiased, not ``log Ẑ``).

Determinism and batch invariance: population ``g`` has a seed ``s_g``; its particle slot ``k`` gets the stream seed
``derive_seed(s_g, k)`` (the proposal draws row ``g·K + k`` from it; a resampled particle keeps drawing from the
slot it lands in) and its resampling uniforms come from ``derive_seed(s_g, RESAMPLING_STREAM)``. So population ``g``
gives the same result whatever the other populations are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import DiffsampleError, ShapeError
from ..noise import CounterStreams, derive_seed, parse_seeds, splitmix64
from .resampling import RESAMPLING_SCHEMES, effective_sample_size, log_mean_weight, resample, uniforms_needed

__all__ = [
    "POTENTIALS",
    "RESAMPLING_STREAM",
    "CachedValue",
    "CountedReward",
    "Particles",
    "Proposal",
    "ProposalCost",
    "ScalingCost",
    "SMCResult",
    "Transition",
    "ValueFunction",
    "draw_uniforms",
    "feynman_kac",
    "population_seeds",
    "run_chain",
    "slot_seeds",
    "uniform_streams",
]

POTENTIALS = ("difference", "max", "sum", "current")
"""The Feynman–Kac potential schemes :func:`feynman_kac` knows (module docstring)."""

RESAMPLING_STREAM = 2**40
"""Index of the per-population stream that gives resampling / selection uniforms (slots use ``0 … K−1``)."""


@dataclass
class Particles:
    """A batch of ``N = G·K`` particles at one level of the chain (row ``g·K + k``: population ``g``, slot ``k``).

    ``x`` is the state (float images, token ids …), ``x0_hat`` the clean prediction at ``x`` (equal to ``x`` at
    the last level), ``level`` the index ``i`` of the level, ``time`` a float describing it (σ for continuous
    samplers, the masked fraction for masked discrete ones) and ``extras`` per-particle tensors a proposal caches
    (a gradient, a log-twist …). Resampling indexes ``x``, ``x0_hat`` and every extra along dimension 0.
    """

    x: torch.Tensor
    x0_hat: torch.Tensor
    level: int
    time: float
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def select(self, index: torch.Tensor) -> Particles:
        """The particles ``index`` (int64 ``(N',)``, rows of this batch), extras included."""
        return replace(
            self, x=self.x[index], x0_hat=self.x0_hat[index], extras={k: v[index] for k, v in self.extras.items()}
        )


@dataclass
class Transition:
    """What a proposal step returns: the new ``particles`` (level ``i + 1``) and, when known, ``(N,)`` float64
    ``log_proposal = log q(x_{i+1} | x_i)`` and ``log_base = log p(x_{i+1} | x_i)`` (both or neither; ``None``
    means the proposal is the model's own transition, so their difference is 0)."""

    particles: Particles
    log_proposal: torch.Tensor | None = None
    log_base: torch.Tensor | None = None


@dataclass(frozen=True)
class ProposalCost:
    """Per-sample counts a proposal spent since its last :meth:`Proposal.start`: ``network_evaluations``,
    ``backward_passes`` and ``auxiliary_evaluations`` (rows scored by a reward, twist or value inside the proposal)."""

    network_evaluations: int = 0
    backward_passes: int = 0
    auxiliary_evaluations: int = 0


@runtime_checkable
class Proposal(Protocol):
    """One step of a sampler on a batch of particles (the engine's only view of a model).

    ``num_steps`` levels are crossed (level ``num_steps`` is data). :meth:`start` draws the initial particles, row
    ``r`` from its own stream seeded by ``seeds[r]``, and resets the proposal's counters; :meth:`step` advances every
    row one level, row ``r`` continuing the stream of ``seeds[r]`` (rows are slots: the stream belongs to the row,
    not to the particle that was resampled into it). :meth:`cost` gives per-sample counts since :meth:`start`
    (a batch of ``N`` rows through the network counts ``N``; CFG counts 2 per row).
    """

    @property
    def num_steps(self) -> int: ...

    def start(self, seeds: Sequence[int]) -> Particles: ...

    def step(self, particles: Particles) -> Transition: ...

    def cost(self) -> ProposalCost: ...


ValueFunction = Callable[[Particles], torch.Tensor]
"""An intermediate log-value ``ℓ(particles) -> (N,)`` (e.g. ``r(x̂0)/α`` or an exact log-twist); the engine counts
its evaluations (``auxiliary_evaluations``) unless it is a :class:`CachedValue`."""


@dataclass(frozen=True)
class CachedValue:
    """The log-value a proposal already computed and cached in ``particles.extras[key]`` (free: counted there)."""

    key: str = "log_twist"

    def __call__(self, particles: Particles) -> torch.Tensor:
        if self.key not in particles.extras:
            raise DiffsampleError(
                f"the proposal caches no {self.key!r}; it has {sorted(particles.extras)} (use a twisted proposal)"
            )
        return particles.extras[self.key]


class CountedReward:
    """A reward ``r(x) -> (N,)`` with honest counting: ``calls`` (invocations) and ``evaluations`` (samples scored).

    ``fn`` may be any callable (differentiable or not); the output is checked for shape and returned as float64.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if not callable(fn):
            raise DiffsampleError(f"a reward must be callable as r(x) -> (N,), got {type(fn).__name__}")
        self.fn = fn.fn if isinstance(fn, CountedReward) else fn
        self.calls = 0
        self.evaluations = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fn(x)
        if not isinstance(out, torch.Tensor) or out.shape != (x.shape[0],):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ShapeError(f"a reward must return shape ({x.shape[0]},) for {x.shape[0]} samples, got {shape}")
        self.calls += 1
        self.evaluations += int(x.shape[0])
        return out.to(torch.float64)


@dataclass(frozen=True)
class ScalingCost:
    """What a scaling run spent, in total over all populations: per-sample ``network_evaluations`` (a batch of N
    rows counts N), ``backward_passes``, ``reward_calls`` (invocations), ``reward_evaluations`` (samples scored),
    ``auxiliary_evaluations`` (rows scored by a value function or a twist inside a proposal) and ``wall_seconds``."""

    network_evaluations: int
    backward_passes: int
    reward_calls: int
    reward_evaluations: int
    auxiliary_evaluations: int
    wall_seconds: float

    @property
    def total(self) -> int:
        """Network plus reward plus auxiliary evaluations plus backward passes: the compute axis of the figures."""
        return self.network_evaluations + self.reward_evaluations + self.auxiliary_evaluations + self.backward_passes


@dataclass
class SMCResult:
    """A finished particle run. ``x``: ``(G, K, …)`` final particles; ``log_weights``: ``(G, K)`` float64 final
    (corrected) log-weights, the particles weighted by them target ``p(x) exp(r(x)/α)/Z``; ``log_normalizer``:
    ``(G,)`` the estimate of ``log Z``; ``rewards``: ``(G, K)`` ``r(x)``; ``ess``: ``(n, G)`` ESS after each step's
    reweighting; ``resampled``: ``(n, G)`` bool, whether a population resampled after that step; ``cost``."""

    x: torch.Tensor
    log_weights: torch.Tensor
    log_normalizer: torch.Tensor
    rewards: torch.Tensor
    ess: torch.Tensor
    resampled: torch.Tensor
    cost: ScalingCost

    def draw(self, seeds: int | Sequence[int]) -> torch.Tensor:
        """One particle per population, ``(G, …)``, drawn by its final weight with a uniform from ``seeds``."""
        g, k = self.log_weights.shape
        u = draw_uniforms(uniform_streams(population_seeds(seeds, g), RESAMPLING_STREAM + 1), g, 1)
        cdf = torch.cumsum(torch.softmax(self.log_weights, dim=1), dim=1)
        idx = torch.searchsorted(cdf, u, right=True).clamp_max(k - 1)[:, 0]
        return self.x[torch.arange(g), idx]


def population_seeds(seeds: int | Sequence[int], populations: int) -> list[int]:
    """One seed per population: a list of ``populations`` seeds, or one integer ``s`` giving ``derive_seed(s, g)``."""
    base, listed = parse_seeds(seeds, "population seeds")
    if listed is None:
        assert base is not None
        return [derive_seed(base, g) for g in range(populations)]
    if len(listed) != populations:
        raise ShapeError(f"{populations} populations need {populations} seeds, got {len(listed)}")
    return listed


def slot_seeds(pop_seeds: Sequence[int], particles: int) -> list[int]:
    """The stream seed of every row ``g·K + k``: ``derive_seed(s_g, k)``."""
    return [derive_seed(s, k) for s in pop_seeds for k in range(particles)]


def _uniform_block(mixed: np.ndarray, key: int, size: int) -> np.ndarray:
    base = splitmix64(mixed ^ np.uint64(key & ((1 << 64) - 1)))[:, None]
    with np.errstate(over="ignore"):
        bits = splitmix64(base + np.arange(size, dtype=np.uint64)[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [0, 1)


def _key(k: int) -> int:
    return int(splitmix64(np.array([0x0A11CE00 + k], dtype=np.uint64))[0])


def uniform_streams(pop_seeds: Sequence[int], stream: int) -> CounterStreams:
    """Per-population counter streams of uniforms (``.draw(G, n, block, key)``), stream ``stream`` of each seed."""
    return CounterStreams([derive_seed(s, stream) for s in pop_seeds], "uniform streams")


def draw_uniforms(streams: CounterStreams, groups: int, n: int) -> torch.Tensor:
    """The next ``(G, n)`` float64 uniforms in ``[0, 1)`` of each population's stream."""
    return torch.from_numpy(streams.draw(groups, n, _uniform_block, _key))


def run_chain(proposal: Proposal, seeds: Sequence[int], stop: int | None = None) -> tuple[Particles, list[Particles]]:
    """Run ``proposal`` from :meth:`~Proposal.start` for ``stop`` levels (all by default) without weighting;
    returns the last particles and every level's particles (for path search and best-of-N)."""
    parts = proposal.start(seeds)
    path = [parts]
    for _ in range(proposal.num_steps if stop is None else stop):
        parts = proposal.step(parts).particles
        path.append(parts)
    return parts, path


def _ratio(tr: Transition) -> torch.Tensor | None:
    if (tr.log_proposal is None) != (tr.log_base is None):
        raise DiffsampleError("a transition must give both log_proposal and log_base, or neither")
    if tr.log_proposal is None:
        return None
    assert tr.log_base is not None
    return tr.log_base.to(torch.float64) - tr.log_proposal.to(torch.float64)


def feynman_kac(
    proposal: Proposal,
    reward: Callable[[torch.Tensor], torch.Tensor],
    *,
    particles: int,
    seeds: int | Sequence[int],
    populations: int = 1,
    alpha: float = 1.0,
    potential: str = "difference",
    value: ValueFunction | None = None,
    resampling: str = "systematic",
    ess_threshold: float = 0.5,
    every: int = 1,
) -> SMCResult:
    """Feynman–Kac steering / SMC / twisted SMC towards ``p(x) exp(r(x)/α) / Z`` (module docstring).

    Args:
        proposal: the sampler step (:class:`Proposal`); the model's own for FK steering, a twisted one for TDS.
        reward: ``r(x) -> (N,)`` on clean samples (any callable; counted).
        particles: ``K`` per population; ``populations``: ``G``; ``seeds``: one per population, or one integer.
        alpha: the tilt temperature (``λ = 1/α`` in Singhal et al.).
        potential: one of :data:`POTENTIALS`.
        value: intermediate log-value ``ℓ(particles)``; default ``r(x̂0)/α`` (reward calls counted). Its
            evaluations are counted in ``value_evaluations``.
        resampling: one of :data:`~diffsample.scaling.RESAMPLING_SCHEMES`.
        ess_threshold: resample after a step whose ``ESS < ess_threshold · K`` (``1`` = every step; ``0`` = never
            before the end).
        every: weight and consider resampling only every ``every`` levels (potentials are applied there only;
            the final correction keeps the target exact).
    """
    if potential not in POTENTIALS:
        raise DiffsampleError(f"unknown potential {potential!r}; valid: {', '.join(POTENTIALS)}")
    if resampling not in RESAMPLING_SCHEMES:
        raise DiffsampleError(f"unknown resampling scheme {resampling!r}; valid: {', '.join(RESAMPLING_SCHEMES)}")
    if particles < 1 or populations < 1:
        raise DiffsampleError(f"particles and populations must be >= 1, got {particles} and {populations}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise DiffsampleError(f"alpha must be positive and finite, got {alpha}")
    if not 0.0 <= ess_threshold <= 1.0:
        raise DiffsampleError(f"ess_threshold must lie in [0, 1], got {ess_threshold}")
    if every < 1:
        raise DiffsampleError(f"every must be >= 1, got {every}")
    began = time.perf_counter()
    g, k = populations, particles
    pops = population_seeds(seeds, g)
    counted = CountedReward(reward)
    value_evals = 0
    streams = uniform_streams(pops, RESAMPLING_STREAM)
    parts = proposal.start(slot_seeds(pops, k))
    n = proposal.num_steps
    f64 = torch.float64
    log_w = torch.zeros(g, k, dtype=f64)
    log_z = torch.zeros(g, dtype=f64)
    applied = torch.zeros(g * k, dtype=f64)  # Σ log G along each particle's ancestry
    prev_value = torch.zeros(g * k, dtype=f64)  # ℓ at the last weighting level (difference)
    best_value = torch.full((g * k,), -math.inf, dtype=f64)  # max (max scheme)
    sum_value = torch.zeros(g * k, dtype=f64)  # Σ ℓ (sum scheme)
    ess_rows, res_rows = [], []
    final_reward = torch.zeros(g * k, dtype=f64)
    for i in range(n):
        tr = proposal.step(parts)
        parts = tr.particles
        inc = torch.zeros(g * k, dtype=f64)
        ratio = _ratio(tr)
        if ratio is not None:
            inc = inc + ratio
        last = i == n - 1
        if last:
            final_reward = counted(parts.x).detach()
            log_g = final_reward / alpha - applied
        elif (i + 1) % every == 0:
            if value is None:
                ell = counted(parts.x0_hat) / alpha
            else:
                ell = value(parts).detach().to(f64).reshape(-1)
                value_evals += 0 if isinstance(value, CachedValue) else int(parts.x.shape[0])
            if potential == "difference":
                log_g = ell - prev_value
                prev_value = ell
            elif potential == "max":
                best_value = torch.maximum(best_value, ell)
                log_g = best_value.clone()
            elif potential == "sum":
                sum_value = sum_value + ell
                log_g = sum_value.clone()
            else:
                log_g = ell
            applied = applied + log_g
        else:
            log_g = torch.zeros(g * k, dtype=f64)
        log_w = log_w + (inc + log_g).reshape(g, k)
        ess = effective_sample_size(log_w)
        ess_rows.append(ess)
        may_resample = not last and (i + 1) % every == 0
        do = (ess < ess_threshold * k) if may_resample else torch.zeros(g, dtype=torch.bool)
        res_rows.append(do)
        # every population draws its uniforms at every level where it may resample, whether or not any does, so
        # its stream's position never depends on the other populations (batch invariance under an ESS trigger)
        u = draw_uniforms(streams, g, uniforms_needed(resampling, k)) if may_resample else None
        if u is not None and bool(do.any()):
            anc = resample(log_w, u, resampling)
            rows = torch.arange(g * k).reshape(g, k)
            keep = torch.where(do[:, None], torch.gather(rows, 1, anc), rows).reshape(-1)
            log_z = log_z + torch.where(do, log_mean_weight(log_w), torch.zeros_like(log_z))
            log_w = torch.where(do[:, None], torch.zeros_like(log_w), log_w)
            parts = parts.select(keep)
            applied, prev_value = applied[keep], prev_value[keep]
            best_value, sum_value = best_value[keep], sum_value[keep]
    log_z = log_z + log_mean_weight(log_w)
    spent = proposal.cost()
    cost = ScalingCost(
        spent.network_evaluations,
        spent.backward_passes,
        counted.calls,
        counted.evaluations,
        value_evals + spent.auxiliary_evaluations,
        time.perf_counter() - began,
    )
    return SMCResult(
        x=parts.x.detach().reshape(g, k, *parts.x.shape[1:]),
        log_weights=log_w,
        log_normalizer=log_z,
        rewards=final_reward.reshape(g, k),
        ess=torch.stack(ess_rows),
        resampled=torch.stack(res_rows),
        cost=cost,
    )
