"""``generate``'s per-family defaults: the selection table (``--select``) and the figures against the peers.

``python -m benchmarks defaults --select`` runs every solver × step schedule on every unit (exact beds on each
family's span, the digits networks) and the peers on each, and prints, per family and budget, the configuration
with the smallest worst-case ratio to the best peer (:func:`benchmarks.defaults_bench.select_defaults`): the
procedure behind :data:`diffsample.generate.FAMILY_TABLES`. Without ``--select`` it prints the figures
(:func:`benchmarks.defaults_bench.figure_rows`): ``generate``, automatic mode and tuned plans against the best
diffusers / k-diffusion configuration on the same span, and the tuned plan against the best hand-made one, with the
networks the selection never sees in a summary block of their own (``--no-held-out`` leaves them out).
``--tails CONFIGS`` prints how the per-sample errors of the given ``solver/schedule`` configurations spread (batch
RMSE, mean, median, p90, max; :func:`benchmarks.defaults_bench.tail_rows`).
"""

from __future__ import annotations

import argparse
import functools
import json

import torch

from diffsample.cli import TUNE_CALIBRATION, count_list, int_list, positive_int, progress_printer, str_list
from diffsample.files import atomic_write_text

from ..defaults_bench import (
    FIGURE_SEEDS,
    SELECTION_SEEDS,
    best_peer_errors,
    figure_rows,
    figure_seeds,
    format_figures,
    format_selection,
    format_summary,
    format_tails,
    hand_table,
    select_defaults,
    tail_rows,
    units,
)

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--select", action="store_true", help="print the selection table instead of the figures")
    p.add_argument(
        "--tails",
        type=str_list,
        default=None,
        help="instead: per-sample error spread (rmse, mean, median, p90, max) of these solver/schedule configurations",
    )
    p.add_argument(
        "--seeds",
        type=count_list,
        default=None,
        help=(
            "the noise batches of 64, pooled: --select selects on them (default 2,3); the figures evaluate on them "
            "(default 0; never 1, the calibration, or 2, 3; the exact beds' 512-noise figures use 0,4,5,6,7,8,9,10)"
        ),
    )
    p.add_argument("--nfe", type=int_list, default=None, help="budgets (default 4,5,6,8,10,15,20; --select adds 30,50)")
    p.add_argument("--beds", type=str_list, default=["ring2d", "mixture64", "digits"])
    p.add_argument("--units", type=str_list, default=None, help="keep only these units (names as printed)")
    p.add_argument("--no-networks", action="store_true", help="exact beds only")
    p.add_argument(
        "--no-held-out",
        action="store_true",
        help="figures: leave out the networks the selection never sees (HELD_OUT_NETWORKS; never in --select)",
    )
    p.add_argument("--no-tune", action="store_true", help="leave out the tuned plans in the figures")
    p.add_argument(
        "--tune-settings",
        choices=["default", "reduced"],
        default="default",
        help="the tuner's settings in the figures: the library's defaults, or a cheap reduced search",
    )
    p.add_argument(
        "--tune-calibration",
        type=positive_int,
        default=TUNE_CALIBRATION,
        help=f"calibration noises (seed 1) the tuned plans are tuned on (default {TUNE_CALIBRATION}, as in tune)",
    )
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    p.add_argument("--quiet", action="store_true")


def _figures_text(figures: list) -> str:
    return f"{format_figures(figures)}\n\n{format_summary(figures)}"


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    progress = progress_printer(args.quiet)
    held_out = not (args.select or args.no_held_out)
    unit_list = units(args.beds, networks=not args.no_networks, guided=args.select, held_out=held_out)
    if args.units:
        unit_list = [u for u in unit_list if u.name in args.units]
    if args.tails:
        rows = [r for u in unit_list for n in args.nfe or [8, 15] for r in tail_rows(u, n, args.tails)]
        render = functools.partial(format_tails, rows)
        payload: dict = {"tails": [r.__dict__ for r in rows]}
    elif args.select:
        nfes = args.nfe or [4, 5, 6, 8, 10, 15, 20, 30, 50]
        seeds = args.seeds or list(SELECTION_SEEDS)
        table = hand_table(unit_list, nfes, progress, seeds=seeds)
        peers = best_peer_errors(unit_list, nfes, progress, seeds=seeds)
        rows = select_defaults(table, unit_list, peers=peers)
        render = functools.partial(format_selection, rows)
        payload = {
            "seeds": seeds,
            "selection": [r.__dict__ for r in rows],
            "errors": {f"{k[0]}@{k[1]}": v for k, v in table.items()},
            "best_peer": {f"{k[0]}@{k[1]}": v for k, v in peers.items()},
        }
    else:
        nfes = args.nfe or [4, 5, 6, 8, 10, 15, 20]
        try:
            seeds = figure_seeds(args.seeds or FIGURE_SEEDS)
        except ValueError as exc:
            raise SystemExit(f"defaults: {exc}") from None
        figures = figure_rows(
            unit_list,
            nfes,
            tune_plans=not args.no_tune,
            tune_settings=args.tune_settings,
            progress=progress,
            seeds=seeds,
            tune_calibration=args.tune_calibration,
        )
        render = functools.partial(_figures_text, figures)
        payload = {"seeds": list(seeds), "figures": [r.__dict__ for r in figures]}
    if args.out:  # written before anything is formatted or printed: an hours-long run is never lost to a print
        written = atomic_write_text(args.out, json.dumps(payload, indent=1) + chr(10))
    print(render())
    if args.out:
        print(f"\nwrote {written}")
    return 0
