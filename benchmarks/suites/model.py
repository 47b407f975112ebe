"""The shipped digits network: FD, class accuracy and RMSE vs a 1000-step reference, per solver × schedule × NFE.

``python -m benchmarks model --peers`` (writes digits-model.csv/.md under ``--out``); the rows and method notes
are in :mod:`benchmarks.model_bench`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from diffsample.cli import int_list, positive_int, progress_printer, str_list

from ..model_bench import run_and_report

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--solvers", type=str_list, default=None, help="comma-separated solver names")
    p.add_argument(
        "--schedules",
        type=str_list,
        default=None,
        help="step schedules (default karras, logsnr, time_uniform-trailing)",
    )
    p.add_argument("--nfe", type=int_list, default=[4, 5, 6, 8, 10, 15, 20], help="NFE budgets")
    p.add_argument("--samples", type=positive_int, default=500, help="samples per method")
    p.add_argument("--no-tune", action="store_true", help="leave out the tuned plans")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers", action="store_true", help="also run diffusers and k-diffusion (optional extra)")
    p.add_argument("--out", default="bench-out", help="folder for digits-model.csv and .md")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    if args.peers:
        from ..peers import require_peers

        require_peers()
    t0 = time.perf_counter()
    print(
        run_and_report(
            args.nfe,
            args.samples,
            args.out,
            peers=args.peers,
            solver_names=args.solvers,
            schedules=args.schedules,
            tuned=not args.no_tune,
            seed=args.seed,
            progress=progress_printer(args.quiet),
        )
    )
    print(f"\nwrote {Path(args.out) / 'digits-model.csv'} and .md ({time.perf_counter() - t0:.1f}s)")
    return 0
