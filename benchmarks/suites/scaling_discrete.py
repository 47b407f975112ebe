"""Inference-time scaling on masked discrete models: SMC / Feynman–Kac steering, best-of-N and SVDD vs compute on
exact tilted chains and on the shipped text model.

``python -m benchmarks scaling_discrete [--sections exact,matched,text] [--populations 4000]``.

* ``exact``: ``chain3x6`` tilted by an additive reward (unary count of token 1 plus a bigram bonus on ``0 → 2``,
  :func:`diffsample.discrete.beds.tilt_chain`) and by a non-additive one (at least three 1s, by enumeration). Each
  of ``--populations`` independent SMC runs with ``K`` particles (first-hitting proposal, the exact chain
  denoiser as the model) gives one draw (by its final weight); the table gives the TV of those draws to the exact
  tilted law next to the Monte-Carlo floor of as many exact draws, the relative error of the mean of ``Ẑ`` and
  the RMS error of ``log Ẑ`` against the exact ``log Z``, the mean ESS over the steps, and the compute per draw
  (network + reward + value evaluations, all rows counted). Values: ``r(x̂0)/α`` with the argmax prediction
  (FK steering as used in practice) or the exact optimal value ``log E[exp(r/α) | z]`` (the bed's). ``guided``
  draws tokens from the exact tilted denoiser (zero-variance weights).
* ``matched``: at (about) matched compute per draw, best-of-N vs SMC vs path search (keep the best half by
  ``r(x̂0)`` at levels 2 and 4, branch ×2, re-mask one level) vs SVDD (greedy, ``r(x̂0)`` soft value at ``α``,
  exact soft value) vs diffusion tree sampling / search (DTS, DTS*; ``--tree-samples`` trees, one draw each, at the
  ``--tree-budgets``): mean reward reached, TV to the tilted law with the Monte-Carlo floor of as many draws, and
  the diversity (distinct sequences among the draws, per cent). Best-of-N and DTS get ``N = 2LK/(L+1)`` samples or
  rollouts, the budget of ``K`` particles.
* ``text``: the shipped text model (64 characters, ancestral proposal) with the reward ``r = number of digits``:
  mean reward, NLL per character under the reference 5-gram model, the entropy of each text's own characters
  and compute per text, for best-of-N, SMC (two tilt temperatures) and greedy SVDD; held-out windows of real
  text give the reference line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from diffsample.cli import int_list, str_list
from diffsample.discrete.beds import (
    chain3x6,
    count_reward,
    empirical_law,
    enumerated_tilt,
    monte_carlo_tv,
    tilt_chain,
    tv,
)
from diffsample.discrete.corpus import SYMBOLS, VOCAB_SIZE, load_corpus
from diffsample.discrete.ngram import sequence_entropy
from diffsample.discrete.steering import MaskedProposal, exact_soft_value, exact_value
from diffsample.scaling.engine import feynman_kac
from diffsample.scaling.search import best_of_n, path_search
from diffsample.scaling.svdd import svdd
from diffsample.scaling.tree import tree_sample, tree_search

from ..report import Column, text_table

__all__ = ["add_arguments", "run"]

SECTIONS = ("exact", "matched", "text")
ALPHA = 0.8
DIGITS = [SYMBOLS.index(c) for c in "0123456789"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sections", type=str_list, default=list(SECTIONS), help=f"sections ({', '.join(SECTIONS)})")
    p.add_argument("--populations", type=int, default=4000, help="independent runs (draws) per exact-bed row")
    p.add_argument("--particles", type=int_list, default=[1, 2, 4, 8, 16, 32], help="K for the exact section")
    p.add_argument("--tree-budgets", type=int_list, default=[4, 16], help="K of the matched rows that run DTS/DTS*")
    p.add_argument("--tree-samples", type=int, default=200, help="DTS/DTS* trees (draws) per row (slow: one per tree)")
    p.add_argument("--text-populations", type=int, default=16, help="texts per text row")
    p.add_argument("--text-particles", type=int_list, default=[4, 16], help="K / N for the text section")
    p.add_argument("--text-steps", type=int, default=16, help="ancestral steps for the text model")
    p.add_argument("--seed", type=int, default=0)


def additive_bed():
    chain = chain3x6()
    pairwise = torch.zeros(3, 3, dtype=torch.float64)
    pairwise[0, 2] = 1.5
    return tilt_chain(chain, unary=count_reward([1], 3), pairwise=pairwise, alpha=ALPHA, name="count+bigram")


def threshold_bed():
    def at_least_three_ones(x: torch.Tensor) -> torch.Tensor:
        return 2.0 * ((x == 1).sum(-1) >= 3).to(torch.float64)

    return enumerated_tilt(chain3x6(), at_least_three_ones, alpha=ALPHA, name="≥3 ones")


def _smc_row(bed, label: str, k: int, populations: int, seed: int, value: str, guided: bool = False) -> list:
    chain = bed.chain
    proposal = MaskedProposal(chain.denoiser(), chain.length, guide=bed.denoiser() if guided else None)
    out = feynman_kac(
        proposal,
        bed.reward,
        particles=k,
        populations=populations,
        seeds=seed,
        alpha=bed.alpha,
        value=exact_value(bed) if value == "exact" else None,
    )
    draws = out.draw(seed + 1)
    log_z = bed.log_normalizer()
    z_rel = float(torch.exp(out.log_normalizer - log_z).mean() - 1.0)
    log_rmse = float((out.log_normalizer - log_z).square().mean().sqrt())
    law = bed.law()
    return [
        bed.name,
        label,
        k,
        out.cost.total / populations,
        tv(empirical_law(chain, draws), law),
        monte_carlo_tv(law, populations),
        z_rel,
        log_rmse,
        float(out.ess.mean()),
        float(bed.reward(draws).mean()),
    ]


def _plain_row(bed, populations: int, seed: int) -> list:
    chain, law = bed.chain, bed.law()
    out = best_of_n(
        MaskedProposal(chain.denoiser(), chain.length), bed.reward, n=1, seeds=seed, populations=populations
    )
    nan = float("nan")
    drawn = tv(empirical_law(chain, out.x), law)
    floor = monte_carlo_tv(law, populations)
    return [
        bed.name,
        "no steering",
        1,
        out.cost.total / populations,
        drawn,
        floor,
        nan,
        nan,
        nan,
        float(out.rewards.mean()),
    ]


EXACT_COLUMNS = [
    Column("bed", "<12"),
    Column("method", "<14"),
    Column("K", ">3"),
    Column("cost", ">7.1f"),
    Column("TV", ">7.4f"),
    Column("floor", ">7.4f"),
    Column("Ẑ/Z−1", ">8.4f"),
    Column("rms logẐ", ">8.4f"),
    Column("ESS", ">6.2f"),
    Column("reward", ">7.3f"),
]


def exact_table(particles: list[int], populations: int, seed: int) -> str:
    rows = []
    for bed in (additive_bed(), threshold_bed()):
        rows.append(_plain_row(bed, populations, seed))
        for value in ("x0", "exact"):
            for k in particles:
                rows.append(_smc_row(bed, f"FK {'r(x̂0)' if value == 'x0' else 'exact V'}", k, populations, seed, value))
        rows.append(_smc_row(bed, "guided+exact V", 1, populations, seed, "exact", guided=True))
    return text_table(EXACT_COLUMNS, rows)


def _diversity(x: torch.Tensor) -> float:
    return 100.0 * len(torch.unique(x, dim=0)) / x.shape[0]


def matched_table(budgets: list[int], populations: int, seed: int, tree_budgets: list[int], tree_samples: int) -> str:
    bed = additive_bed()
    chain, law = bed.chain, bed.law()
    rows = []
    steps = chain.length
    for n in budgets:
        # best-of-N at the same compute as K particles: N (L network + 1 reward) ≈ K (L network + L reward)
        matched_n = max(1, round(n * 2 * steps / (steps + 1)))
        proposal = MaskedProposal(chain.denoiser(), chain.length)
        best = best_of_n(proposal, bed.reward, n=matched_n, seeds=seed, populations=populations)
        rows.append(_matched_row("best-of-N", matched_n, best.cost.total / populations, best.x, bed, law))
        proposal = MaskedProposal(chain.denoiser(), chain.length)
        out = feynman_kac(proposal, bed.reward, particles=n, populations=populations, seeds=seed, alpha=bed.alpha)
        rows.append(_matched_row("FK r(x̂0)", n, out.cost.total / populations, out.draw(seed + 1), bed, law))
        proposal = MaskedProposal(chain.denoiser(), chain.length)
        found = path_search(
            proposal, bed.reward, n=n, checkpoints=[2, 4], back=1, branch=2, seeds=seed, populations=populations
        )
        rows.append(_matched_row("path search", n, found.cost.total / populations, found.x, bed, law))
        if n in tree_budgets:
            for name, fn in (("DTS", tree_sample), ("DTS*", tree_search)):
                proposal = MaskedProposal(chain.denoiser(), chain.length)
                res = fn(proposal, bed.reward, rollouts=matched_n, seeds=seed, samples=tree_samples, alpha=bed.alpha)
                rows.append(_matched_row(name, matched_n, res.cost.total / tree_samples, res.x, bed, law))
        for name, value, alpha in (
            ("SVDD greedy", None, 0.0),
            ("SVDD r(x̂0)", None, bed.alpha),
            ("SVDD exact", exact_soft_value(bed), bed.alpha),
        ):
            proposal = MaskedProposal(chain.denoiser(), chain.length)
            res = svdd(proposal, bed.reward, candidates=n, seeds=seed, samples=populations, alpha=alpha, value=value)
            rows.append(_matched_row(name, n, res.cost.total / populations, res.x, bed, law))
    cols = [
        Column("method", "<12"),
        Column("N/K", ">4"),
        Column("cost", ">7.1f"),
        Column("reward", ">7.3f"),
        Column("TV", ">7.4f"),
        Column("floor", ">7.4f"),
        Column("distinct %", ">10.1f"),
    ]
    exact = [["exact tilted", "", float("nan"), bed.reward_mean(), 0.0, 0.0, float("nan")]]
    return text_table(cols, exact + rows)


def _matched_row(name: str, n: int, cost: float, x: torch.Tensor, bed, law: torch.Tensor) -> list:
    drawn = tv(empirical_law(bed.chain, x), law)
    return [name, n, cost, float(bed.reward(x).mean()), drawn, monte_carlo_tv(law, x.shape[0]), _diversity(x)]


def digit_count(x: torch.Tensor) -> torch.Tensor:
    """The number of digit characters in each text."""
    return torch.isin(x, torch.tensor(DIGITS)).sum(-1).to(torch.float64)


def text_table_rows(particles: list[int], populations: int, steps: int, seed: int) -> str:
    from diffsample.models.text import load_text_model
    from diffsample.text_cli import reference_ngram

    model, ngram = load_text_model(), reference_ngram()
    length = 64
    rows = []

    def add(name: str, n: int | str, x: torch.Tensor, cost: float) -> None:
        x = x.to(torch.int64)
        nll = ngram.nll(x)
        entropy = float(sequence_entropy(x, VOCAB_SIZE).mean())
        rows.append([name, n, cost, float(digit_count(x).mean()), float(nll.mean()), entropy])

    held = load_corpus().heldout
    starts = torch.arange(populations) * ((held.numel() - length) // populations)
    add("held-out", "", held[starts[:, None] + torch.arange(length)], float("nan"))
    runs: list[tuple[str, int, Callable[[int], tuple[torch.Tensor, float]]]] = []

    def proposal() -> MaskedProposal:
        return MaskedProposal(model, length, sampler="ancestral", steps=steps)

    def plain(_: int) -> tuple[torch.Tensor, float]:
        out = best_of_n(proposal(), digit_count, n=1, seeds=seed, populations=populations)
        return out.x, out.cost.total / populations

    runs.append(("plain", 1, plain))
    for n in particles:
        runs.append(("best-of-N", n, lambda n: _text_best(proposal(), n, populations, seed)))
        for alpha in (1.0, 0.25):
            runs.append((f"FK α={alpha}", n, lambda n, a=alpha: _text_fk(proposal(), n, populations, seed, a)))
        runs.append(("SVDD greedy", n, lambda n: _text_svdd(proposal(), n, populations, seed)))
    for name, n, fn in runs:
        x, cost = fn(n)
        add(name, n, x, cost)
    cols = [
        Column("method", "<11"),
        Column("N/K", ">4"),
        Column("cost", ">7.1f"),
        Column("digits", ">7.2f"),
        Column("NLL 5-gram", ">10.3f"),
        Column("entropy", ">7.3f"),
    ]
    return text_table(cols, rows)


def _text_best(proposal: MaskedProposal, n: int, populations: int, seed: int) -> tuple[torch.Tensor, float]:
    out = best_of_n(proposal, digit_count, n=n, seeds=seed, populations=populations)
    return out.x, out.cost.total / populations


def _text_svdd(proposal: MaskedProposal, m: int, populations: int, seed: int) -> tuple[torch.Tensor, float]:
    out = svdd(proposal, digit_count, candidates=m, seeds=seed, samples=populations, alpha=0.0)
    return out.x, out.cost.total / populations


def _text_fk(proposal: MaskedProposal, k: int, populations: int, seed: int, alpha: float) -> tuple[torch.Tensor, float]:
    out = feynman_kac(proposal, digit_count, particles=k, populations=populations, seeds=seed, alpha=alpha)
    return out.draw(seed + 1), out.cost.total / populations


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    if "exact" in args.sections:
        print(f"== SMC / FK steering vs K on tilted chain3x6 (α = {ALPHA}; {args.populations} runs per row) ==")
        print(exact_table(args.particles, args.populations, args.seed))
    if "matched" in args.sections:
        print("\n== matched compute on count+bigram: best-of-N, SMC, path search, SVDD, DTS (reward, TV, diversity) ==")
        budgets = [k for k in args.particles if k > 1]
        print(matched_table(budgets, args.populations, args.seed, args.tree_budgets, args.tree_samples))
    if "text" in args.sections:
        print(f"\n== text model, reward = digits in 64 characters, ancestral {args.text_steps} steps ==")
        print(text_table_rows(args.text_particles, args.text_populations, args.text_steps, args.seed))
    return 0
