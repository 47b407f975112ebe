"""Masked discrete diffusion on exact Markov-chain beds: TV per sampler and step count, ancestral's O(1/N),
exact one-token orders, the sampled-confidence bias, float32 vs float64 Gumbel draws.

``python -m benchmarks discrete [--samples 20000] [--skip-float32]``. Laws on ``chain3x6`` are enumerated
exactly (:func:`diffsample.discrete.beds.laws.exact_law`); on ``chain4x8`` they are estimated from
``--samples`` draws and printed with their Monte-Carlo floor (the TV that exact draws show).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch

from diffsample import discrete
from diffsample.cli import int_list, str_list
from diffsample.discrete.beds import chain as chains
from diffsample.discrete.beds.laws import exact_law
from diffsample.discrete.beds.metrics import chain_metrics, empirical_law, monte_carlo_tv

from ..report import Column, text_table

__all__ = ["add_arguments", "run"]

ORDER_SAMPLERS = ["random", "confidence", "margin", "entropy", "sampled_confidence"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samplers", type=str_list, default=["ancestral", "remdm", *ORDER_SAMPLERS, "first_hitting"],
                   help="masked samplers (names from diffsample.discrete.available())")
    p.add_argument("--samples", type=int, default=100000, help="Monte-Carlo draws per configuration on chain4x8")
    p.add_argument("--convergence-steps", type=int_list, default=[2, 4, 8, 16, 32, 64],
                   help="ancestral step counts for the O(1/N) slope (exact, chain3x6)")
    p.add_argument("--float32-vocab", type=int, default=4096, help="vocabulary of the float32 Gumbel bed")
    p.add_argument("--float32-length", type=int, default=16)
    p.add_argument("--float32-batch", type=int, default=16)
    p.add_argument("--float32-steps", type=int, default=2048)
    p.add_argument("--skip-float32", action="store_true", help="leave out the (slowest) float32 section")
    p.add_argument("--seed", type=int, default=0)


def _steps_for(name: str, length: int, steps: list[int]) -> list[int | None]:
    return [None] if discrete.spec(name).own_steps else [s for s in steps if s <= length]


def exact_tv_table(samplers: list[str]) -> str:
    """TV, KL, entropy rate and NLL of each sampler's exact law on chain3x6 per step count."""
    c = chains.chain3x6()
    rows = []
    for name in samplers:
        for steps in _steps_for(name, c.length, [1, 2, 3, 6]):
            m = chain_metrics(c, exact_law(c, name, steps))
            rows.append([name, steps or c.length, m["tv"], m["kl"], m["entropy_rate"], m["nll"],
                         m["transition_kl_rate"]])
    target = chain_metrics(c, c.law())
    rows.append(["(target)", "", 0.0, 0.0, target["entropy_rate"], target["nll"], 0.0])
    cols = [Column("sampler", "<18"), Column("steps", ">5"), Column("TV", ">10.4g"), Column("KL", ">10.4g"),
            Column("H/token", ">8.4f"), Column("NLL/token", ">9.4f"), Column("trans.KL", ">10.3g")]
    return text_table(cols, rows)


def monte_carlo_table(samplers: list[str], n: int, seed: int, options: dict | None = None,
                      steps_list: tuple[int, ...] = (1, 2, 4, 8)) -> str:
    """TV of ``n`` draws to the chain4x8 target per sampler and step count, next to the Monte-Carlo floor."""
    c = chains.chain4x8()
    law = c.law()
    floor = monte_carlo_tv(law, n)
    rows = []
    for name in samplers:
        for steps in _steps_for(name, c.length, list(steps_list)):
            d = c.denoiser()
            x = discrete.get(name)(d, discrete.all_masked(n, c.length, c.vocab_size), steps, seed=seed,
                                   **(options or {}))
            q = empirical_law(c, x)
            m = chain_metrics(c, q)
            rows.append([name, steps or c.length, d.nfe, m["tv"], m["tv"] / floor, m["unigram_error"],
                         m["transition_kl_rate"]])
    cols = [Column("sampler", "<18"), Column("steps", ">5"), Column("NFE", ">4"), Column("TV", ">8.4f"),
            Column("TV/floor", ">8.2f"), Column("unigram", ">8.4f"), Column("trans.KL", ">9.4f")]
    return f"Monte-Carlo floor (TV of {n} exact draws, expected): {floor:.4f}\n" + text_table(cols, rows)


def entropy_bounded_table(gammas: list[float], seed: int, n: int = 4000) -> str:
    """Exact TV of the entropy-bounded sampler on chain3x6 per budget ``γ``, and its mean steps per sequence
    (measured on ``n`` draws)."""
    c = chains.chain3x6()
    rows = []
    for gamma in gammas:
        steps = torch.zeros(n)

        def count(info: dict, steps: torch.Tensor = steps) -> None:
            steps.add_(info["revealed"].any(-1).float())

        discrete.entropy_bounded(c.denoiser(), discrete.all_masked(n, c.length, c.vocab_size), gamma=gamma,
                                 seed=seed, callback=count)
        m = chain_metrics(c, exact_law(c, "entropy_bounded", gamma=gamma))
        rows.append([gamma, float(steps.mean()), m["tv"], m["kl"]])
    cols = [Column("gamma", ">6.2f"), Column("steps/seq", ">9.2f"), Column("TV", ">10.4g"), Column("KL", ">10.4g")]
    return text_table(cols, rows)


def convergence(steps: list[int]) -> tuple[str, float, float]:
    """Exact TV and KL of ancestral sampling on chain3x6 per N, and the fitted log-log slopes."""
    c = chains.chain3x6()
    rows = []
    for n in steps:
        m = chain_metrics(c, exact_law(c, "ancestral", n))
        rows.append([n, m["tv"], m["kl"], n * m["tv"]])
    x = torch.log(torch.tensor(steps, dtype=torch.float64))

    def slope(values: list[float]) -> float:
        y = torch.log(torch.tensor(values, dtype=torch.float64))
        return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())

    cols = [Column("N", ">4"), Column("TV", ">10.5g"), Column("KL", ">10.5g"), Column("N·TV", ">8.4f")]
    return text_table(cols, rows), slope([r[1] for r in rows]), slope([r[2] for r in rows])


def float32_first_step(vocab: int, steps_list: list[int]) -> str:
    """The exact law of one float32 joint draw at the first ancestral step (``r = 1/N``), by enumerating the 2²⁴
    values ``torch.rand`` can return: each category's score ``w / −log(u + 10⁻¹⁰)`` in float32 takes 2²⁴
    equally likely values, so ``P(mask wins) = E_k[F_common(< s_mask,k) · F_rare(< s_mask,k)^{V−1}]`` and
    ``P(token 0 wins) = E_k[F_rare(≤ s_0,k)^{V−1} · F_mask(≤ s_0,k)]`` (argmax keeps the first index on ties),
    with ``F`` read off the sorted score arrays; the rare class has the rest."""
    k = torch.arange(2**24, dtype=torch.float64)
    e = -torch.log((k * 2.0**-24).to(torch.float32) + 1e-10)
    rows = []
    for n in steps_list:
        r = 1.0 / n
        weights = {"common": 0.5 * r, "rare": 0.5 * r / (vocab - 1), "mask": 1.0 - r}
        scores = {c: torch.tensor(w, dtype=torch.float64).to(torch.float32) / e for c, w in weights.items()}
        ranked = {c: torch.sort(v).values for c, v in scores.items()}

        def below(c: str, x: torch.Tensor, inclusive: bool, ranked: dict = ranked) -> torch.Tensor:
            return torch.searchsorted(ranked[c], x, right=inclusive).double() / 2**24

        p_mask = float((below("common", scores["mask"], False) * below("rare", scores["mask"], False)
                        ** (vocab - 1)).mean())
        p_common = float((below("rare", scores["common"], True) ** (vocab - 1)
                          * below("mask", scores["common"], True)).mean())
        p_rare = 1.0 - p_mask - p_common
        rows.append([n, weights["rare"] * 2**24, p_rare / (0.5 * r), p_common / (0.5 * r)])
    cols = [Column("N", ">6"), Column("w_rare·2²⁴", ">11.3f"), Column("rare: f32/exact", ">15.4f"),
            Column("common: f32/exact", ">17.4f")]
    return (f"first step of MDLM's float32 joint draw, V = {vocab} (1/2 on token 0, 1/2 spread), exact over "
            "torch.rand's grid\n" + text_table(cols, rows))


def _generator_uniforms(seed: int) -> Callable[[int, int], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return lambda batch, size: torch.rand(batch, size, generator=g, dtype=torch.float64)


def float32_draws(vocab: int, length: int, batch: int, steps: int, seed: int) -> str:
    """MDLM's joint Gumbel draw in float32 and in float64 (the same uniforms), and inverse-CDF draws, on
    independent positions whose law puts 1/2 on token 0 and 1/2 evenly on the ``vocab − 1`` others.

    At an early step a rare token's weight ``r · p`` (``r ≈ 1/steps``) falls near the float32 grid of
    ``−log u`` (≈ 2⁻²⁴), so the float32 draw almost never reveals it there; the position stays masked and is
    revealed later, more often as token 0. By symmetry the output law is fixed by the rare fraction ``f``, and
    its entropy is ``h(f) + f log(V − 1)`` (``h`` the binary entropy); exact draws give ``f = 1/2``. The
    uniforms come from one ``torch.Generator`` here (batch invariance is not at stake and it is much faster).
    """
    p = torch.full((vocab,), 0.5 / (vocab - 1), dtype=torch.float64)
    p[0] = 0.5
    d = discrete.as_masked_denoiser(lambda z, t: torch.log(p).expand(*z.shape, vocab), vocab, time_free=True)
    start = discrete.all_masked(batch, length, vocab)
    runs = {"gumbel float32": dict(draw="gumbel", precision="float32"),
            "gumbel float64": dict(draw="gumbel", precision="float64"),
            "inverse-CDF float64": dict(draw="inverse_cdf")}

    def law_entropy(f: float) -> float:
        binary = -sum(v * math.log(v) for v in (f, 1.0 - f) if v > 0)
        return binary + f * math.log(vocab - 1)

    rows = []
    n = batch * length
    for label, options in runs.items():
        t0 = time.perf_counter()
        x = discrete.ancestral(d, start, steps, uniforms=_generator_uniforms(seed), **options)
        f = float((x > 0).double().mean())
        rows.append([label, f, math.sqrt(f * (1 - f) / n), law_entropy(f), time.perf_counter() - t0])
    rows.append(["exact", 0.5, 0.0, law_entropy(0.5), 0.0])
    cols = [Column("draw", "<20"), Column("rare f", ">7.4f"), Column("±SE", ">7.4f"), Column("H(law)", ">7.4f"),
            Column("s", ">6.1f")]
    return (f"V = {vocab}, {batch}×{length} positions, {steps} ancestral steps, joint draw over V + 1 categories\n"
            + text_table(cols, rows))


def run(args: argparse.Namespace) -> int:
    samplers = args.samplers
    print("== exact laws on chain3x6 (V = 3, L = 6), exact denoiser ==")
    print(exact_tv_table(samplers))
    print("\n== chain4x8 (V = 4, L = 8), exact denoiser, Monte-Carlo ==")
    print(monte_carlo_table(samplers, args.samples, args.seed))
    print("\n== sampled-confidence ordering with an ordering temperature (chain4x8, one token per step) ==")
    for temp in (0.0, 0.5, 1.0):
        print(f"order_temperature = {temp}")
        print(monte_carlo_table(["sampled_confidence", "confidence"], args.samples, args.seed,
                                {"order_temperature": temp}, (8,)).split("\n", 1)[1])
    print("\n== entropy-bounded sampler: exact TV on chain3x6 and steps per sequence ==")
    print(entropy_bounded_table([0.0, 0.5, 1.0, 1.5, 2.0], args.seed))
    table, tv_slope, kl_slope = convergence(args.convergence_steps)
    print("\n== ancestral convergence (exact, chain3x6) ==")
    print(table)
    print(f"log-log slope: TV {tv_slope:.3f}, KL {kl_slope:.3f} (O(1/N): −1)")
    if not args.skip_float32:
        print("\n== float32 vs float64 Gumbel draws ==")
        print(float32_first_step(args.float32_vocab, [256, 1024, 2048, 4096, 16384]))
        print(float32_draws(args.float32_vocab, args.float32_length, args.float32_batch, args.float32_steps,
                            args.seed))
    return 0
