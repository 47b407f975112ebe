"""The ``diffsample`` command line: the user's verbs ``sample``, ``sample-text``, ``generate-set``, ``tune`` and
``solvers``.

``diffsample --help`` lists them. The benchmark harness is not part of the installed package: run it from a
checkout of the repository as ``python -m benchmarks SUITE`` (``python -m benchmarks --help`` lists the suites).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "TUNE_CALIBRATION",
    "add_tuning_arguments",
    "count_list",
    "int_list",
    "main",
    "positive_int",
    "progress_printer",
    "shape",
    "str_list",
]


STEP_SCHEDULE_HELP = (
    "step schedule name from diffsample.steps.SCHEDULES, optionally with '+trailing' (no call at sigma_min) "
    "(default: generate's choice)"
)
"""The ``--step-schedule`` help of the sampling commands."""


def positive_int(text: str) -> int:
    """An integer >= 1 (an argparse ``type``: ``--nfe 0`` is an error naming the argument, not silence)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def shape(text: str) -> tuple[int, ...]:
    """``"1x8x8"`` → ``(1, 8, 8)`` (an argparse ``type``; every size a positive integer)."""
    return tuple(positive_int(v) for v in text.split("x"))


def int_list(text: str) -> list[int]:
    """``"4,8,16"`` → ``[4, 8, 16]`` (an argparse ``type``; every value a positive integer, at least one)."""
    values = [positive_int(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def count_list(text: str) -> list[int]:
    """``"0,4,5"`` → ``[0, 4, 5]`` (an argparse ``type``; every value an integer >= 0, at least one: seeds, counts)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return values


def str_list(text: str) -> list[str]:
    """``"euler, heun"`` → ``["euler", "heun"]`` (an argparse ``type``)."""
    return [v.strip() for v in text.split(",") if v.strip()]


def progress_printer(quiet: bool) -> Callable[[str], None] | None:
    """A progress callback printing each line to stderr, or ``None`` when ``quiet``."""
    if quiet:
        return None
    return lambda msg: print(msg, file=sys.stderr, flush=True)


TUNE_CALIBRATION = 256
"""Calibration samples ``diffsample tune`` draws by default (a quarter of them held out); ``python -m benchmarks
defaults`` tunes its figures' plans on as many. Against 64 (issue #13, session 17): on the digits networks at NFE
4–6 the plans' error on fresh noise fell in 37 of 51 cells (geometric mean 0.95×); on the heavy-tailed Stable
Diffusion-table networks it moved both ways."""


def add_tuning_arguments(p: argparse.ArgumentParser) -> None:
    """Span, calibration and held-out batches, shared by ``tune`` and the benchmarks' ``tune`` suite.

    ``--sigma-min`` / ``--sigma-max`` default to ``None``: the model's own span, or EDM's ``[0.002, 80]``
    on a test bed.
    """
    p.add_argument("--sigma-min", type=float, default=None, help="lowest level (default 0.002, or the model's)")
    p.add_argument("--sigma-max", type=float, default=None, help="starting level (default 80, or the model's)")
    p.add_argument("--calibration", type=positive_int, default=TUNE_CALIBRATION, help="calibration samples")
    p.add_argument("--seed", type=int, default=1, help="calibration seed")
    p.add_argument(
        "--heldout",
        type=positive_int,
        default=256,
        help="held-out samples, scored against the exact ODE solution (test beds only)",
    )
    p.add_argument("--heldout-seed", type=int, default=0, help="held-out seed (the benchmark's)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


BED_SPAN = (0.002, 80.0)
"""The span ``[σ_min, σ_max]`` used on the test beds unless given (EDM's)."""


def span_of(args: argparse.Namespace, default: tuple[float, float]) -> tuple[float, float]:
    """``(--sigma-min, --sigma-max)`` with ``default`` for those not given."""
    lo = args.sigma_min if args.sigma_min is not None else default[0]
    hi = args.sigma_max if args.sigma_max is not None else default[1]
    return float(lo), float(hi)


def _cmd_solvers(args: argparse.Namespace) -> int:
    from . import solvers

    for name in solvers.available():
        s = solvers.spec(name)
        kind = "stochastic" if s.stochastic else ("adaptive" if s.adaptive else "ODE")
        print(f"{name:<16} order {s.order}  {s.evals_per_step} eval/step  {kind:<10}  {s.summary}")
    return 0


def _tuning_target(args: argparse.Namespace) -> tuple[Any, str, tuple[int, ...], tuple[float, float]]:
    """``(denoiser, label, per-sample shape, span)`` for ``--bed`` or ``--model``."""
    if args.bed:
        from .testbeds import get_bed

        bed = get_bed(args.bed)
        return bed, args.bed, tuple(bed.shape), span_of(args, BED_SPAN)
    from .models.loading import SHIPPED_MODEL, load_model

    model, _ = load_model(args.model)
    shape = (1, 8, 8) if args.model == SHIPPED_MODEL else args.shape
    sched = model.noise_schedule
    return model, args.model, shape, span_of(args, (float(sched.sigma_min), float(sched.sigma_max)))


def _cmd_tune(args: argparse.Namespace) -> int:
    import torch

    from . import noise
    from .files import check_writable
    from .generate import default_choice, generate
    from .sampling import sample
    from .tuning import tune

    if args.seed == args.heldout_seed:
        raise ValueError("--seed (calibration) and --heldout-seed must differ")
    check_writable(args.out)  # before the tuning, not after it
    denoiser, label, shape, (sigma_min, sigma_max) = _tuning_target(args)
    calibration = noise.seeded(args.seed).initial((args.calibration, *shape), sigma_max, dtype=torch.float64)
    plan = tune(
        denoiser,
        nfe=args.nfe,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        calibration=calibration,
        model_id=label,
        fit_solver_weights=not args.no_fit_weights,
        progress=progress_printer(args.quiet),
    )
    plan.save(args.out)
    prov = plan.provenance
    print(f"tuned plan for {label} at NFE {args.nfe} -> {args.out}")
    print(plan.describe())
    print(
        f"calibration ({args.calibration} samples, seed {args.seed}): RMSE {prov['error']:.4g} vs the teacher; "
        f"tuning {prov['tuning_seconds']:.1f}s, {prov['tuning_nfe']:.0f} NFE (teacher {prov['teacher_nfe']})"
    )
    if prov.get("heldout_size"):
        hand = prov["hand_made_best"]
        print(
            f"selected on {prov['heldout_size']} held-out calibration samples: RMSE {prov['heldout_error']:.4g} "
            f"(best hand-made, {hand['config']}: {hand['heldout_error']:.4g})"
            + ("; fell back to it" if prov["fallback"] else "")
        )
        weights = prov.get("weights", {})
        if weights.get("fitted"):
            print(
                f"fitted solver weights on {weights['base']}: held-out RMSE {weights['heldout_error']:.4g} "
                f"(before {weights['heldout_error_before']:.4g}); the plan runs the nonstationary solver"
            )
    if not args.bed:
        return 0
    from .testbeds import reference_solution

    held = noise.seeded(args.heldout_seed).initial((args.heldout, *shape), sigma_max, dtype=torch.float64)
    reference = reference_solution(denoiser, held, sigma_max, 0.0)

    def rmse(out: torch.Tensor) -> float:
        return float((out.to(torch.float64) - reference).square().mean().sqrt())

    tuned = rmse(sample(denoiser, held, plan=plan))
    choice = default_choice(args.nfe)
    default = rmse(generate(denoiser, held, nfe=args.nfe, sigma_min=sigma_min, sigma_max=sigma_max))
    print(f"\nheld-out ({args.heldout} samples, seed {args.heldout_seed}), RMSE vs the exact ODE solution:")
    print(f"  {'tuned plan':<32} {tuned:.4g}")
    print(
        f"  {'generate: ' + choice.solver + '/' + choice.step_schedule:<32} {default:.4g}  "
        f"(tuned / this = {tuned / default:.2f})"
    )
    print("(every hand-made configuration: python -m benchmarks tune, from a checkout of the repository)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffsample",
        description="Training-free sampling from pretrained diffusion models: sample, tune a plan, list solvers. "
        "Benchmarks: python -m benchmarks SUITE, from a checkout of the repository.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from .models.loading import SHIPPED_MODEL
    from .sample_cli import add_sample_parser

    add_sample_parser(sub)
    from .generate_set.cli import add_generate_set_parser
    from .text_cli import add_sample_text_parser

    add_generate_set_parser(sub)
    add_sample_text_parser(sub)

    p = sub.add_parser("tune", help="tune a plan (noise levels + per-step solver choices) for a model or a test bed")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--model",
        default=None,
        help=f"'{SHIPPED_MODEL}' (the shipped network) or a diffusers model or pipeline directory",
    )
    target.add_argument(
        "--bed",
        default=None,
        help="an exact test bed (ring2d, mixture64, digits): the plan is also scored on held-out "
        "noise against the exact ODE solution",
    )
    p.add_argument("--nfe", type=positive_int, required=True, help="NFE budget")
    p.add_argument(
        "--shape", type=shape, default=(1, 8, 8), help="per-sample shape for a --model directory (default 1x8x8)"
    )
    p.add_argument("--out", default="plan.json", help="where to write the plan (JSON; `diffsample sample --plan`)")
    add_tuning_arguments(p)
    p.add_argument(
        "--no-fit-weights",
        action="store_true",
        help="keep the searched per-step solver choices: no fitted solver weights (the nonstationary solver)",
    )
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("solvers", help="list the registered solvers")
    p.set_defaults(func=_cmd_solvers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError, OSError) as err:
        print(f"diffsample: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
