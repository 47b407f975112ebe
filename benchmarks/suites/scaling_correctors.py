"""The ``correctors`` section of the ``scaling`` suite: Feynman–Kac correctors (Skreta et al. 2025) on 1-d beds.

``python -m benchmarks scaling --only-correctors [--corrector-particles 1,4,16,64] [--corrector-populations 1000]
[--corrector-steps 200]``

Targets built from exact Gaussian-mixture denoisers, known in closed form up to a constant and tabulated on a grid
(:class:`~diffsample.testbeds.grid_density.GridDensity`): ``p^2`` and ``p^0.5`` of a two-mode mixture of unequal
widths, the product of that mixture with a broad Gaussian, and CFG ``p_u^{−1} p_c^{2}`` (γ = 2) of two
mixtures with the same modes and different widths.
For each ``K``: FKC's SMC (``K`` particles, systematic resampling at ESS < K/2, one output per population drawn by
the final weights) against the plain combined-score SDE (one path per output; its ``K`` rows are the same for every
``K``). Columns: network evaluations per output sample, W1 to the exact target and its Monte-Carlo floor (W1 of as
many exact draws), the mass on ``x > 0`` against the exact one, and the error of ``log Ẑ`` (log of the mean of
``Ẑ`` over populations) against the exact ``log ∫ q̃``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch

from diffsample.cli import int_list
from diffsample.scaling import FKCorrectorProposal, fk_corrector_smc
from diffsample.testbeds import GaussianMixture
from diffsample.testbeds.grid_density import GridDensity

from ..report import Column, text_table

__all__ = ["add_corrector_arguments", "run_correctors"]

F64 = torch.float64

COLUMNS = [
    Column("target", None),
    Column("method", None, "  "),
    Column("K", ">4"),
    Column("NFE/sample", ">10.0f", "  "),
    Column("W1", ">7.4f", "  "),
    Column("W1 floor", ">8.4f", "  "),
    Column("P(x>0)", ">7.3f", "  "),
    Column("exact", ">6.3f", "  "),
    Column("log Z err", ">9.3f", "  "),
]


def add_corrector_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corrector-particles", type=int_list, default=[1, 4, 16, 64], help="K for the FKC rows")
    p.add_argument("--corrector-populations", type=int, default=1000, help="output samples per FKC row")
    p.add_argument("--corrector-steps", type=int, default=200, help="levels of the FKC SDE (default 200)")
    p.add_argument("--only-correctors", action="store_true", help="only the Feynman–Kac corrector section")


def _sigmas(n: int, top: float = 20.0, bottom: float = 1e-3) -> torch.Tensor:
    return torch.cat([torch.logspace(math.log10(top), math.log10(bottom), n, dtype=F64), torch.zeros(1, dtype=F64)])


def _mixture(weights: list[float], stds: tuple[float, float] = (0.3, 1.0)) -> GaussianMixture:
    means = torch.tensor([[-2.0], [2.0]], dtype=F64)
    return GaussianMixture(means, torch.tensor(stds, dtype=F64), torch.tensor(weights, dtype=F64))


def _log_density(bed: GaussianMixture) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: bed.log_prob(t[:, None], 0.0)


Builder = Callable[[bool, torch.Tensor], FKCorrectorProposal]


def _targets() -> dict[str, tuple[Builder, GridDensity]]:
    p, broad = _mixture([0.5, 0.5]), GaussianMixture(torch.tensor([[1.0]], dtype=F64), torch.tensor([1.5], dtype=F64))
    uncond, cond = _mixture([0.5, 0.5], (0.6, 1.0)), _mixture([0.3, 0.7], (0.5, 0.5))
    lp, lb, lu, lc = _log_density(p), _log_density(broad), _log_density(uncond), _log_density(cond)
    return {
        "p^2": (
            lambda c, s: FKCorrectorProposal.annealed(p, 2.0, s, (1,), dtype=F64, corrected=c),
            GridDensity(lambda t: 2.0 * lp(t), -12.0, 12.0),
        ),
        "p^0.5": (
            lambda c, s: FKCorrectorProposal.annealed(p, 0.5, s, (1,), dtype=F64, corrected=c),
            GridDensity(lambda t: 0.5 * lp(t), -12.0, 12.0),
        ),
        "p * N(1, 1.5^2)": (
            lambda c, s: FKCorrectorProposal.product(p, broad, s, (1,), dtype=F64, corrected=c),
            GridDensity(lambda t: lp(t) + lb(t), -12.0, 12.0),
        ),
        "CFG p_u^-1 p_c^2": (
            lambda c, s: FKCorrectorProposal.geometric_mixture(uncond, cond, 2.0, s, (1,), dtype=F64, corrected=c),
            GridDensity(lambda t: 2.0 * lc(t) - lu(t), -12.0, 12.0),
        ),
    }


def corrector_rows(particles: list[int], populations: int, steps: int) -> list[list[object]]:
    """One row per target, method and ``K`` (module docstring)."""
    rows: list[list[object]] = []
    sig = _sigmas(steps)
    for name, (build, exact) in _targets().items():
        floor = exact.wasserstein1(exact.sample(populations, torch.Generator().manual_seed(0)))
        truth = exact.mass_above(0.0)
        plain = fk_corrector_smc(build(False, sig), particles=1, populations=populations, seeds=1)
        x = plain.x[:, 0, 0]
        nfe = plain.cost.network_evaluations / populations
        mass = float((x > 0).to(F64).mean())
        rows.append([name, "plain SDE", 1, nfe, exact.wasserstein1(x), floor, mass, truth, float("nan")])
        for k in particles:
            res = fk_corrector_smc(build(True, sig), particles=k, populations=populations, seeds=2)
            x = res.draw(3)[:, 0]
            log_z = float(torch.logsumexp(res.log_normalizer, 0)) - math.log(populations)
            nfe = res.cost.network_evaluations / populations
            mass = float((x > 0).to(F64).mean())
            err = log_z - exact.log_normalizer
            rows.append([name, "FKC SMC", k, nfe, exact.wasserstein1(x), floor, mass, truth, err])
    return rows


def run_correctors(args: argparse.Namespace) -> None:
    print(
        f"Feynman-Kac correctors on 1-d mixture beds ({args.corrector_steps} levels, Euler-Maruyama; "
        f"{args.corrector_populations} outputs per row)"
    )
    rows = corrector_rows(args.corrector_particles, args.corrector_populations, args.corrector_steps)
    print(text_table(COLUMNS, rows))
    print()
