"""Solvers × NFE on the exact test beds against exact ODE solutions (table, CSV, log-log plot).

``python -m benchmarks beds --solvers euler,heun --nfe 10 --beds ring2d --batch 16``; ``--peers`` adds diffusers
and k-diffusion and prints ``generate`` against the best peer; ``--convergence`` measures convergence orders.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

from diffsample import solvers
from diffsample.cli import int_list, positive_int, progress_printer, str_list

from ..report import format_comparison, format_table, plot_error_vs_nfe, write_csv
from ..runner import BenchConfig, convergence_slopes, run_benchmark

__all__ = ["DEFAULT_NFES", "add_arguments", "budgeted_solvers", "run"]

DEFAULT_NFES = [3, 4, 5, 6, 8, 10, 15, 20, 50]


def budgeted_solvers() -> list[str]:
    """Registered solvers that follow a given step schedule deterministically (the benchmark's default)."""
    # `plan` runs a tuned plan's per-step choices; without a plan it is not a hand-made configuration
    return [
        n
        for n in solvers.available()
        if not solvers.spec(n).stochastic and not solvers.spec(n).adaptive and n != "plan"
    ]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--beds",
        type=str_list,
        default=["ring2d", "mixture64", "digits"],
        help="comma-separated beds (ring2d, mixture64, digits)",
    )
    p.add_argument(
        "--solvers",
        type=str_list,
        default=None,
        help="comma-separated solver names (default: every deterministic fixed-step solver)",
    )
    p.add_argument(
        "--schedules",
        type=str_list,
        default=["karras"],
        help="step schedules (names from diffsample.steps.SCHEDULES; default karras)",
    )
    p.add_argument("--nfe", type=int_list, default=DEFAULT_NFES, help="NFE budgets (default 3,4,5,6,8,10,15,20,50)")
    p.add_argument("--sigma-min", type=float, default=0.002)
    p.add_argument("--sigma-max", type=float, default=80.0)
    p.add_argument("--batch", type=positive_int, default=64, help="samples per bed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--peers",
        action="store_true",
        help="also run diffusers and k-diffusion (optional extra) and print generate vs the best peer",
    )
    p.add_argument(
        "--convergence", action="store_true", help="also measure convergence orders (slope of log RMSE vs log NFE)"
    )
    p.add_argument("--out", default="bench-out", help="folder for bench.csv and bench.png")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    solver_names = args.solvers or budgeted_solvers()
    log = progress_printer(args.quiet)
    config = BenchConfig(
        beds=args.beds,
        solvers=solver_names,
        schedules=args.schedules,
        nfes=args.nfe,
        sigma_min=args.sigma_min,
        sigma_max=args.sigma_max,
        batch=args.batch,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    extra = []
    if args.peers:
        from ..compare import generate_rows, peer_rows
        from ..peers import require_peers

        require_peers()
        extra = [generate_rows, partial(peer_rows, progress=log)]
    rows = run_benchmark(config, progress=log, extra=extra)
    if not args.peers:
        print(format_table(rows))
    csv_path = write_csv(rows, out / "bench.csv")
    png_path = plot_error_vs_nfe(rows, out / "bench.png")
    if args.peers:
        from ..compare import compare

        print(format_comparison(compare(rows)))
    if args.convergence:
        conv = BenchConfig(
            beds=args.beds,
            solvers=solver_names,
            schedules=["logsnr"],
            nfes=[64, 128, 256, 512],
            sigma_min=args.sigma_min,
            sigma_max=args.sigma_max,
            batch=args.batch,
            seed=args.seed,
            end_at_zero=False,
        )
        conv_rows = run_benchmark(conv, progress=log)
        write_csv(conv_rows, out / "convergence.csv")
        plot_error_vs_nfe(conv_rows, out / "convergence.png")
        print(
            f"\nConvergence order (−slope of log RMSE vs log NFE, logsnr steps, span "
            f"[{args.sigma_min}, {args.sigma_max}] without the final step to 0, fitted over NFE 128–512):"
        )
        for (bed, solver, _schedule), order in sorted(convergence_slopes(conv_rows, min_nfe=128).items()):
            print(f"  {bed:<10} {solver:<16} {order:6.2f}  (theory {solvers.spec(solver).order})")
    print(f"\nwrote {csv_path} and {png_path} ({time.perf_counter() - t0:.1f}s)")
    return 0
