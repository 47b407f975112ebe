"""Time outside the model per model evaluation, next to diffusers and k-diffusion (best of interleaved runs).

``python -m benchmarks overhead --solvers euler --shape 4x2 --steps 10 --repeats 3``.
"""

from __future__ import annotations

import argparse

from diffsample.cli import int_list, positive_int, str_list

from ..overhead import format_overhead_table, measure_overhead

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--solvers", type=str_list, default=None, help="solvers (default: those with a peer)")
    p.add_argument("--shape", default="64x3x32x32", help="batch shape, e.g. 64x3x32x32")
    p.add_argument("--steps", type=positive_int, default=20, help="steps per walk")
    p.add_argument("--repeats", type=positive_int, default=7)
    p.add_argument("--no-peers", action="store_true", help="time diffsample alone")


def run(args: argparse.Namespace) -> int:
    shape = tuple(int_list(args.shape.replace("x", ",")))
    rows = measure_overhead(
        args.solvers, shape=shape, n_steps=args.steps, repeats=args.repeats, peers=not args.no_peers
    )
    print(
        f"time outside the model per model evaluation, batch {args.shape}, {args.steps} steps, best of "
        f"{args.repeats} interleaved runs (ms):"
    )
    print(format_overhead_table(rows))
    return 0
