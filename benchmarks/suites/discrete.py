"""Masked discrete diffusion on exact Markov-chain beds: TV per sampler and step count, ancestral's O(1/N),
exact one-token orders, the sampled-confidence bias, float32 vs float64 Gumbel draws.

``python -m benchmarks discrete [--samples 100000] [--sections exact,convergence]``. ``remdm`` gives
ReMDM's strategies (cap, rescale, confidence, loop) exactly on ``chain3x4`` per step count and the loop
kernel's invariance defect (factorised vs joint posterior); ``order-temperature-exact`` the exact selection bias
of sampled orders. Laws on ``chain3x6`` are enumerated
exactly (:func:`diffsample.discrete.beds.laws.exact_law`); on ``chain4x8`` they are estimated from
``--samples`` draws and printed with their Monte-Carlo floor (the TV that exact draws show). ``--sections fitted``
(not run by default: minutes) measures every sampler on ``text128``, the chain fitted to the stdlib corpus
(:mod:`diffsample.discrete.beds.fitted`), from ``--fitted-samples`` draws per sampler and NFE budget.
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
from diffsample.discrete.beds.fitted import exact_entropy_rate, sample_metrics
from diffsample.discrete.beds.laws import exact_law, law_of_states, masked_law, remdm_step_law
from diffsample.discrete.beds.metrics import chain_metrics, empirical_law, monte_carlo_tv, tv
from diffsample.discrete.remdm import loop_schedule

from ..report import Column, text_table

__all__ = ["add_arguments", "run"]

SECTIONS = (
    "exact",
    "monte-carlo",
    "order-temperature",
    "order-temperature-exact",
    "remdm",
    "entropy-bounded",
    "convergence",
    "float32",
    "fitted",
)
DEFAULT_SECTIONS = SECTIONS[:-1]
FITTED_SAMPLERS = [
    "ancestral",
    "tau_leaping",
    "remdm",
    "random",
    "confidence",
    "margin",
    "entropy",
    "first_hitting",
    "entropy_bounded",
]
REMDM_PRESETS = ["remdm", "remdm_rescale", "remdm_confidence", "remdm_loop"]
ORDER_SAMPLERS = ["random", "confidence", "margin", "entropy", "sampled_confidence"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--samplers",
        type=str_list,
        default=["ancestral", *REMDM_PRESETS, *ORDER_SAMPLERS, "first_hitting"],
        help="masked samplers (names from diffsample.discrete.available())",
    )
    p.add_argument("--samples", type=int, default=100000, help="Monte-Carlo draws per configuration on chain4x8")
    p.add_argument(
        "--convergence-steps",
        type=int_list,
        default=[2, 4, 8, 16, 32, 64],
        help="ancestral step counts for the O(1/N) slope (exact, chain3x6)",
    )
    p.add_argument("--float32-vocab", type=int, default=4096, help="vocabulary of the float32 Gumbel bed")
    p.add_argument("--float32-length", type=int, default=16)
    p.add_argument("--float32-batch", type=int, default=16)
    p.add_argument("--float32-steps", type=int, default=2048)
    p.add_argument(
        "--float32-monte-carlo",
        action="store_true",
        help="also run the sampler with float32 and float64 draws (minutes; ±SE of a few hundred tokens)",
    )
    p.add_argument("--fitted-samples", type=int, default=256, help="draws per sampler and NFE on text128")
    p.add_argument("--fitted-nfe", type=int_list, default=[8, 16, 32, 64, 128], help="NFE budgets on text128 (steps)")
    p.add_argument(
        "--sections",
        type=str_list,
        default=list(DEFAULT_SECTIONS),
        help=f"sections to print (default: {', '.join(DEFAULT_SECTIONS)}; also: fitted)",
    )
    p.add_argument("--seed", type=int, default=0)


def _steps_for(name: str, length: int, steps: list[int]) -> list[int | None]:
    return [None] if discrete.spec(name).own_steps else [s for s in steps if s <= length]


def exact_tv_table(samplers: list[str]) -> str:
    """TV, KL, entropy rate and NLL of each sampler's exact law on chain3x6 per step count."""
    c = chains.chain3x6()
    rows = []
    for name in samplers:
        options = discrete.spec(name).options if name.startswith("remdm") else {}
        if options.get("strategy") == "confidence":
            continue  # its law carries each state's history: enumerated on chain3x4 in the remdm section
        for steps in _steps_for(name, c.length, [1, 2, 3, 6]):
            law = exact_law(c, "remdm" if options else name, steps, **options)
            m = chain_metrics(c, law)
            rows.append(
                [name, steps or c.length, m["tv"], m["kl"], m["entropy_rate"], m["nll"], m["transition_kl_rate"]]
            )
    target = chain_metrics(c, c.law())
    rows.append(["(target)", "", 0.0, 0.0, target["entropy_rate"], target["nll"], 0.0])
    cols = [
        Column("sampler", "<18"),
        Column("steps", ">5"),
        Column("TV", ">10.4g"),
        Column("KL", ">10.4g"),
        Column("H/token", ">8.4f"),
        Column("NLL/token", ">9.4f"),
        Column("trans.KL", ">10.3g"),
    ]
    return text_table(cols, rows)


def monte_carlo_table(
    samplers: list[str], n: int, seed: int, options: dict | None = None, steps_list: tuple[int, ...] = (1, 2, 4, 8)
) -> str:
    """TV of ``n`` draws to the chain4x8 target per sampler and step count, next to the Monte-Carlo floor."""
    c = chains.chain4x8()
    law = c.law()
    floor = monte_carlo_tv(law, n)
    rows = []
    for name in samplers:
        for steps in _steps_for(name, c.length, list(steps_list)):
            d = c.denoiser()
            x = discrete.get(name)(
                d, discrete.all_masked(n, c.length, c.vocab_size), steps, seed=seed, **(options or {})
            )
            q = empirical_law(c, x)
            m = chain_metrics(c, q)
            rows.append(
                [name, steps or c.length, d.nfe, m["tv"], m["tv"] / floor, m["unigram_error"], m["transition_kl_rate"]]
            )
    cols = [
        Column("sampler", "<18"),
        Column("steps", ">5"),
        Column("NFE", ">4"),
        Column("TV", ">8.4f"),
        Column("TV/floor", ">8.2f"),
        Column("unigram", ">8.4f"),
        Column("trans.KL", ">9.4f"),
    ]
    return f"Monte-Carlo floor (TV of {n} exact draws, expected): {floor:.4f}\n" + text_table(cols, rows)


def _chain3x4() -> chains.MarkovChain:
    c = chains.chain3x6()
    return chains.MarkovChain(c.initial, c.transition, 4, "chain3x4")


def remdm_table(steps_list: list[int], confidence_max_steps: int = 4) -> str:
    """Exact TV and KL to the target of ancestral and the ReMDM presets on chain3x4 per step count (the
    confidence strategy's law carries each state's history, so it is enumerated up to ``confidence_max_steps``)."""
    c = _chain3x4()
    rows = []
    for name in ["ancestral", *REMDM_PRESETS]:
        options = discrete.spec(name).options
        for steps in steps_list:
            if options.get("strategy") == "confidence" and steps > confidence_max_steps:
                continue
            law = exact_law(c, "remdm" if name != "ancestral" else name, steps, **options)
            m = chain_metrics(c, law)
            rows.append([name, steps, m["tv"], m["kl"], m["entropy_rate"]])
    cols = [
        Column("sampler", "<17"),
        Column("steps", ">5"),
        Column("TV", ">10.4g"),
        Column("KL", ">10.4g"),
        Column("H/token", ">8.4f"),
    ]
    return text_table(cols, rows)


def loop_invariance_table(etas: list[float], alpha_on: float = 0.5) -> str:
    """TV between ``q_α`` and its image under one loop step (``α`` held at ``alpha_on``) on chain3x4, with the
    sampler's factorised draws and with ``x0`` from the exact joint posterior, per ``σ = η``."""
    c = _chain3x4()
    schedule = loop_schedule(discrete.linear(), 0.55, 0.05, alpha_on)
    z, w = masked_law(c, alpha_on)
    q = law_of_states(z, w, c.vocab_size)
    rows = []
    for eta in etas:
        tvs = [
            tv(law_of_states(*remdm_step_law(c, z, w, 0.3, 0.29, schedule=schedule, eta=eta, joint=j), 3), q)
            for j in (False, True)
        ]
        rows.append([eta, tvs[0], tvs[0] / eta**2, tvs[1]])
    cols = [
        Column("σ", ">7.4f"),
        Column("TV factorised", ">13.4g"),
        Column("TV/σ²", ">7.4f"),
        Column("TV joint", ">9.2g"),
    ]
    return text_table(cols, rows)


def order_temperature_exact_table(temperatures: list[float], steps_list: list[int]) -> str:
    """Exact TV and KL to the chain3x6 target of sampled orders per ordering temperature and step count."""
    c = chains.chain3x6()
    rows = []
    for name in ("sampled_confidence", "confidence"):
        for steps in steps_list:
            for tau in temperatures:
                m = chain_metrics(c, exact_law(c, name, steps, order_temperature=tau))
                rows.append([name, steps, tau, m["tv"], m["kl"], m["entropy_rate"]])
    target = chain_metrics(c, c.law())
    rows.append(["(target)", "", "", 0.0, 0.0, target["entropy_rate"]])
    cols = [
        Column("sampler", "<18"),
        Column("steps", ">5"),
        Column("τ", ">5"),
        Column("TV", ">10.4g"),
        Column("KL", ">10.4g"),
        Column("H/token", ">8.4f"),
    ]
    return text_table(cols, rows)


def entropy_bounded_table(gammas: list[float], seed: int, n: int = 4000) -> str:
    """Exact TV of the entropy-bounded sampler on chain3x6 per budget ``γ``, and its mean steps per sequence
    (measured on ``n`` draws)."""
    c = chains.chain3x6()
    rows = []
    for gamma in gammas:
        steps = torch.zeros(n)

        def count(info: dict, steps: torch.Tensor = steps) -> None:
            steps.add_(info["revealed"].any(-1).float())

        discrete.entropy_bounded(
            c.denoiser(), discrete.all_masked(n, c.length, c.vocab_size), gamma=gamma, seed=seed, callback=count
        )
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


def _float32_exponentials() -> torch.Tensor:
    """The 2²⁴ equally likely values of ``−log(u + 10⁻¹⁰)`` in float32 over ``torch.rand``'s grid, descending."""
    k = torch.arange(2**24, dtype=torch.float64)
    return torch.sort(-torch.log((k * 2.0**-24).to(torch.float32) + 1e-10), descending=True).values


def float32_step_law(vocab: int, r: float, exponentials: torch.Tensor) -> tuple[float, float, float]:
    """``(P(stay masked), P(token 0), P(a rare token))`` of one float32 joint draw (weights ``1 − r``, ``r/2`` and
    ``r/(2(V − 1))`` each), exactly, by enumerating the 2²⁴ values each category's exponential can take.

    A category's float32 score ``w / E`` is non-decreasing along ``exponentials`` (descending ``E``), so its
    distribution function is a ``searchsorted``: ``P(mask wins) = E_k[F_0(< s_mask,k) F_rare(< s_mask,k)^{V−1}]``,
    ``P(token 0 wins) = E_k[F_rare(≤ s_0,k)^{V−1} F_mask(≤ s_0,k)]`` (argmax keeps the first index on ties:
    token 0 first, the mask last); the rare class has the rest.
    """
    weights = {"common": 0.5 * r, "rare": 0.5 * r / (vocab - 1), "mask": 1.0 - r}
    scores = {c: torch.tensor(w, dtype=torch.float64).to(torch.float32) / exponentials for c, w in weights.items()}

    def below(c: str, x: torch.Tensor, inclusive: bool) -> torch.Tensor:
        return torch.searchsorted(scores[c], x, right=inclusive).double() / 2**24

    p_mask = float(
        (below("common", scores["mask"], False) * below("rare", scores["mask"], False) ** (vocab - 1)).mean()
    )
    p_common = float(
        (below("rare", scores["common"], True) ** (vocab - 1) * below("mask", scores["common"], True)).mean()
    )
    return p_mask, p_common, 1.0 - p_mask - p_common


def _law_entropy(f: float, vocab: int) -> float:
    """Entropy of the law with ``1 − f`` on token 0 and ``f`` spread evenly over the other ``vocab − 1``."""
    return -sum(v * math.log(v) for v in (f, 1.0 - f) if v > 0) + f * math.log(vocab - 1)


def float32_first_step(vocab: int, steps_list: list[int], exponentials: torch.Tensor) -> str:
    """The exact law of the float32 joint draw at the first ancestral step (``r = 1/N``) against the exact one."""
    rows = []
    for n in steps_list:
        _, p_common, p_rare = float32_step_law(vocab, 1.0 / n, exponentials)
        rows.append([n, 0.5 / n / (vocab - 1) * 2**24, p_rare / (0.5 / n), p_common / (0.5 / n)])
    cols = [
        Column("N", ">6"),
        Column("w_rare·2²⁴", ">11.3f"),
        Column("rare: f32/exact", ">15.4f"),
        Column("common: f32/exact", ">17.4f"),
    ]
    return (
        f"first step of MDLM's float32 joint draw, V = {vocab} (1/2 on token 0, 1/2 spread), exact over "
        "torch.rand's grid\n" + text_table(cols, rows)
    )


def float32_walk(vocabs: list[int], steps: int, exponentials: torch.Tensor) -> str:
    """The exact output law of a whole ancestral walk (linear schedule) with float32 joint draws on the same
    bed: positions are independent, so ``P(rare) = Σ_i Π_{j<i} P_j(stay) · P_i(rare)``; exact draws give 1/2."""
    grid = discrete.schedules.time_grid(steps)
    reveal = [float(discrete.linear().reveal_probability(grid[i], grid[i + 1])) for i in range(steps)]
    rows = []
    for vocab in vocabs:
        masked, rare = 1.0, 0.0
        for r in reveal:
            p_mask, _, p_rare = float32_step_law(vocab, r, exponentials)
            rare += masked * p_rare
            masked *= p_mask
        h32, h = _law_entropy(rare, vocab), _law_entropy(0.5, vocab)
        rows.append([vocab, steps, 0.5 * reveal[0] / (vocab - 1) * 2**24, rare, h32, h, h32 - h])
    cols = [
        Column("V", ">8"),
        Column("N", ">4"),
        Column("w_rare·2²⁴", ">11.3f"),
        Column("rare f", ">8.4f"),
        Column("H f32", ">8.4f"),
        Column("H exact", ">8.4f"),
        Column("ΔH", ">8.4f"),
    ]
    return "whole walk, exact (float64 draws: rare f = 1/2, H exact)\n" + text_table(cols, rows)


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
    runs = {
        "gumbel float32": dict(draw="gumbel", precision="float32"),
        "gumbel float64": dict(draw="gumbel", precision="float64"),
        "inverse-CDF float64": dict(draw="inverse_cdf"),
    }

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
    cols = [
        Column("draw", "<20"),
        Column("rare f", ">7.4f"),
        Column("±SE", ">7.4f"),
        Column("H(law)", ">7.4f"),
        Column("s", ">6.1f"),
    ]
    return (
        f"V = {vocab}, {batch}×{length} positions, {steps} ancestral steps, joint draw over V + 1 categories\n"
        + text_table(cols, rows)
    )


def fitted_table(samplers: list[str], n: int, budgets: list[int], seed: int) -> str:
    """Transition KL-rate, plug-in entropy rate, NLL and unigram error of ``n`` draws per sampler and step count on
    ``text128``, and the best sampler (lowest transition KL-rate) within each NFE budget.

    Samplers that choose their own steps run once (their NFE is measured) and compete in every budget they fit.
    The reference row is ``n`` exact draws (:meth:`MarkovChain.sample`): its transition KL-rate is the plug-in's
    Monte-Carlo floor.
    """
    c = chains.get_chain("text128")
    rows = []
    for name in samplers:
        for steps in _steps_for(name, c.length, budgets):
            d = c.denoiser()
            x = discrete.get(name)(d, discrete.all_masked(n, c.length, c.vocab_size), steps, seed=seed)
            m = sample_metrics(c, x)
            rows.append([name, d.nfe, m["transition_kl_rate"], m["entropy_rate"], m["nll"], m["unigram_error"]])
    exact = sample_metrics(c, c.sample(n, seed=seed))
    best = []
    for budget in budgets:
        fits = [r for r in rows if r[1] <= budget]
        if fits:
            winner = min(fits, key=lambda r: r[2])
            best.append(f"NFE ≤ {budget}: {winner[0]} ({winner[2]:.4f})")
    rows.append(
        ["(exact draws)", 0, exact["transition_kl_rate"], exact["entropy_rate"], exact["nll"], exact["unigram_error"]]
    )
    cols = [
        Column("sampler", "<16"),
        Column("NFE", ">4"),
        Column("trans.KL", ">9.4f"),
        Column("H plug-in", ">9.4f"),
        Column("NLL/token", ">9.4f"),
        Column("unigram", ">8.4f"),
    ]
    return (
        f"text128 (V = {c.vocab_size}, L = {c.length}), {n} draws each; exact entropy rate "
        f"{exact_entropy_rate(c):.4f} nats/token\n"
        + text_table(cols, rows)
        + "\nbest (lowest transition KL-rate) per budget: "
        + "; ".join(best)
        + f" (Monte-Carlo floor: exact draws {exact['transition_kl_rate']:.4f})"
    )


def run(args: argparse.Namespace) -> int:
    samplers, sections = args.samplers, set(args.sections)
    unknown = sections - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    if "exact" in sections:
        print("== exact laws on chain3x6 (V = 3, L = 6), exact denoiser ==")
        print(exact_tv_table(samplers))
    if "monte-carlo" in sections:
        print("\n== chain4x8 (V = 4, L = 8), exact denoiser, Monte-Carlo ==")
        print(monte_carlo_table(samplers, args.samples, args.seed))
    if "order-temperature" in sections:
        print("\n== sampled-confidence ordering with an ordering temperature (chain4x8, one token per step) ==")
        for temp in (0.0, 0.5, 1.0):
            print(f"order_temperature = {temp}")
            print(
                monte_carlo_table(
                    ["sampled_confidence", "confidence"], args.samples, args.seed, {"order_temperature": temp}, (8,)
                ).split("\n", 1)[1]
            )
    if "order-temperature-exact" in sections:
        print("\n== sampled orders, exact laws on chain3x6: the selection bias per ordering temperature τ ==")
        print(order_temperature_exact_table([0.0, 0.1, 0.3, 1.0, 3.0], [3, 6]))
    if "remdm" in sections:
        print("\n== ReMDM strategies, exact laws on chain3x4 (V = 3, L = 4), exact denoiser ==")
        print(remdm_table([2, 4, 8, 16, 32]))
        print("\n== ReMDM-loop kernel at α = 0.5: TV(K q_α, q_α), factorised draws vs joint posterior (chain3x4) ==")
        print(loop_invariance_table([0.2, 0.1, 0.05, 0.025]))
    if "entropy-bounded" in sections:
        print("\n== entropy-bounded sampler: exact TV on chain3x6 and steps per sequence ==")
        print(entropy_bounded_table([0.0, 0.5, 1.0, 1.5, 2.0], args.seed))
    if "convergence" in sections:
        table, tv_slope, kl_slope = convergence(args.convergence_steps)
        print("\n== ancestral convergence (exact, chain3x6) ==")
        print(table)
        print(f"log-log slope: TV {tv_slope:.3f}, KL {kl_slope:.3f} (O(1/N): −1)")
    if "float32" in sections:
        print("\n== float32 vs float64 Gumbel draws ==")
        exponentials = _float32_exponentials()
        print(float32_first_step(args.float32_vocab, [256, 1024, 2048, 4096, 16384], exponentials))
        print(float32_walk([2**17, 2**19, 2**21], 16, exponentials))
        if args.float32_monte_carlo:
            print(
                float32_draws(
                    args.float32_vocab, args.float32_length, args.float32_batch, args.float32_steps, args.seed
                )
            )
    if "fitted" in sections:
        print("\n== text128: the chain fitted to the stdlib corpus, exact denoiser, per NFE budget ==")
        print(fitted_table(FITTED_SAMPLERS, args.fitted_samples, args.fitted_nfe, args.seed))
    return 0
