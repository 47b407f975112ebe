"""The ``diffsample`` command line: ``diffsample --help`` lists the commands."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _budgeted_solvers() -> list[str]:
    """Registered solvers that follow a given step schedule deterministically (the benchmark's default)."""
    from . import solvers

    # `plan` runs a tuned plan's per-step choices; without a plan it is not a hand-made configuration
    return [n for n in solvers.available()
            if not solvers.spec(n).stochastic and not solvers.spec(n).adaptive and n != "plan"]


def _cmd_solvers(args: argparse.Namespace) -> int:
    from . import solvers

    for name in solvers.available():
        s = solvers.spec(name)
        kind = "stochastic" if s.stochastic else ("adaptive" if s.adaptive else "ODE")
        print(f"{name:<16} order {s.order}  {s.evals_per_step} eval/step  {kind:<10}  {s.summary}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.model:
        return _cmd_bench_model(args)
    from .bench import BenchConfig, convergence_slopes, run_benchmark
    from .bench.report import format_comparison, format_table, plot_error_vs_nfe, write_csv

    args.nfe = args.nfe or [3, 4, 5, 6, 8, 10, 15, 20, 50]
    args.schedules = args.schedules or ["karras"]
    out = Path(args.out)
    solver_names = args.solvers or _budgeted_solvers()
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.quiet else None
    config = BenchConfig(beds=args.beds, solvers=solver_names, schedules=args.schedules, nfes=args.nfe,
                         sigma_min=args.sigma_min, sigma_max=args.sigma_max, batch=args.batch, seed=args.seed)
    t0 = time.perf_counter()
    extra = []
    if args.peers:
        from functools import partial

        from .bench.compare import generate_rows, peer_rows
        from .bench.peers import peers_available

        missing = [name for name, version in peers_available().items() if version is None]
        if missing:
            raise ImportError(f"--peers needs {', '.join(missing)}: bash scripts/setup.sh peers "
                              "(or pip install --no-deps -r requirements-peers.txt)")
        extra = [generate_rows, partial(peer_rows, progress=log)]
    rows = run_benchmark(config, progress=log, extra=extra)
    if not args.peers:
        print(format_table(rows))
    csv_path = write_csv(rows, out / "bench.csv")
    png_path = plot_error_vs_nfe(rows, out / "bench.png")
    if args.peers:
        from .bench.compare import compare

        print(format_comparison(compare(rows)))
    if args.convergence:
        conv = BenchConfig(beds=args.beds, solvers=solver_names, schedules=["logsnr"],
                           nfes=[64, 128, 256, 512], sigma_min=args.sigma_min, sigma_max=args.sigma_max,
                           batch=args.batch, seed=args.seed, end_at_zero=False)
        conv_rows = run_benchmark(conv, progress=log)
        write_csv(conv_rows, out / "convergence.csv")
        plot_error_vs_nfe(conv_rows, out / "convergence.png")
        print(f"\nConvergence order (−slope of log RMSE vs log NFE, logsnr steps, span "
              f"[{args.sigma_min}, {args.sigma_max}] without the final step to 0, fitted over NFE 128–512):")
        for (bed, solver, _schedule), order in sorted(convergence_slopes(conv_rows, min_nfe=128).items()):
            print(f"  {bed:<10} {solver:<16} {order:6.2f}  (theory {_theory_order(solver)})")
    print(f"\nwrote {csv_path} and {png_path} ({time.perf_counter() - t0:.1f}s)")
    return 0


def _cmd_bench_model(args: argparse.Namespace) -> int:
    from .bench.model_bench import run_and_report

    if args.peers:
        from .bench.peers import peers_available

        missing = [name for name, version in peers_available().items() if version is None]
        if missing:
            raise ImportError(f"--peers needs {', '.join(missing)}: bash scripts/setup.sh peers "
                              "(or pip install --no-deps -r requirements-peers.txt)")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.quiet else None
    t0 = time.perf_counter()
    print(run_and_report(args.nfe or [4, 5, 6, 8, 10, 15, 20], args.samples, args.out, peers=args.peers,
                         solver_names=args.solvers, schedules=args.schedules, tuned=not args.no_tune,
                         seed=args.seed, progress=log))
    print(f"\nwrote {Path(args.out) / 'digits-model.csv'} and .md ({time.perf_counter() - t0:.1f}s)")
    return 0


def _cmd_overhead(args: argparse.Namespace) -> int:
    from .bench.overhead import measure_overhead

    shape = tuple(_int_list(args.shape.replace("x", ",")))
    rows = measure_overhead(args.solvers, shape=shape, n_steps=args.steps, repeats=args.repeats,
                            peers=not args.no_peers)
    print(f"time outside the model per model evaluation, batch {args.shape}, {args.steps} steps, best of "
          f"{args.repeats} interleaved runs (ms):")
    print(f"{'solver':<16} {'diffsample':>10} {'diffusers':>10} {'k-diffusion':>11} "
          f"{'÷ diffusers':>11} {'÷ k-diff':>9}")

    def cell(v: float | None, fmt: str) -> str:
        return format(v, fmt) if v is not None else "—"

    for r in rows:
        print(f"{r.solver:<16} {r.ours_ms:>10.3f} {cell(r.diffusers_ms, '>10.3f'):>10} "
              f"{cell(r.kdiffusion_ms, '>11.3f'):>11} {cell(r.ratio_diffusers, '>11.2f'):>11} "
              f"{cell(r.ratio_kdiffusion, '>9.2f'):>9}")
    return 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    from .bench.robustness import BEDS, FULL_STEPS, QUICK_STEPS, SCHEDULES, GridConfig, format_report, run_grid

    step_counts = args.steps or (QUICK_STEPS if args.quick else FULL_STEPS)
    config = GridConfig(beds=args.beds or BEDS, solvers=args.solvers, schedules=args.schedules or SCHEDULES,
                        steps=step_counts, batch=args.batch, seed=args.seed)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.quiet else None
    report = run_grid(config, jobs=args.jobs, progress=log)
    print(format_report(report))
    return 1 if report.failures else 0


def _cmd_tune(args: argparse.Namespace) -> int:
    import torch

    from . import noise
    from .bench.runner import BenchConfig, run_benchmark
    from .bench.tuning_bench import HAND_SCHEDULES, hand_made_solvers
    from .sampling import sample
    from .testbeds import get_bed, reference_solution
    from .tuning import tune

    if args.seed == args.heldout_seed:
        raise ValueError("--seed (calibration) and --heldout-seed must differ")
    bed = get_bed(args.bed)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.quiet else None
    calibration = noise.seeded(args.seed).initial((args.calibration, *bed.shape), args.sigma_max, dtype=torch.float64)
    plan = tune(bed, nfe=args.nfe, sigma_min=args.sigma_min, sigma_max=args.sigma_max, calibration=calibration,
                model_id=args.bed, progress=log)
    plan.save(args.out)
    prov = plan.provenance
    print(f"tuned plan for {args.bed} at NFE {args.nfe} -> {args.out}")
    print(plan.describe())
    print(f"calibration ({args.calibration} samples, seed {args.seed}): RMSE {prov['error']:.4g} vs the teacher; "
          f"tuning {prov['tuning_seconds']:.1f}s, {prov['tuning_nfe']:.0f} NFE (teacher {prov['teacher_nfe']})")
    held = noise.seeded(args.heldout_seed).initial((args.heldout, *bed.shape), args.sigma_max, dtype=torch.float64)
    reference = reference_solution(bed, held, args.sigma_max, 0.0)
    tuned = float((sample(bed, held, plan=plan).to(torch.float64) - reference).square().mean().sqrt())
    config = BenchConfig(beds=[args.bed], solvers=hand_made_solvers(), schedules=list(HAND_SCHEDULES),
                         nfes=[args.nfe], sigma_min=args.sigma_min, sigma_max=args.sigma_max, batch=args.heldout,
                         seed=args.heldout_seed)
    hand = sorted(run_benchmark(config), key=lambda r: r.rmse)
    print(f"\nheld-out ({args.heldout} samples, seed {args.heldout_seed}), RMSE vs the exact ODE solution:")
    print(f"  {'tuned plan':<32} {tuned:.4g}")
    for r in hand[:5]:
        print(f"  {r.solver + '/' + r.schedule:<32} {r.rmse:.4g}  (tuned / this = {tuned / r.rmse:.2f})")
    return 0


def _add_tuning_arguments(p: argparse.ArgumentParser) -> None:
    """Span, calibration and held-out batches, shared by ``tune`` and ``bench-tune``."""
    p.add_argument("--sigma-min", type=float, default=0.002)
    p.add_argument("--sigma-max", type=float, default=80.0)
    p.add_argument("--calibration", type=int, default=256, help="calibration samples")
    p.add_argument("--seed", type=int, default=1, help="calibration seed")
    p.add_argument("--heldout", type=int, default=256, help="held-out samples (scored against the exact ODE solution)")
    p.add_argument("--heldout-seed", type=int, default=0, help="held-out seed (the benchmark's)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _cmd_bench_tune(args: argparse.Namespace) -> int:
    import json

    from .bench.tuning_bench import format_tuning_table, run_tuning_bench

    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.quiet else None
    rows = run_tuning_bench(args.beds, args.nfe, sigma_min=args.sigma_min, sigma_max=args.sigma_max,
                            calibration_size=args.calibration, calibration_seed=args.seed,
                            heldout_size=args.heldout, heldout_seed=args.heldout_seed, peers=not args.no_peers,
                            plan_dir=args.plans or None, progress=log)
    print(format_tuning_table(rows))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([r.as_dict() for r in rows], indent=1) + "\n")
        print(f"\nwrote {out}")
    return 0


_HELDOUT_KEYWORDS = {"beds": "beds", "nfe": "nfes", "samples": "heldout_size"}
STOCHASTIC_PARTS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "imperfect": ("stochastic_bench", "run_stochastic_bench", "format_stochastic_table",
                  {"beds": "beds", "nfe": "budgets", "samples": "n_samples"}),
    "convergence": ("stochastic_bench", "run_sde_convergence", "format_convergence_table",
                    {"beds": "beds", "nfe": "budgets", "samples": "n_samples"}),
    "exposure": ("exposure_bench", "run_exposure_bench", "format_exposure_table",
                 {"beds": "beds", "nfe": "budgets", "samples": "n_samples"}),
    "v3": ("v3_bench", "run_v3_bench", "format_v3_table", {"beds": "beds", "nfe": "nfes", "samples": "n_test"}),
    "dc": ("dc_bench", "run_dc_bench", "format_dc_table", _HELDOUT_KEYWORDS),
    "cpr": ("dc_bench", "run_cpr_bench", "format_cpr_table", _HELDOUT_KEYWORDS),
    "momentum": ("momentum_bench", "run_momentum_bench", "format_momentum_table",
                 {"beds": "beds", "nfe": "step_counts", "samples": "n_samples"}),
}
"""``bench-stochastic`` parts: name -> (module of :mod:`diffsample.bench`, run, format, CLI option -> keyword of
run). Each run returns dataclass rows. ``momentum``'s ``--nfe`` counts guided steps (2 calls each)."""
DEFAULT_STOCHASTIC_PARTS = ("imperfect", "convergence", "exposure", "v3", "dc", "momentum")


def _cmd_bench_stochastic(args: argparse.Namespace) -> int:
    import csv
    import dataclasses
    import importlib

    records: list[dict[str, object]] = []
    for part in args.part or list(DEFAULT_STOCHASTIC_PARTS):
        module_name, run_name, format_name, keywords = STOCHASTIC_PARTS[part]
        module = importlib.import_module(f"diffsample.bench.{module_name}")
        run, fmt = getattr(module, run_name), getattr(module, format_name)
        options = {keywords[key]: getattr(args, key) for key in keywords if getattr(args, key) is not None}
        started = time.perf_counter()
        rows = run(**options)
        print(f"## {part} ({time.perf_counter() - started:.0f} s)\n\n{fmt(rows)}\n", flush=True)
        records += [{"part": part, **dataclasses.asdict(r)} for r in rows]
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fields = list(dict.fromkeys(key for record in records for key in record))
        with out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(records)
        print(f"wrote {out}")
    return 0


def _theory_order(name: str) -> int:
    from . import solvers

    return solvers.spec(name).order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffsample",
        description="Training-free sampling from pretrained diffusion models: solvers, schedules, benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("bench", help="benchmark solvers × NFE on exact test beds against exact ODE solutions")
    p.add_argument("--beds", type=_str_list, default=["ring2d", "mixture64", "digits"],
                   help="comma-separated beds (ring2d, mixture64, digits)")
    p.add_argument("--solvers", type=_str_list, default=None,
                   help="comma-separated solver names (default: every deterministic fixed-step solver)")
    p.add_argument("--schedules", type=_str_list, default=None,
                   help="step schedules (names from diffsample.steps.SCHEDULES; default karras, with --model "
                        "karras, logsnr, kl_optimal, time_uniform-trailing)")
    p.add_argument("--nfe", type=_int_list, default=None,
                   help="NFE budgets (default 3,4,5,6,8,10,15,20,50; with --model 4,5,6,8,10,15,20)")
    p.add_argument("--model", choices=["digits"], default=None,
                   help="benchmark the shipped digits network instead of the exact beds: FD, class accuracy and "
                        "RMSE vs a 1000-step reference (writes digits-model.csv/.md under --out)")
    p.add_argument("--samples", type=int, default=500, help="with --model: samples per method")
    p.add_argument("--no-tune", action="store_true", help="with --model: leave out the tuned plans")
    p.add_argument("--sigma-min", type=float, default=0.002)
    p.add_argument("--sigma-max", type=float, default=80.0)
    p.add_argument("--batch", type=int, default=64, help="samples per bed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers", action="store_true",
                   help="also run diffusers and k-diffusion (optional extra) and print generate vs the best peer")
    p.add_argument("--convergence", action="store_true",
                   help="also measure convergence orders (slope of log RMSE vs log NFE)")
    p.add_argument("--out", default="bench-out", help="folder for bench.csv and bench.png")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("overhead", help="time outside the model per evaluation, next to diffusers and k-diffusion")
    p.add_argument("--solvers", type=_str_list, default=None, help="solvers (default: those with a peer)")
    p.add_argument("--shape", default="64x3x32x32", help="batch shape, e.g. 64x3x32x32")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-peers", action="store_true", help="time diffsample alone")
    p.set_defaults(func=_cmd_overhead)

    p = sub.add_parser("robustness", help="every fixed-step solver × step schedule × 1–1000 steps × float32/float16/"
                       "bfloat16 networks on exact beds: NaN/Inf, NFE and exceptions (exit code 1 on any failure)")
    p.add_argument("--steps", type=_int_list, default=None,
                   help="step counts (default 1–20, 25, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000)")
    p.add_argument("--quick", action="store_true", help="step counts 1, 2, 3, 5, 10, 100 only")
    p.add_argument("--beds", type=_str_list, default=None, help="ring2d and/or mixture64 (default both)")
    p.add_argument("--solvers", type=_str_list, default=None, help="solvers (default: every non-adaptive one)")
    p.add_argument("--schedules", type=_str_list, default=None,
                   help="karras, logsnr, kl_optimal, polyexponential, time_uniform, align_your_steps (default all)")
    p.add_argument("--batch", type=int, default=4, help="samples per dtype")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_cmd_robustness)

    p = sub.add_parser("tune", help="tune a plan (noise levels + per-step solver choices) on an exact bed")
    p.add_argument("--bed", required=True, help="ring2d, mixture64 or digits")
    p.add_argument("--nfe", type=int, required=True, help="NFE budget")
    p.add_argument("--out", default="plan.json", help="where to write the plan (JSON)")
    _add_tuning_arguments(p)
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("bench-tune", help="tuned plans vs the best hand-made solver/schedule on held-out noise")
    p.add_argument("--beds", type=_str_list, default=["ring2d", "mixture64", "digits"])
    p.add_argument("--nfe", type=_int_list, default=[4, 5, 6, 8, 10], help="NFE budgets")
    _add_tuning_arguments(p)
    p.add_argument("--no-peers", action="store_true",
                   help="leave out diffusers / k-diffusion configurations on the same span (included when installed)")
    p.add_argument("--out", default=None, help="also write the rows (with the plans) as JSON here")
    p.add_argument("--plans", default="bench-out/tuned-plans",
                   help="folder where each tuned plan is saved when found; a rerun with the same settings loads "
                        "them instead of tuning again (resume). '' to keep none")
    p.set_defaults(func=_cmd_bench_tune)

    p = sub.add_parser("bench-stochastic", help="stochastic samplers and sampling-time corrections on exact and "
                       "imperfect beds (parts: imperfect, convergence, exposure, v3, dc, cpr, momentum)")
    p.add_argument("--part", action="append", choices=list(STOCHASTIC_PARTS), default=None,
                   help="which part (repeatable; default all but cpr): imperfect = restart/SDE vs ODE at equal NFE "
                        "on misfit and exposure-biased beds; convergence = SDE distribution error vs NFE on exact "
                        "beds; exposure = time-shift and epsilon scaling; v3 = DPM-Solver-v3 with model statistics "
                        "vs DPM-Solver++; dc = DC-Solver vs UniPC; cpr = DC ratios predicted across NFE; momentum = "
                        "heavy-ball / GHVB under strong guidance. Each takes minutes (v3 and imperfect the longest)")
    p.add_argument("--beds", type=_str_list, default=None,
                   help="beds (imperfect: ring2d, mixture64 or e.g. ring2d-misfit; convergence: ring2d, mixture64)")
    p.add_argument("--nfe", type=_int_list, default=None, help="NFE budgets (default: imperfect 10,20; "
                   "convergence 8,12,16,24,32,48,64)")
    p.add_argument("--samples", type=int, default=None, help="samples per bed (default 10000)")
    p.add_argument("--out", default=None, help="also write every row as CSV here (a 'part' column first)")
    p.set_defaults(func=_cmd_bench_stochastic)

    from .sample_cli import add_sample_parser

    add_sample_parser(sub)

    p = sub.add_parser("solvers", help="list the registered solvers")
    p.set_defaults(func=_cmd_solvers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError) as err:
        print(f"diffsample: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
