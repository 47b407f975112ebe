"""The CFG family on the exact Gaussian guidance bed: each walk's exact output law against p_γ and p_c, per NFE.

``python -m benchmarks guidance_exact [--gamma 3] [--steps 5,10,20,50,100] [--pcg-steps 20] [--corrector 0,1,…]``

Every row is a :func:`diffsample.sample` walk of the library (CFG on ``euler``/``ddpm``/``dpmpp_2m``, CFG++ on
``euler``/``euler_ancestral``/``dpmpp_2m``, PCG) on the bed's exact denoisers
(:mod:`diffsample.testbeds.gaussian_guidance`), whose output law is read off exactly by ``affine_walk_law`` —
no sampling error. Columns: NFE per sample, the exact W2 and KL(law ‖ p_γ) to the γ-powered target
``p_u^{1−γ} p_c^γ``, and W2 to ``p_c``. The first table is the counterexample (Chidambaram et al. 2024;
Bradley & Nakkiran 2024): the CFG-ODE and CFG-SDE limits and ``p_γ`` are three different laws. The last
table is the issue's figure: with more corrector steps PCG's distance to ``p_γ`` falls, while CFG's stays
at its limit however many steps it takes. APG is not affine (its projection and clipping are nonlinear), so its
law is not Gaussian and it has no row here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch

import diffsample
from diffsample import steps
from diffsample.cli import count_list, int_list
from diffsample.testbeds.gaussian_guidance import GaussianLaw, affine_walk_law, default_bed, kl, w2
from diffsample.transforms import cfg, cfgpp, pcg, pcg_cost

from ..report import Column, text_table

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gamma", type=float, default=3.0, help="guidance weight γ (diffusers numbering; default 3)")
    p.add_argument("--lam", type=float, default=0.6, help="CFG++ guidance λ in [0, 1] (default 0.6)")
    p.add_argument("--steps", type=int_list, default=[5, 10, 20, 50, 100], help="steps of the CFG/CFG++ walks")
    p.add_argument("--pcg-steps", type=int, default=20, help="predictor steps of the PCG walks (default 20)")
    p.add_argument(
        "--corrector", type=count_list, default=[0, 1, 2, 4, 8, 16, 32, 64], help="PCG corrector steps K per level"
    )
    p.add_argument("--step-size", type=float, default=0.2, help="PCG Langevin step c (δ = c σ²; default 0.2)")
    p.add_argument("--sigma-min", type=float, default=0.002)
    p.add_argument("--sigma-max", type=float, default=80.0)


def _law(denoiser: Any, sigmas: torch.Tensor, solver: Any, start: GaussianLaw, **options: Any) -> GaussianLaw:
    def walk(x: torch.Tensor, noise: Callable[..., torch.Tensor]) -> torch.Tensor:
        return diffsample.sample(denoiser, x, sigmas, solver=solver, noise=noise, **options)

    return affine_walk_law(walk, start)


def _row(method: str, solver: str, n: int, k: str, nfe: int, law: GaussianLaw, target: GaussianLaw, cond: GaussianLaw):
    return [method, solver, n, k, nfe, w2(law, target), kl(law, target), w2(law, cond)]


COLUMNS = [
    Column("method", None),
    Column("solver", None, "  "),
    Column("steps", ">5", "  "),
    Column("K", ">3", "  "),
    Column("NFE", ">5", "  "),
    Column("W2 to p_gamma", ">13.4e", "  "),
    Column("KL to p_gamma", ">13.4e", "  "),
    Column("W2 to p_c", ">11.4e", "  "),
]


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    bed = default_bed()
    gamma, lam = args.gamma, args.lam
    target, cond = bed.gamma_target(gamma), bed.cond
    d_c, d_u = bed.conditional(), bed.unconditional()
    start = bed.start(args.sigma_max)

    ode, sde = bed.ode_law(gamma, args.sigma_max), bed.sde_law(gamma, args.sigma_max)
    print(f"Gaussian guidance bed (2-d), gamma = {gamma}: continuous-time CFG limits against the gamma-powered target")
    limits = [
        ["CFG probability-flow ODE", w2(ode, target), kl(ode, target), w2(ode, cond)],
        ["CFG reverse SDE (DDPM limit)", w2(sde, target), kl(sde, target), w2(sde, cond)],
        ["p_gamma itself", 0.0, 0.0, w2(target, cond)],
    ]
    print(
        text_table(
            [
                Column("law", None),
                Column("W2 to p_gamma", ">13.4e", "  "),
                Column("KL to p_gamma", ">13.4e", "  "),
                Column("W2 to p_c", ">11.4e", "  "),
            ],
            limits,
        )
    )
    print(f"W2(CFG-ODE law, CFG-SDE law) = {w2(ode, sde):.4e}\n")

    rows = []
    for n in args.steps:
        sigmas = steps.karras(n, args.sigma_min, args.sigma_max).to(torch.float64)
        for solver in ("euler", "ddpm", "dpmpp_2m"):
            law = _law(cfg(d_c, gamma, uncond=d_u), sigmas, solver, start)
            rows.append(_row(f"CFG w={gamma:g}", solver, n, "-", 2 * n, law, target, cond))
        for solver in ("euler", "euler_ancestral", "dpmpp_2m"):
            law = _law(cfgpp(d_c, lam, uncond=d_u), sigmas, solver, start)
            rows.append(_row(f"CFG++ lam={lam:g}", solver, n, "-", 2 * n, law, target, cond))
    print("Discrete walks (exact output laws), per NFE")
    print(text_table(COLUMNS, rows))

    pcg_rows = []
    n = args.pcg_steps
    sigmas = steps.karras(n, args.sigma_min, args.sigma_max).to(torch.float64)
    for k in args.corrector:
        law = _law(
            d_c, sigmas, pcg, start, corrector=cfg(d_c, gamma, uncond=d_u), corrector_steps=k, step_size=args.step_size
        )
        pcg_rows.append(_row("PCG (DDIM on p_c)", "pcg", n, str(k), pcg_cost(n + 1, k), law, target, cond))
    for k in args.corrector:
        m = max(1, pcg_cost(n + 1, k) // 2)  # CFG-DDIM at the same NFE: 2 per step
        sigmas_m = steps.karras(m, args.sigma_min, args.sigma_max).to(torch.float64)
        law = _law(cfg(d_c, gamma, uncond=d_u), sigmas_m, "euler", start)
        pcg_rows.append(_row(f"CFG w={gamma:g}", "euler", m, "-", 2 * m, law, target, cond))
    print(f"\nPCG (corrector on p_u^(1-gamma) p_c^gamma, step c = {args.step_size:g}) vs CFG-DDIM at equal NFE")
    print(text_table(COLUMNS, pcg_rows))
    return 0
