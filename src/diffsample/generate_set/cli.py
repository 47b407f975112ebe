"""The ``diffsample generate-set`` command: the arguments of :func:`~diffsample.generate_set.generate_set`."""

from __future__ import annotations

import argparse
import os

from ..cli import STEP_SCHEDULE_HELP, positive_int, shape
from ..plan import Plan
from .settings import SHIPPED_MODEL, SetSettings

__all__ = ["add_generate_set_parser"]


def add_generate_set_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``generate-set`` on the ``diffsample`` command's subparsers."""
    p = sub.add_parser(
        "generate-set",
        help="N samples in shards, in parallel (local processes or Ray), resumable from a manifest",
        description="Generate N samples into --out as shard files plus manifest.json; sample i depends only on "
        "(--seed, i), whatever --workers; running the same command again resumes an interrupted set.",
    )
    p.add_argument("--n", type=positive_int, required=True, help="number of samples")
    p.add_argument("--out", required=True, help="folder for the shards and manifest.json")
    p.add_argument("--model", default=SHIPPED_MODEL, help=f"'{SHIPPED_MODEL}' (shipped) or a diffusers model directory")
    p.add_argument("--nfe", type=positive_int, default=None, help="NFE budget (default 10; with --plan: the plan's)")
    p.add_argument("--solver", default=None, help="solver name (default: generate's choice for --nfe)")
    p.add_argument("--step-schedule", default=None, help=STEP_SCHEDULE_HELP)
    p.add_argument("--plan", default=None, help="a tuned plan (JSON) instead of the solver and schedule")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (with --class)")
    p.add_argument("--class", dest="class_label", default=None, help="digit 0-9, or 'all' (sample i: i mod 10)")
    p.add_argument("--shape", type=shape, default=(1, 8, 8), help="per-sample shape for --model (default 1x8x8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=positive_int, default=250, help="samples per model batch")
    p.add_argument("--shard-size", type=positive_int, default=1000, help="samples per shard (a multiple of --batch)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local worker processes (0: this one)")
    p.add_argument("--retries", type=int, default=2, help="further attempts for a failed shard")
    p.add_argument("--ray", action="store_true", help="run the shards as Ray tasks (needs the optional 'ray')")
    p.add_argument("--ray-address", default=None, help="a Ray cluster address (implies --ray)")
    p.add_argument("--no-fd", action="store_true", help="skip the Fréchet distance at the end (digits model)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .job import generate_set

    plan = Plan.load(args.plan).to_dict() if args.plan else None
    nfe = 10 if args.nfe is None and plan is None else args.nfe
    settings = SetSettings(
        n=args.n,
        seed=args.seed,
        model=args.model,
        nfe=nfe,
        solver=args.solver,
        step_schedule=args.step_schedule,
        plan=plan,
        guidance=args.guidance,
        class_label=args.class_label,
        shape=args.shape,
        batch=args.batch,
        shard_size=args.shard_size,
    )
    summary = generate_set(
        settings,
        args.out,
        workers=args.workers,
        retries=args.retries,
        ray=args.ray,
        address=args.ray_address,
        frechet=not args.no_fd,
        progress=not args.quiet,
    )
    print(summary.describe())
    return 0
