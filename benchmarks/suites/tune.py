"""Tuned plans vs the best hand-made solver/schedule on held-out noise, per bed and NFE (``docs/bench-tune.md``).

``python -m benchmarks tune --beds ring2d --nfe 5``; the table is :func:`benchmarks.tuning_bench.format_tuning_table`.
"""

from __future__ import annotations

import argparse
import json

from diffsample.cli import BED_SPAN, add_tuning_arguments, int_list, progress_printer, span_of, str_list
from diffsample.files import atomic_write_text, check_writable

from ..tuning_bench import format_tuning_table, run_tuning_bench

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beds", type=str_list, default=["ring2d", "mixture64", "digits"])
    p.add_argument("--nfe", type=int_list, default=[4, 5, 6, 8, 10], help="NFE budgets")
    add_tuning_arguments(p)
    p.add_argument(
        "--no-peers",
        action="store_true",
        help="leave out diffusers / k-diffusion configurations on the same span (included when installed)",
    )
    p.add_argument("--out", default=None, help="also write the rows (with the plans) as JSON here")
    p.add_argument(
        "--plans",
        default="bench-out/tuned-plans",
        help="folder where each tuned plan is saved when found; a rerun with the same settings loads "
        "them instead of tuning again (resume). '' to keep none",
    )


def run(args: argparse.Namespace) -> int:
    if args.out:
        check_writable(args.out)  # before the benchmark, not after it
    sigma_min, sigma_max = span_of(args, BED_SPAN)
    rows = run_tuning_bench(
        args.beds,
        args.nfe,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        calibration_size=args.calibration,
        calibration_seed=args.seed,
        heldout_size=args.heldout,
        heldout_seed=args.heldout_seed,
        peers=not args.no_peers,
        plan_dir=args.plans or None,
        progress=progress_printer(args.quiet),
    )
    print(format_tuning_table(rows))
    if args.out:
        out = atomic_write_text(args.out, json.dumps([r.as_dict() for r in rows], indent=1) + "\n")
        print(f"\nwrote {out}")
    return 0
