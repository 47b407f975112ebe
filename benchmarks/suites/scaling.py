"""Inference-time scaling: particles and search against exact reward-tilted targets and on the digits model.

``python -m benchmarks scaling [--particles 4,16,64] [--populations 400] [--steps 30] [--digits-particles 1,4,16]``

Tilted mixture bed (:func:`diffsample.testbeds.tilt` of a 2-d four-component mixture, linear and quadratic rewards,
α = 1; every method on the same ancestral step of the exact prior denoiser, ``--steps`` log-spaced levels):
one output sample per population (``G = --populations``), each built from ``K`` particles / candidates. Columns:
compute per output sample (network + reward + twist evaluations + backward passes), sliced W2 and component-weight
TV to the exact tilted law with their floors (exact draws of the same size), mean reward against the exact tilted
mean, the normaliser's relative error ``|mean Ẑ/Z − 1|`` and the mean final ESS (particle methods). Methods:
FK steering (potential ``difference`` on ``r(x̂0)/α``), SMC with the exact twist, TDS (gradient twist ``r(x̂0)/α``
and exact twist), SVDD (α as the target's) and best-of-N (a search, not a sampler of the tilt: its reward is the
point). A last table matches compute (K) across best-of-N, FK, SVDD (greedy and soft) and path search: reward
reached and diversity (mean pairwise distance of the output samples).

Digits (shipped unconditional model, 20 ancestral steps): rewards ``log p(y = 3 | x)`` of the shipped clean
classifier (differentiable) and the stroke thickness (fraction of pixels above 0; not differentiable); reward
reached and compute per output sample for each method and K.

Section ``correctors`` (:mod:`.scaling_correctors`; alone with ``--only-correctors``): Feynman–Kac correctors for
annealed, product and CFG targets on 1-d mixture beds, corrected SMC against the plain combined-score SDE.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch

from diffsample.cli import int_list
from diffsample.scaling import (
    AncestralProposal,
    CachedValue,
    ExactMixtureChain,
    best_of_n,
    feynman_kac,
    path_search,
    reward_twist,
    run_chain,
    svdd,
    tree_sample,
    tree_search,
    zero_order_search,
)
from diffsample.scaling.engine import population_seeds, slot_seeds
from diffsample.testbeds import GaussianMixture
from diffsample.testbeds.guidance_metrics import posterior_report
from diffsample.testbeds.tilted import TiltedMixture, linear_reward, quadratic_reward, tilt

from ..report import Column, text_table
from .scaling_correctors import add_corrector_arguments, run_correctors

__all__ = ["add_arguments", "run"]

F64 = torch.float64


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--particles", type=int_list, default=[4, 16, 64], help="K per output sample on the bed")
    p.add_argument("--populations", type=int, default=400, help="output samples per row on the bed (default 400)")
    p.add_argument("--steps", type=int, default=30, help="sampling levels on the bed (default 30)")
    p.add_argument("--digits-particles", type=int_list, default=[1, 4, 16], help="K per output sample on digits")
    p.add_argument("--digits-samples", type=int, default=32, help="output samples per row on digits (default 32)")
    p.add_argument("--tree-max", type=int, default=64, help="largest K (rollouts) for the tree rows (default 64)")
    p.add_argument("--tree-samples", type=int, default=100, help="trees (output samples) per DTS row (default 100)")
    p.add_argument("--skip-digits", action="store_true", help="only the exact bed")
    add_corrector_arguments(p)


def _prior() -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=F64)
    return GaussianMixture(means, torch.full((4,), 0.4, dtype=F64), torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=F64))


def _sigmas(n: int, top: float = 20.0, bottom: float = 1e-3) -> torch.Tensor:
    return torch.cat([torch.logspace(math.log10(top), math.log10(bottom), n, dtype=F64), torch.zeros(1, dtype=F64)])


def _diversity(x: torch.Tensor) -> float:
    flat = x.reshape(x.shape[0], -1).to(F64)
    return float(torch.cdist(flat, flat).sum() / (flat.shape[0] * (flat.shape[0] - 1)))


BED_COLUMNS = [
    Column("method", None),
    Column("K", ">4"),
    Column("compute", ">9.0f", "  "),
    Column("SW", ">7.4f", "  "),
    Column("SW floor", ">8.4f", "  "),
    Column("TV", ">7.4f", "  "),
    Column("TV floor", ">8.4f", "  "),
    Column("reward", ">7.3f", "  "),
    Column("exact", ">7.3f", "  "),
    Column("logZ rel err", ">12.4f", "  "),
    Column("ESS", ">6.1f", "  "),
]


def _bed_rows(bed: TiltedMixture, ks: list[int], g: int, steps: int, tree_max: int, trees: int) -> list[list[object]]:
    sig = _sigmas(steps)
    chain = ExactMixtureChain(bed.prior, sig)
    base = AncestralProposal(bed.prior, sig, (2,), dtype=F64)
    crude = AncestralProposal(bed.prior, sig, (2,), dtype=F64, twist=reward_twist(bed.reward, bed.alpha))
    exact = AncestralProposal(bed.prior, sig, (2,), dtype=F64, twist=lambda x, x0, s: bed.log_twist(x, s))
    z = math.exp(bed.log_normalizer)
    truth = bed.reward_mean()
    rows: list[list[object]] = []

    def report(name: str, k: int, x: torch.Tensor, total: int, log_z: torch.Tensor | None, ess: float) -> None:
        rep = posterior_report(bed.tilted, x, n_floor=3)
        err = abs(float(log_z.exp().mean()) / z - 1.0) if log_z is not None else float("nan")
        reward = float(bed.reward(x.reshape(x.shape[0], -1)).mean())
        per = total / x.shape[0]
        rows.append([name, k, per, rep["sw"], rep["sw_floor"], rep["tv"], rep["tv_floor"], reward, truth, err, ess])

    plain = best_of_n(base, bed.reward, n=1, populations=g, seeds=0)
    report("plain sampler (no reward)", 1, plain.x, plain.cost.network_evaluations, None, float("nan"))
    for k in ks:
        runs = [
            ("exact chain: FK r(x0_hat)", chain, None),
            ("exact chain: SMC exact twist", chain, lambda p: bed.log_twist(p.x, p.time)),
            ("FK steering r(x0_hat)", base, None),
            ("SMC exact twist", base, lambda p: bed.log_twist(p.x, p.time)),
            ("TDS twist r(x0_hat)", crude, CachedValue()),
            ("TDS exact twist", exact, CachedValue()),
        ]
        for name, prop, value in runs:
            res = feynman_kac(prop, bed.reward, particles=k, populations=g, seeds=1, alpha=bed.alpha, value=value)
            report(name, k, res.draw(2), res.cost.total, res.log_normalizer, float(res.ess[-1].mean()))
        sv = svdd(base, bed.reward, candidates=k, samples=g, seeds=3, alpha=bed.alpha)
        report(f"SVDD alpha={bed.alpha:g}", k, sv.x, sv.cost.total, None, float("nan"))
        bo = best_of_n(base, bed.reward, n=k, populations=g, seeds=4)
        report("best-of-N", k, bo.x, bo.cost.total, None, float("nan"))
        if k <= tree_max:
            dts = tree_sample(base, bed.reward, rollouts=k, samples=trees, seeds=5, alpha=bed.alpha)
            report(f"DTS ({trees} trees)", k, dts.x, dts.cost.total, None, float("nan"))
    return rows


def _chain_bias(bed: TiltedMixture, steps: int, n: int) -> str:
    """The base ancestral chain's own error: its samples against the prior, and log E_chain[exp(r/α)] − log Z."""
    last, _ = run_chain(
        AncestralProposal(bed.prior, _sigmas(steps), (2,), dtype=F64), slot_seeds(population_seeds(8, 1), n)
    )
    rep = posterior_report(bed.prior, last.x, n_floor=3)
    log_z = float(torch.logsumexp(bed.reward(last.x) / bed.alpha, 0)) - math.log(n)
    return (
        f"{steps}-step ancestral chain vs the prior ({n} draws): SW {rep['sw']:.4f} (floor {rep['sw_floor']:.4f}), "
        f"TV {rep['tv']:.4f} (floor {rep['tv_floor']:.4f}); its E[exp(r/alpha)] / Z - 1 = "
        f"{math.exp(log_z - bed.log_normalizer) - 1:+.4f}"
    )


MATCHED_COLUMNS = [
    Column("method", None),
    Column("K", ">4"),
    Column("compute", ">9.0f", "  "),
    Column("reward", ">8.3f", "  "),
    Column("diversity", ">9.3f", "  "),
]


def _matched_rows(
    proposal: AncestralProposal,
    ode: AncestralProposal,
    reward: Callable[[torch.Tensor], torch.Tensor],
    alpha: float,
    ks: list[int],
    g: int,
    tree_max: int,
    trees: int,
    twist: Callable | None = None,
) -> list[list[object]]:
    """Best-of-N, FK, SVDD (greedy and soft), zero-order and path search at K particles each: reward, diversity."""
    rows: list[list[object]] = []
    levels = proposal.num_steps

    def add(name: str, k: int, x: torch.Tensor, total: int) -> None:
        rows.append([name, k, total / x.shape[0], float(reward(x).mean()), _diversity(x)])

    for k in ks:
        bo = best_of_n(proposal, reward, n=k, populations=g, seeds=10)
        add("best-of-N", k, bo.x, bo.cost.total)
        fk = feynman_kac(proposal, reward, particles=k, populations=g, seeds=11, alpha=alpha)
        add(f"FK steering alpha={alpha:g}", k, fk.draw(12), fk.cost.total)
        if twist is not None:
            tw = AncestralProposal(
                proposal.denoiser, proposal.sigmas, proposal.shape, twist=twist, dtype=proposal.dtype
            )
            td = feynman_kac(tw, reward, particles=k, populations=g, seeds=11, alpha=alpha, value=CachedValue())
            add(f"TDS alpha={alpha:g}", k, td.draw(12), td.cost.total)
        for a in (0.0, alpha):
            sv = svdd(proposal, reward, candidates=k, samples=g, seeds=13, alpha=a)
            add("SVDD greedy" if a == 0 else f"SVDD alpha={alpha:g}", k, sv.x, sv.cost.total)
        if k >= 2:
            zo = zero_order_search(ode, reward, n=max(1, k // 2), rounds=2, step_size=0.5, populations=g, seeds=14)
            add("zero-order (DDIM, 2 rounds of K/2)", k, zo.x, zo.cost.total)
        if k >= 2 and k % 2 == 0:
            ps = path_search(
                proposal,
                reward,
                n=k,
                checkpoints=[levels // 3, 2 * levels // 3],
                branch=2,
                back=2,
                populations=g,
                seeds=15,
            )
            add("path search (branch 2, back 2)", k, ps.x, ps.cost.total)
        if k <= tree_max:
            ts = tree_search(proposal, reward, rollouts=k, samples=trees, seeds=16, alpha=alpha)
            add(f"DTS* ({trees} trees)", k, ts.x, ts.cost.total)
    return rows


def _digit_rewards() -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], float, bool]]:
    from diffsample.models import load_classifier

    net = load_classifier()

    def class_three(x: torch.Tensor) -> torch.Tensor:
        logits = net(x.clamp(-1, 1).to(torch.float32))
        return torch.log_softmax(logits, dim=1)[:, 3]

    def thickness(x: torch.Tensor) -> torch.Tensor:
        return (x.detach() > 0.0).to(torch.float32).flatten(1).mean(1)

    return {"log p(3|x) classifier": (class_three, 0.2, True), "stroke thickness": (thickness, 0.02, False)}


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    if args.only_correctors:
        run_correctors(args)
        return 0
    prior = _prior()
    beds = {
        "linear r = x1 + 0.5 x2": tilt(prior, linear_reward([1.0, 0.5]), 1.0),
        "quadratic r = -|x - (0, 2)|^2 / 2": tilt(prior, quadratic_reward([0.0, 2.0], 1.0), 1.0),
    }
    for name, bed in beds.items():
        print(f"Tilted mixture bed, {name}, alpha = 1 (log Z = {bed.log_normalizer:.4f}); {args.populations} outputs")
        print(_chain_bias(bed, args.steps, 20000))
        rows = _bed_rows(bed, args.particles, args.populations, args.steps, args.tree_max, args.tree_samples)
        print(text_table(BED_COLUMNS, rows))
        print()
        base = AncestralProposal(bed.prior, _sigmas(args.steps), (2,), dtype=F64)
        ode = AncestralProposal(bed.prior, _sigmas(args.steps), (2,), dtype=F64, eta=0.0)
        print(f"Matched compute on the bed ({name}): reward reached and diversity")
        rows = _matched_rows(
            base, ode, bed.reward, bed.alpha, args.particles, args.populations, args.tree_max, args.tree_samples
        )
        print(text_table(MATCHED_COLUMNS, rows))
        print()
    run_correctors(args)
    if args.skip_digits:
        return 0
    from diffsample import steps
    from diffsample.models import load_digits_model

    model = load_digits_model()
    sig = steps.karras(20, 0.01, 80.0).to(torch.float32).tolist()
    base = AncestralProposal(model, sig, (1, 8, 8))
    ode = AncestralProposal(model, sig, (1, 8, 8), eta=0.0)
    for name, (reward, alpha, differentiable) in _digit_rewards().items():
        print(f"Digits (unconditional model, 20 ancestral steps), reward {name}; {args.digits_samples} outputs")
        twist = reward_twist(reward, alpha) if differentiable else None
        rows = _matched_rows(
            base,
            ode,
            reward,
            alpha,
            args.digits_particles,
            args.digits_samples,
            16,
            min(16, args.digits_samples),
            twist,
        )
        print(text_table(MATCHED_COLUMNS, rows))
        print()
    return 0
