"""``diffsample sample``: draw samples from the shipped digits model (or a diffusers model on disk).

Writes a PNG grid and the raw arrays (.npz), shows progress, and prints what it did: solver, step
schedule, NFE actually spent (counted from model calls; a guided call costs 2) and wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .parameterization import ModelDenoiser

__all__ = ["SHIPPED_MODEL", "add_sample_parser", "load_model"]


class _Progress:
    """A one-line progress bar on stderr, driven by the solver callback."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self.t0 = total, enabled, 0, time.perf_counter()

    def __call__(self, info: dict[str, Any]) -> None:
        self.done = min(self.done + 1, self.total)
        if self.enabled:
            filled = int(30 * self.done / self.total)
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] step {self.done}/{self.total} "
                  f"σ={info['sigma']:.4g} {time.perf_counter() - self.t0:.1f}s", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr)


SHIPPED_MODEL = "digits"
"""The ``--model`` name of the network shipped in :mod:`diffsample.models` (also the default)."""


def load_model(model: str | None = None, *, conditional: bool = False) -> tuple[ModelDenoiser, int | None]:
    """The denoiser for ``--model`` and its null class label (``None`` when it takes no labels).

    ``None`` or ``"digits"`` is the shipped digits network (class-conditional when ``conditional``);
    anything else is a diffusers model or pipeline directory (:func:`~diffsample.integrations.load_diffusers_denoiser`).
    """
    if model and model != SHIPPED_MODEL:
        from .integrations import load_diffusers_denoiser

        return load_diffusers_denoiser(model), None
    from .models import NULL_LABEL, load_digits_model

    return load_digits_model(conditional=conditional), NULL_LABEL


def _labels(args: argparse.Namespace) -> torch.Tensor | None:
    if args.class_label is None:
        return None
    if args.class_label == "all":
        return torch.arange(args.batch) % 10
    return torch.full((args.batch,), int(args.class_label), dtype=torch.long)


def _run_sample(args: argparse.Namespace) -> int:
    from . import guidance, noise
    from .generate import configure
    from .images import image_grid, write_png
    from .sampling import sample

    model, null_label = load_model(args.model, conditional=args.class_label is not None)
    labels = _labels(args)
    denoiser = model
    if labels is not None:
        uncond = {"class_labels": torch.full_like(labels, null_label)} if null_label is not None else {}
        denoiser = guidance.cfg(model, args.guidance, cond_kwargs={"class_labels": labels}, uncond_kwargs=uncond,
                                batched=True)
    sigma_min, sigma_max = float(model.noise_schedule.sigma_min), float(model.noise_schedule.sigma_max)
    calls_per_eval = getattr(denoiser, "nfe_per_call", 1)
    if args.plan:  # the plan's own levels and budget, as tuned (it replaces --nfe, --solver and --step-schedule)
        walk = configure(calls_per_eval=calls_per_eval, plan=args.plan)
    else:
        walk = configure(args.nfe, sigma_min, sigma_max, calls_per_eval=calls_per_eval, solver=args.solver,
                         step_schedule=args.step_schedule)
    sigmas, solver, step_schedule, options = walk.sigmas, walk.solver, walk.step_schedule, walk.options
    shape = (args.batch, *args.shape)
    source = noise.seeded(args.seed)
    x = source.initial(shape, float(sigmas[0]))
    progress = _Progress(len(sigmas) - 1, not args.quiet)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = sample(denoiser, x, sigmas, solver=solver, noise=source, callback=progress, **options)
    seconds = time.perf_counter() - t0
    progress.close()
    out_dir = Path(args.out)
    arrays = {"samples": out.numpy(), "sigmas": sigmas.numpy(), "seed": np.array(args.seed)}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "samples.npz", **arrays)
    png = write_png(out_dir / "samples.png", image_grid(((out.clamp(-1, 1) + 1) / 2).numpy()))
    print(f"solver {solver}, schedule {step_schedule}, {len(sigmas) - 1} steps, NFE {denoiser.nfe} "
          f"({denoiser.calls} network calls), {args.batch} samples in {seconds:.2f}s; "
          f"wrote {png} and {out_dir / 'samples.npz'}")
    return 0


class _DeprecatedOption(argparse.Action):
    """A hidden old spelling of an option: stores under the new option's ``dest`` and says so on stderr."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_sample_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``sample`` subcommand to an argparse subparsers object."""
    p = sub.add_parser("sample", help="sample from the shipped digits model (or --model DIR); writes PNG + npz")
    p.add_argument("--model", default=None,
                   help=f"'{SHIPPED_MODEL}' (the shipped network, default) or a diffusers model or pipeline directory")
    p.add_argument("--solver", default=None, help="solver name (default: generate's choice for --nfe)")
    p.add_argument("--nfe", type=int, default=10, help="budget in model evaluations (a guided call costs 2)")
    p.add_argument("--step-schedule", default=None, help="step schedule name (default: generate's choice)")
    p.add_argument("--schedule", dest="step_schedule", action=_DeprecatedOption, new="--step-schedule",
                   help=argparse.SUPPRESS)
    p.add_argument("--plan", default=None, help="a tuned plan (JSON from `diffsample tune`); overrides solver/nfe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (with --class)")
    p.add_argument("--class", dest="class_label", default=None, help="digit 0-9, or 'all' (cycles 0..9)")
    p.add_argument("--shape", type=lambda s: tuple(int(v) for v in s.split("x")), default=(1, 8, 8),
                   help="per-sample shape for --model (default 1x8x8)")
    p.add_argument("--out", default="samples-out", help="folder for samples.png and samples.npz")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_sample)
