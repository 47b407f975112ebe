"""Stochastic samplers and sampling-time corrections on exact and imperfect beds, one part at a time.

Parts (``--part``, repeatable; default all but cpr): imperfect = restart/SDE vs ODE at equal NFE on misfit and
exposure-biased beds; convergence = SDE distribution error vs NFE on exact beds; exposure = time-shift and epsilon
scaling; v3 = DPM-Solver-v3 with model statistics vs DPM-Solver++; dc = DC-Solver vs UniPC; cpr = DC ratios
predicted across NFE; momentum = heavy-ball / GHVB under strong guidance (``--nfe`` counts guided steps, 2 calls
each). Each takes minutes (v3 and imperfect the longest).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import time

from diffsample.cli import int_list, positive_int, str_list

from ..report import write_csv

__all__ = ["DEFAULT_PARTS", "PARTS", "add_arguments", "run"]

PARTS: dict[str, tuple[str, str, str, str]] = {
    "imperfect": ("stochastic_bench", "run_stochastic_bench", "format_stochastic_table", "n_samples"),
    "convergence": ("stochastic_bench", "run_sde_convergence", "format_convergence_table", "n_samples"),
    "exposure": ("exposure_bench", "run_exposure_bench", "format_exposure_table", "n_samples"),
    "v3": ("v3_bench", "run_v3_bench", "format_v3_table", "n_test"),
    "dc": ("dc_bench", "run_dc_bench", "format_dc_table", "heldout_size"),
    "cpr": ("dc_bench", "run_cpr_bench", "format_cpr_table", "heldout_size"),
    "momentum": ("momentum_bench", "run_momentum_bench", "format_momentum_table", "n_samples"),
}
"""Part -> (module of :mod:`benchmarks`, run, format, run's keyword for ``--samples``). Every run takes ``beds``
and ``nfes`` and returns dataclass rows."""
DEFAULT_PARTS = ("imperfect", "convergence", "exposure", "v3", "dc", "momentum")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--part",
        action="append",
        choices=list(PARTS),
        default=None,
        help="which part (repeatable; default all but cpr)",
    )
    p.add_argument(
        "--beds",
        type=str_list,
        default=None,
        help="beds (imperfect: ring2d, mixture64 or e.g. ring2d-misfit; convergence: ring2d, mixture64)",
    )
    p.add_argument(
        "--nfe",
        type=int_list,
        default=None,
        help="NFE budgets (default: imperfect 10,20; convergence 8,12,16,24,32,48,64)",
    )
    p.add_argument("--samples", type=positive_int, default=None, help="samples per bed (default 10000)")
    p.add_argument("--out", default=None, help="also write every row as CSV here (a 'part' column first)")


def run(args: argparse.Namespace) -> int:
    records: list[dict[str, object]] = []
    for part in args.part or list(DEFAULT_PARTS):
        module_name, run_name, format_name, samples_keyword = PARTS[part]
        module = importlib.import_module(f"benchmarks.{module_name}")
        run_part, fmt = getattr(module, run_name), getattr(module, format_name)
        given = {"beds": args.beds, "nfes": args.nfe, samples_keyword: args.samples}
        options = {key: value for key, value in given.items() if value is not None}
        started = time.perf_counter()
        rows = run_part(**options)
        print(f"## {part} ({time.perf_counter() - started:.0f} s)\n\n{fmt(rows)}\n", flush=True)
        records += [{"part": part, **dataclasses.asdict(r)} for r in rows]
    if args.out:
        print(f"wrote {write_csv(records, args.out)}")
    return 0
