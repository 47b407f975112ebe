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
  probability ``σ_t``; the ``"confidence"`` strategy carries each state's confidences ``ψ`` (the probability each
  revealed token had when drawn) along with ``z``, as its kernel depends on them; ``loop`` runs ReMDM-loop;
* ``entropy_bounded``: the selected prefix (its length a function of ``z`` and ``gamma``) as for the orders.

``order_temperature τ > 0`` (``confidence``, ``margin``, ``entropy``, ``sampled_confidence``) samples the order
by Gumbel-top-k on ``score/τ``, which is Plackett–Luce sampling without replacement (Kool et al. 2019): the
chance of revealing the set ``S`` of ``k`` of the ``m`` candidates is the sum over the ``k!`` orders of ``S`` of
``Π_r exp(a_{i_r}) / Σ_{j ∉ {i_1 … i_{r−1}}} exp(a_j)``, ``a = score/τ``, summed exactly
(:func:`plackett_luce_subsets`; up to ``m!/(m − k)!`` orders per state).

:func:`masked_law` is the exact law of ``z_t`` under the forward process (mask each token of ``x ~ chain`` with
probability ``1 − α``), :func:`remdm_step_law` pushes such a law through one ReMDM step, with the factorised
exact denoiser (what the sampler does) or with ``x0`` drawn jointly from the exact posterior (where ReMDM's
kernel provably maps ``q_t`` to ``q_s``). The cost grows with the number of reachable states, so this is for
the small chains (``chain3x6``: at most ``4^6`` states).
"""

from __future__ import annotations

import itertools

import torch

from ..ancestral import step_reveal_probability
from ..entropy_bounded import entropy_budget_counts
from ..ordered import blocks_of
from ..orders import order_scores, reveal_counts, select_positions
from ..remdm import confidence_remask_weights, loop_schedule, remask_probability, remdm_reveal_probability
from ..schedules import MaskingSchedule, linear, time_grid
from .chain import MarkovChain, encode

__all__ = ["EXACT_SAMPLERS", "exact_law", "law_of_states", "masked_law", "plackett_luce_subsets", "remdm_step_law"]

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
_SCORED_ORDERS = ("confidence", "margin", "entropy", "sampled_confidence")


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


def _merge_by(inverse: torch.Tensor, count: int, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first row of each group and the groups' summed weights."""
    merged = torch.zeros(count, dtype=torch.float64).index_add_(0, inverse, w)
    first = torch.full((count,), len(inverse), dtype=torch.int64).scatter_reduce_(
        0, inverse, torch.arange(len(inverse)), reduce="amin"
    )
    return first, merged


def _merge(z: torch.Tensor, w: torch.Tensor, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    unique, inverse = torch.unique(encode(z, vocab + 1), return_inverse=True)
    first, merged = _merge_by(inverse, len(unique), w)
    return z[first], merged


def _merge_with(
    z: torch.Tensor, w: torch.Tensor, psi: torch.Tensor, vocab: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge equal ``(z, ψ)`` states (``ψ`` float64 per position, compared exactly)."""
    key = torch.cat([encode(z, vocab + 1).to(torch.float64)[:, None], psi], 1)
    unique, inverse = torch.unique(key, dim=0, return_inverse=True)
    first, merged = _merge_by(inverse, len(unique), w)
    return z[first], merged, psi[first]


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


def plackett_luce_subsets(
    scores: torch.Tensor, candidates: torch.Tensor, count: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``(state index, reveal mask, probability)``: every ``count``-subset of each state's candidates with its
    exact chance under Gumbel-top-k on ``scores / temperature`` (Plackett–Luce without replacement; module
    docstring). Every state must have the same number of candidates."""
    n, length = scores.shape
    m = int(candidates[0].sum())
    if not (candidates.sum(-1) == m).all():
        raise ValueError("an exact sampled order needs the same number of candidates in every state")
    positions = torch.sort(torch.where(candidates, torch.arange(length), length + torch.arange(length)), -1).values
    positions = positions[:, :m]
    combos = list(itertools.combinations(range(m), count))
    index = {c: j for j, c in enumerate(combos)}
    perms = list(itertools.permutations(range(m), count))
    if count == 0:
        subset_probability = torch.ones(n, 1, dtype=torch.float64)
    else:
        a = scores.to(torch.float64).gather(1, positions) / temperature
        e = torch.exp(a - a.max(-1, keepdim=True).values)
        chosen = e[:, torch.tensor(perms, dtype=torch.int64)]  # (n, P, k)
        before = torch.cumsum(chosen, -1) - chosen
        ordered = (chosen / (e.sum(-1)[:, None, None] - before)).prod(-1)  # (n, P)
        to_subset = torch.tensor([index[tuple(sorted(q))] for q in perms], dtype=torch.int64)
        subset_probability = torch.zeros(n, len(combos), dtype=torch.float64).index_add_(1, to_subset, ordered)
    rows = torch.arange(n).repeat_interleave(len(combos))
    reveal = torch.zeros(len(rows), length, dtype=torch.float64)
    if count:
        members = torch.tensor(combos, dtype=torch.int64).repeat(n, 1)
        reveal.scatter_(1, positions[rows[:, None], members], 1.0)
    return rows, reveal, subset_probability.reshape(-1)


def _ordered_step(
    z: torch.Tensor,
    w: torch.Tensor,
    p: torch.Tensor,
    order: str,
    candidates: torch.Tensor,
    counts: torch.Tensor,
    temperature: float = 0.0,
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
        if temperature > 0:
            rows, reveal, chance = plackett_luce_subsets(scores, candidates[src], int(counts[0]), temperature)
            return torch.where(reveal > 0, drawn[rows], z[src][rows]), weights[rows] * chance
        chosen = select_positions(scores, candidates[src], counts[src])
        return torch.where(chosen, drawn, z[src]), weights
    if temperature > 0:
        rows, reveal, chance = plackett_luce_subsets(order_scores(p, order), candidates, int(counts[0]), temperature)
        out, weights, _ = _expand(z[rows], w[rows] * chance, rows, p, reveal)
        return out, weights
    chosen = select_positions(order_scores(p, order), candidates, counts)
    out, weights, _ = _expand(z, w, states, p, chosen.to(torch.float64))
    return out, weights


def _remdm_step(
    z: torch.Tensor,
    w: torch.Tensor,
    psi: torch.Tensor | None,
    p: torch.Tensor,
    sigma: torch.Tensor,
    schedule: MaskingSchedule,
    t: torch.Tensor,
    s: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One ReMDM step of every state (``psi`` the confidences for the ``"confidence"`` strategy, else ``None``)."""
    vocab = p.shape[-1]
    hidden = z == vocab
    per_token = sigma.expand(z.shape) if psi is None else confidence_remask_weights(psi) * sigma
    reveal = hidden * remdm_reveal_probability(schedule, t, s, per_token)
    out, w, src = _expand(z, w, torch.arange(len(z)), p, reveal, (~hidden) * per_token)
    if psi is None:
        z, w = _merge(out, w, vocab)
        return z, w, None
    was_hidden, now_hidden = hidden[src], out == vocab
    drawn = p[src].gather(-1, out.clamp(max=vocab - 1)[..., None])[..., 0]
    psi = torch.where(was_hidden & ~now_hidden, drawn, psi[src])
    psi = torch.where(~was_hidden & now_hidden, torch.inf, psi)
    return _merge_with(out, w, psi, vocab)


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
    loop: tuple[float, float, float] | None = None,
    order_temperature: float = 0.0,
) -> torch.Tensor:
    """The exact ``(V^L,)`` output law of ``sampler`` in ``steps`` steps on ``chain`` (module docstring);
    ``gamma`` is the entropy-bounded sampler's, ``strategy``, ``eta``, ``window``, ``loop`` ReMDM's,
    ``order_temperature`` the ordered samplers'."""
    if sampler not in EXACT_SAMPLERS:
        raise ValueError(f"no exact law for {sampler!r}; samplers with one: {', '.join(EXACT_SAMPLERS)}")
    if order_temperature < 0 or (order_temperature > 0 and sampler not in _SCORED_ORDERS):
        raise ValueError(
            f"order_temperature must be ≥ 0, and > 0 only for the orders {', '.join(_SCORED_ORDERS)}; "
            f"got {order_temperature} for {sampler!r}"
        )
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
        if loop is not None:
            if window is not None:
                raise ValueError("give either window or loop")
            schedule, window = loop_schedule(schedule, *loop), (loop[1], loop[0])
        psi = torch.full((1, length), torch.inf, dtype=torch.float64) if strategy == "confidence" else None
        times = time_grid(int(steps or 0))
        for i in range(int(steps or 0)):
            t, s = times[i], times[i + 1]
            sigma = remask_probability(schedule, t, s, strategy, eta, window)
            z, w, psi = _remdm_step(z, w, psi, denoiser(z, t), sigma, schedule, t, s)
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
                counts = reveal_counts(candidates, per_block - j)
                z, w = _ordered_step(z, w, p, order, candidates, counts, order_temperature)
                z, w = _merge(z, w, vocab)
    law = torch.zeros(vocab**length, dtype=torch.float64)
    return law.index_add_(0, encode(z, vocab), w)


def law_of_states(z: torch.Tensor, w: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The dense ``((V + 1)^L,)`` law of partial sequences ``z`` (mask = ``V``) with weights ``w``."""
    law = torch.zeros((vocab_size + 1) ** z.shape[1], dtype=torch.float64)
    return law.index_add_(0, encode(z, vocab_size + 1), w)


def masked_law(chain: MarkovChain, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``q_α(z) = Σ_x p(x) Π_i [α 1(z_i = x_i) + (1 − α) 1(z_i = mask)]``: the states ``z`` and their weights."""
    vocab, length = chain.vocab_size, chain.length
    x = chain.sequences()
    hidden = torch.tensor(list(itertools.product([False, True], repeat=length)), dtype=torch.bool)
    z = torch.where(hidden[None], vocab, x[:, None]).reshape(-1, length)
    k = hidden.sum(-1).to(torch.float64)
    w = (chain.law()[:, None] * alpha ** (length - k) * (1.0 - alpha) ** k).reshape(-1)
    return _merge(z[w > 0], w[w > 0], vocab)


def remdm_step_law(
    chain: MarkovChain,
    z: torch.Tensor,
    w: torch.Tensor,
    t: float,
    s: float,
    *,
    schedule: MaskingSchedule | None = None,
    strategy: str = "cap",
    eta: float = 0.05,
    joint: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The law after one ReMDM step ``t → s`` from the states ``z`` with weights ``w`` (module docstring).

    ``joint=False``: tokens from the chain's exact per-position posterior, independently (the sampler);
    ``joint=True``: ``x0`` drawn from the exact joint posterior ``p(x | z)``, then ``q_σ(z_s | z_t, x0)``
    (Wang et al. 2025, eq. 6), under which ``q_t`` goes exactly to ``q_s`` for any ``σ ≤ σ_max``. The
    ``"confidence"`` strategy needs the states' histories and is not offered here.
    """
    if strategy == "confidence":
        raise ValueError("remdm_step_law: the confidence strategy depends on the history; use exact_law")
    schedule = schedule or linear()
    vocab = chain.vocab_size
    t_, s_ = torch.tensor(t, dtype=torch.float64), torch.tensor(s, dtype=torch.float64)
    sigma = remask_probability(schedule, t_, s_, strategy, eta)
    hidden = z == vocab
    reveal = hidden * remdm_reveal_probability(schedule, t_, s_, sigma)
    remask = (~hidden) * sigma
    if not joint:
        out, w, _ = _expand(z, w, torch.arange(len(z)), chain.denoiser()(z, t_), reveal, remask)
        return _merge(out, w, vocab)
    x = chain.sequences()
    consistent = (hidden[:, None, :] | (z[:, None, :] == x[None])).all(-1)
    posterior = consistent * chain.law()[None]
    posterior = posterior / posterior.sum(-1, keepdim=True)
    rows, cols = torch.nonzero(posterior > 0, as_tuple=True)
    onehot = torch.nn.functional.one_hot(x[cols], vocab).to(torch.float64)
    out, w, _ = _expand(
        z[rows], w[rows] * posterior[rows, cols], torch.arange(len(rows)), onehot, reveal[rows], remask[rows]
    )
    return _merge(out, w, vocab)
