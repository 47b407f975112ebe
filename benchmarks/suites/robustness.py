"""Every fixed-step solver × step schedule × 1–1000 steps × float32/float16/bfloat16 networks on exact beds.

Reports NaN/Inf, NFE and exceptions; the exit code is 1 on any failure. ``--steps`` are step counts (not NFE
budgets): the grid checks every walk length, whatever a step costs.
"""

from __future__ import annotations

import argparse

from diffsample.cli import int_list, positive_int, progress_printer, str_list

from ..robustness import BEDS, FULL_STEPS, QUICK_STEPS, SCHEDULES, GridConfig, format_report, run_grid

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--steps",
        type=int_list,
        default=None,
        help="step counts (default 1–20, 25, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000)",
    )
    p.add_argument("--quick", action="store_true", help="step counts 1, 2, 3, 5, 10, 100 only")
    p.add_argument("--beds", type=str_list, default=None, help="ring2d and/or mixture64 (default both)")
    p.add_argument("--solvers", type=str_list, default=None, help="solvers (default: every non-adaptive one)")
    p.add_argument(
        "--schedules",
        type=str_list,
        default=None,
        help="karras, logsnr, kl_optimal, polyexponential, time_uniform, align_your_steps (default all)",
    )
    p.add_argument("--batch", type=positive_int, default=4, help="samples per dtype")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    step_counts = args.steps or (QUICK_STEPS if args.quick else FULL_STEPS)
    config = GridConfig(
        beds=args.beds or BEDS,
        solvers=args.solvers,
        schedules=args.schedules or SCHEDULES,
        steps=step_counts,
        batch=args.batch,
        seed=args.seed,
    )
    report = run_grid(config, jobs=args.jobs, progress=progress_printer(args.quiet))
    print(format_report(report))
    return 1 if report.failures else 0
