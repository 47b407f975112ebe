"""The exact output law of a masked sampler run with a chain's exact denoiser, by enumerating its randomness.

A sampler's step is a Markov kernel on partial sequences ``z`` (tokens and masks). Starting from the all-mask
state, :func:`exact_law` pushes the whole law through every step: each reachable ``z`` is evaluated once by the
exact denoiser (one batched call per step), each of its outcomes is listed with its probability, and equal
outcomes are merged. The kernels are built from the samplers' own pieces (the schedule's reveal probability,
:func:`~diffsample.discrete.orders.order_scores`, :func:`~diffsample.discrete.orders.select_positions`,
:func:`~diffsample.discrete.orders.reveal_counts`, :func:`~diffsample.discrete.ordered.blocks_of`):

* ``ancestral`` and ``tau_leaping``: every masked position independently stays masked (``1 − r``) or becomes
  ``v`` (``r p_i(v)``);
* ``confidence``, ``margin``, ``entropy``: the selected positions (a function of ``z``) become ``v`` w.p. ``p_i(v)``;
* ``random`` and ``first_hitting``: a uniformly random ``k``-subset of the candidates (``first_hitting`` is
  ``random`` with one token per step, its reveal times do not matter for a time-free denoiser);
* ``sampled_confidence``: every candidate's token is drawn, then the selection looks at the drawn values;
* ``remdm``: as ``ancestral`` with the ReMDM reveal probability, and each visible token masked again with
  probability ``σ_t``;
* ``entropy_bounded``: the selected prefix (its length a function of ``z`` and ``gamma``) as for the orders.

Orders are deterministic here (``order_temperature = 0``); the cost grows with the number of reachable states,
so this is for the small chains (``chain3x6``: at most ``4^6`` states).
"""

from __future__ import annotations

import itertools

import torch

from ..ancestral import step_reveal_probability
from ..entropy_bounded import entropy_budget_counts
from ..ordered import blocks_of
from ..orders import order_scores, reveal_counts, select_positions
from ..remdm import remask_probability, remdm_reveal_probability
from ..schedules import MaskingSchedule, linear, time_grid
from .chain import MarkovChain, encode

__all__ = ["EXACT_SAMPLERS", "exact_law"]

EXACT_SAMPLERS = (
    "ancestral",
    "tau_leaping",
    "first_hitting",
    "random",
    "confidence",
    "margin",
    "entropy",
    "sampled_confidence",
    "entropy_bounded",
    "remdm",
)


def _expand(
    z: torch.Tensor,
    w: torch.Tensor,
    src: torch.Tensor,
    p: torch.Tensor,
    r: torch.Tensor,
    remask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every outcome of revealing position ``i`` of row ``k`` with probability ``r[k, i]`` and token law
    ``p[src[k], i]`` and of masking it with probability ``remask[k, i]`` (visible positions), independently over
    positions; rows ``(z, weight, source state)``."""
    vocab = p.shape[-1]
    remask = torch.zeros_like(r) if remask is None else remask
    for i in range(z.shape[1]):
        active = r[:, i] > 0
        za, wa, sa, ra, ma = z[active], w[active], src[active], r[active], remask[active]
        tok_z = za.repeat_interleave(vocab, 0)
        tok_z[:, i] = torch.arange(vocab).repeat(len(za))
        tok_w = (wa[:, None] * ra[:, i, None] * p[sa, i]).reshape(-1)
        z = torch.cat([z[~active], tok_z, za])
        w = torch.cat([w[~active], tok_w, wa * (1.0 - ra[:, i])])
        src = torch.cat([src[~active], sa.repeat_interleave(vocab), sa])
        r = torch.cat([r[~active], ra.repeat_interleave(vocab, 0), ra])
        remask = torch.cat([remask[~active], ma.repeat_interleave(vocab, 0), ma])
        hidden = remask[:, i] > 0
        masked_z = z[hidden].clone()
        masked_z[:, i] = vocab
        z = torch.cat([z[~hidden], masked_z, z[hidden]])
        w = torch.cat([w[~hidden], w[hidden] * remask[hidden, i], w[hidden] * (1.0 - remask[hidden, i])])
        src = torch.cat([src[~hidden], src[hidden], src[hidden]])
        r = torch.cat([r[~hidden], r[hidden], r[hidden]])
        remask = torch.cat([remask[~hidden], remask[hidden], remask[hidden]])
        keep = w > 0
        z, w, src, r, remask = z[keep], w[keep], src[keep], r[keep], remask[keep]
    return z, w, src


def _merge(z: torch.Tensor, w: torch.Tensor, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    codes = encode(z, vocab + 1)
    unique, inverse = torch.unique(codes, return_inverse=True)
    merged = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, w)
    first = torch.full((len(unique),), len(codes), dtype=torch.int64).scatter_reduce_(
        0, inverse, torch.arange(len(codes)), reduce="amin"
    )
    return z[first], merged


def _random_subsets(
    z: torch.Tensor, w: torch.Tensor, candidates: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``(state index, reveal mask, weight)`` for every ``count``-subset of each state's candidates (every
    state has the same number of candidates)."""
    length = z.shape[1]
    m = int(candidates[0].sum())
    positions = torch.sort(torch.where(candidates, torch.arange(length), length + torch.arange(length)), -1).values
    subsets = torch.tensor(list(itertools.combinations(range(m), count)), dtype=torch.int64).reshape(-1, count)
    rows = torch.arange(len(z)).repeat_interleave(len(subsets))
    chosen = positions[rows[:, None], subsets.repeat(len(z), 1)]
    reveal = torch.zeros(len(rows), length, dtype=torch.float64).scatter_(1, chosen, 1.0)
    return rows, reveal, w[rows] / len(subsets)


def _ordered_step(
    z: torch.Tensor, w: torch.Tensor, p: torch.Tensor, order: str, candidates: torch.Tensor, counts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    states = torch.arange(len(z))
    if order == "random":
        if not (counts == counts[0]).all() or not (candidates.sum(-1) == candidates[0].sum()).all():
            raise ValueError("exact random order needs the same number of candidates in every state")
        rows, reveal, weights = _random_subsets(z, w, candidates, int(counts[0]))
        out, weights, _ = _expand(z[rows], weights, rows, p, reveal)
        return out, weights
    if order == "sampled_confidence":
        drawn, weights, src = _expand(z, w, states, p, candidates.to(torch.float64))
        scores = order_scores(p[src], order, drawn.clamp(max=p.shape[-1] - 1))
        chosen = select_positions(scores, candidates[src], counts[src])
        return torch.where(chosen, drawn, z[src]), weights
    chosen = select_positions(order_scores(p, order), candidates, counts)
    out, weights, _ = _expand(z, w, states, p, chosen.to(torch.float64))
    return out, weights


def exact_law(
    chain: MarkovChain,
    sampler: str,
    steps: int | None = None,
    *,
    block_length: int | None = None,
    schedule: MaskingSchedule | None = None,
    gamma: float = 0.0,
    strategy: str = "cap",
    eta: float = 0.05,
    window: tuple[float, float] | None = None,
) -> torch.Tensor:
    """The exact ``(V^L,)`` output law of ``sampler`` in ``steps`` steps on ``chain`` (module docstring);
    ``gamma`` is the entropy-bounded sampler's, ``strategy``, ``eta``, ``window`` ReMDM's."""
    if sampler not in EXACT_SAMPLERS:
        raise ValueError(f"no exact law for {sampler!r}; samplers with one: {', '.join(EXACT_SAMPLERS)}")
    vocab, length = chain.vocab_size, chain.length
    denoiser = chain.denoiser()
    z = torch.full((1, length), vocab, dtype=torch.int64)
    w = torch.ones(1, dtype=torch.float64)
    if sampler in ("ancestral", "tau_leaping"):
        schedule = schedule or linear()
        times = time_grid(int(steps or 0))
        for i in range(int(steps or 0)):
            r = step_reveal_probability(
                schedule, times[i], times[i + 1], "exact" if sampler == "ancestral" else "euler"
            )
            p = denoiser(z, times[i])
            z, w, _ = _expand(z, w, torch.arange(len(z)), p, (z == vocab).to(torch.float64) * r)
            z, w = _merge(z, w, vocab)
    elif sampler == "remdm":
        schedule = schedule or linear()
        times = time_grid(int(steps or 0))
        for i in range(int(steps or 0)):
            t, s = times[i], times[i + 1]
            sigma = remask_probability(schedule, t, s, strategy, eta, window)
            p = denoiser(z, t)
            hidden = (z == vocab).to(torch.float64)
            z, w, _ = _expand(
                z,
                w,
                torch.arange(len(z)),
                p,
                hidden * remdm_reveal_probability(schedule, t, s, sigma),
                (1.0 - hidden) * sigma,
            )
            z, w = _merge(z, w, vocab)
    elif sampler == "entropy_bounded":
        while (z == vocab).any():
            candidates = z == vocab
            p = denoiser(z, 0.0)
            scores = order_scores(p, "entropy")
            chosen = select_positions(scores, candidates, entropy_budget_counts(p, candidates, scores, gamma))
            z, w, _ = _expand(z, w, torch.arange(len(z)), p, chosen.to(torch.float64))
            z, w = _merge(z, w, vocab)
    else:
        order = "random" if sampler == "first_hitting" else sampler
        blocks, per_block = blocks_of(length, length if sampler == "first_hitting" else int(steps or 0), block_length)
        for lo, hi in blocks:
            in_block = torch.zeros(length, dtype=torch.bool)
            in_block[lo:hi] = True
            for j in range(per_block):
                candidates = (z == vocab) & in_block
                p = denoiser(z, 0.0)
                z, w = _ordered_step(z, w, p, order, candidates, reveal_counts(candidates, per_block - j))
                z, w = _merge(z, w, vocab)
    law = torch.zeros(vocab**length, dtype=torch.float64)
    return law.index_add_(0, encode(z, vocab), w)
