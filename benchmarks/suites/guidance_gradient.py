"""Gradient guidance (classifier guidance, DPS, TFG) on exact mixture beds and the digits model: table, CSV.

``python -m benchmarks guidance_gradient [--part classifier|inverse|reward|digits] [--samples N] [--nfe 10,20]``.
Parts are described in :mod:`benchmarks.guidance_gradient_bench`; each prints its table (costs per sample: NFE,
backward passes, classifier/predictor calls) and the distances to the exact target next to the sampling floor.
"""

from __future__ import annotations

import argparse
import dataclasses

from diffsample.cli import int_list, positive_int, progress_printer

from ..guidance_gradient_bench import PARTS, format_rows, run_part
from ..report import write_csv

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--part", action="append", choices=list(PARTS), default=None, help="which part (repeatable; default all)"
    )
    p.add_argument("--samples", type=positive_int, default=None, help="samples per row (default 4000; digits 1000)")
    p.add_argument("--nfe", type=int_list, default=None, help="step counts (default per part)")
    p.add_argument("--out", default=None, help="also write every row as CSV here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    log = progress_printer(args.quiet) or (lambda _msg: None)
    records = []
    for part in args.part or list(PARTS):
        rows = run_part(part, args.samples, args.nfe, log)
        print(f"## {part}\n\n{format_rows(rows)}\n", flush=True)
        records += [dataclasses.asdict(r) for r in rows]
    if args.out:
        print(f"wrote {write_csv(records, args.out)}")
    return 0
