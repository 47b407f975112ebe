"""Picard (ParaDiGMS) parallel sampling: rounds and model calls vs tolerance, error against the sequential walk.

``python -m benchmarks picard --steps 100 --tols 0,1e-6,1e-4,1e-3,1e-2``: on the exact beds (ring2d, mixture64)
each row is one Picard run of ``--samples`` samples from seeded noise on ``--steps`` log-SNR levels, against the
sequential walk of the same solver with the same noise fixed in advance: Picard rounds, batched model calls
(the latency in calls; sequential: ``seq calls``), model evaluations per sample (the total work) and the largest
per-sample RMS error. ``--digits`` adds wall times of both walks on the shipped digits model.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from diffsample import noise, steps
from diffsample.cli import positive_int, str_list
from diffsample.parallel import picard, sequential

from ..report import markdown_table, write_csv

__all__ = ["PicardRow", "add_arguments", "run", "run_picard_bench"]


@dataclasses.dataclass(frozen=True)
class PicardRow:
    bed: str
    solver: str
    steps: int
    window: int
    tol: float
    rounds: int
    batched_calls: int
    sequential_calls: int
    evaluations_per_sample: float
    max_rms_error: float
    picard_seconds: float
    sequential_seconds: float


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beds", type=str_list, default=["ring2d", "mixture64"], help="exact beds")
    p.add_argument("--solvers", type=str_list, default=["euler", "heun", "euler_ancestral"])
    p.add_argument("--steps", type=positive_int, default=100, help="log-SNR steps per walk")
    p.add_argument("--window", type=positive_int, default=None, help="steps per window (default: all)")
    p.add_argument("--tols", type=str_list, default=["0", "1e-6", "1e-4", "1e-3", "1e-2"])
    p.add_argument("--samples", type=positive_int, default=64)
    p.add_argument("--digits", action="store_true", help="also time both walks on the shipped digits model")
    p.add_argument("--csv", default=None, help="write the rows to this CSV file")


def _denoiser(bed: str) -> tuple[object, tuple[int, ...], float, float]:
    """The denoiser, per-sample shape and span of a bed name or of ``digits-model``."""
    if bed == "digits-model":
        from diffsample.models import load_digits_model

        model = load_digits_model()
        return model, (1, 8, 8), float(model.noise_schedule.sigma_min), float(model.noise_schedule.sigma_max)
    from diffsample.testbeds import get_bed

    return get_bed(bed), ((2,) if bed == "ring2d" else (64,)), 0.002, 80.0


def run_picard_bench(
    beds: list[str], solvers: list[str], n_steps: int, window: int | None, tols: list[float], samples: int
) -> list[PicardRow]:
    rows = []
    for bed in beds:
        den, shape, smin, smax = _denoiser(bed)
        sigmas = steps.logsnr(n_steps, smin, smax)
        dtype = torch.float32 if bed == "digits-model" else torch.float64
        x = noise.seeded(0).initial((samples, *shape), float(sigmas[0]), dtype=dtype)
        for solver in solvers:
            with torch.inference_mode():
                t0 = time.perf_counter()
                ref = sequential(den, x, sigmas, solver, noise=noise.seeded(1))
                seq_seconds = time.perf_counter() - t0
                for tol in tols:
                    t0 = time.perf_counter()
                    out = picard(den, x, sigmas, solver, noise=noise.seeded(1), tol=tol, window=window)
                    seconds = time.perf_counter() - t0
                    err = float((out.x - ref).reshape(samples, -1).square().mean(1).sqrt().max())
                    rows.append(
                        PicardRow(
                            bed, solver, n_steps, window or n_steps, tol, out.rounds, out.batched_calls,
                            out.sequential_calls, out.evaluations_per_sample, err, seconds, seq_seconds,
                        )
                    )  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> int:
    tols = [float(t) for t in args.tols]
    beds = [*args.beds, *(["digits-model"] if args.digits else [])]
    rows = run_picard_bench(beds, args.solvers, args.steps, args.window, tols, args.samples)
    header = ["bed", "solver", "steps", "window", "tol", "rounds", "batched calls", "seq calls", "evals/sample"]
    header += ["max RMS error", "picard s", "seq s"]
    cells = [
        [r.bed, r.solver, r.steps, r.window, f"{r.tol:g}", r.rounds, r.batched_calls, r.sequential_calls]
        + [f"{r.evaluations_per_sample:.1f}", f"{r.max_rms_error:.2e}", f"{r.picard_seconds:.2f}"]
        + [f"{r.sequential_seconds:.2f}"]
        for r in rows
    ]
    print(markdown_table(header, cells, ["", "", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":"]))
    if args.csv:
        print(f"wrote {write_csv(rows, args.csv)}")
    return 0
