"""``diffsample sample``: draw samples from the shipped digits model (or a diffusers model on disk).

Writes a PNG grid and the raw arrays (.npz), shows progress, and prints what it did: solver, step
schedule, NFE actually spent (counted from model calls; a guided call costs 2) and wall time.

``--auto`` chooses the walk for the model at hand instead of the family's default, and fits its solver's weights
where that helps (:func:`diffsample.auto.auto_choice`: a one-off calibration run, cached on disk; its cost is printed
apart from the budget).

Everything that can be checked is checked before the model runs: the arguments (``--guidance`` needs
``--class``, ``--auto`` leaves the walk to itself, counts are positive; ``--step-schedule`` alone keeps the default
solver on that schedule), a ``--plan``
against the model's span and ``--nfe`` (when given), and the output files (their folder writable, not symbolic
links, not already there unless ``--overwrite``). Both files are written atomically (:mod:`diffsample.files`).
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

from .cli import STEP_SCHEDULE_HELP, positive_int, shape
from .denoisers import CallCounter
from .errors import DiffsampleError
from .files import atomic_write_bytes, check_writable
from .models.loading import SHIPPED_MODEL, load_model
from .progress import ProgressBar
from .transforms import Transform

__all__ = ["SHIPPED_MODEL", "add_sample_parser", "load_model"]


class _Progress:
    """Per-step progress of a walk (:class:`~diffsample.progress.ProgressBar`), driven by the solver callback."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.bar = total, 0, ProgressBar(enabled)

    def __call__(self, info: dict[str, Any]) -> None:
        self.done = min(self.done + 1, self.total)
        self.bar.draw(self.done, self.total, f"step {self.done}/{self.total} σ={info['sigma']:.4g}")

    def close(self) -> None:
        self.bar.close()


DEFAULT_NFE = 10
"""The budget of ``diffsample sample`` without ``--nfe`` (and without ``--plan``)."""


def _labels(args: argparse.Namespace) -> torch.Tensor | None:
    if args.class_label is None:
        return None
    if args.class_label == "all":
        return torch.arange(args.batch) % 10
    if args.class_label not in {str(d) for d in range(10)}:
        raise DiffsampleError(f"--class must be a digit 0-9 or 'all', got {args.class_label!r}")
    return torch.full((args.batch,), int(args.class_label), dtype=torch.long)


def _check_arguments(args: argparse.Namespace) -> None:
    """Combinations that would otherwise be silently ignored."""
    if args.guidance is not None and args.class_label is None:
        raise DiffsampleError("--guidance needs --class (guidance steers towards a class)")
    if args.auto and (args.plan or args.solver or args.step_schedule):
        raise DiffsampleError(
            "--auto chooses the solver and steps itself: leave out --plan, --solver and --step-schedule"
        )


class _ClassLabels(Transform):
    """The (guided) digits model called with ``--class``'s labels made for each call's batch: ``'all'`` cycles
    0 … 9, a digit repeats. The sampled batch gets the labels :func:`_labels` gives it, and automatic mode can
    calibrate on batches of other sizes."""

    def __init__(self, inner: Any, digit: int | None) -> None:  # noqa: ANN401 - any (guided) denoiser
        super().__init__(inner)
        self.digit = digit

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        n = x.shape[0]
        labels = torch.arange(n) % 10 if self.digit is None else torch.full((n,), self.digit, dtype=torch.long)
        return self.inner(x, sigma, class_labels=labels.to(x.device), **kwargs)


def _output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """``(samples.npz, samples.png)`` in ``--out``, checked writable before any sampling."""
    out_dir = Path(args.out)
    paths = out_dir / "samples.npz", out_dir / "samples.png"
    for path in paths:
        check_writable(path, overwrite=args.overwrite)
    return paths


def _run_sample(args: argparse.Namespace) -> int:
    from . import guidance, noise
    from .auto import auto_choice
    from .generate import configure
    from .images import image_grid, write_png
    from .sampling import sample

    _check_arguments(args)
    labels = _labels(args)
    npz_path, png_path = _output_paths(args)
    model, null_label = load_model(args.model, conditional=args.class_label is not None)
    denoiser = model
    if labels is not None:
        uncond = {"class_labels": null_label} if null_label is not None else {}
        scale = 1.0 if args.guidance is None else args.guidance
        digit = None if args.class_label == "all" else int(args.class_label)
        denoiser = _ClassLabels(guidance.cfg(model, scale, uncond_kwargs=uncond, batched=True), digit)
    sigma_min, sigma_max = float(model.noise_schedule.sigma_min), float(model.noise_schedule.sigma_max)
    calls_per_eval = getattr(denoiser, "nfe_per_call", 1)
    solver_name, step_schedule_name, choice = args.solver, args.step_schedule, None
    nfe = DEFAULT_NFE if args.nfe is None else args.nfe
    if args.auto:
        choice = auto_choice(denoiser, nfe, args.shape, sigma_min=sigma_min, sigma_max=sigma_max)
        solver_name, step_schedule_name = choice.solver, choice.step_schedule
        spent = "read from the cache" if choice.cached else f"{choice.cost_nfe} evaluations per calibration sample"
        print(f"auto: {choice.label} for NFE {nfe} ({choice.calibration_size} calibration noises, {spent})")
    if args.plan:  # the plan's own levels, checked against the model's span (and --nfe when given)
        walk = configure(args.nfe, sigma_min, sigma_max, calls_per_eval=calls_per_eval, plan=args.plan)
    else:
        walk = configure(
            nfe,
            sigma_min,
            sigma_max,
            calls_per_eval=calls_per_eval,
            solver=solver_name,
            step_schedule=step_schedule_name,
            model=model,
        )
    sigmas, solver, step_schedule, options = walk.sigmas, walk.solver, walk.step_schedule, walk.options
    if choice is not None:  # automatic mode's moved levels and fitted weights, where it has them
        sigmas, solver, options = choice.walk_on(sigmas, solver, options)
    batch_shape = (args.batch, *args.shape)
    source = noise.seeded(args.seed)
    x = source.initial(batch_shape, float(sigmas[0]))
    progress = _Progress(len(sigmas) - 1, not args.quiet)
    walker = CallCounter(denoiser)  # this walk's own evaluations, not automatic mode's calibration
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = sample(walker, x, sigmas, solver=solver, noise=source, callback=progress, **options)
    seconds = time.perf_counter() - t0
    progress.close()
    arrays = {"samples": out.numpy(), "sigmas": sigmas.numpy(), "seed": np.array(args.seed)}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    atomic_write_bytes(npz_path, lambda handle: np.savez(handle, **arrays))
    png = write_png(png_path, image_grid(((out.clamp(-1, 1) + 1) / 2).numpy()))
    print(
        f"solver {solver}, schedule {step_schedule}, {len(sigmas) - 1} steps, NFE {walker.nfe} "
        f"({walker.calls} network calls), {args.batch} samples in {seconds:.2f}s; "
        f"wrote {png} and {npz_path}"
    )
    return 0


class _DeprecatedOption(argparse.Action):
    """A hidden old spelling of an option: stores under the new option's ``dest`` and says so on stderr."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        print(f"{parser.prog}: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_sample_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``sample`` subcommand to an argparse subparsers object."""
    p = sub.add_parser("sample", help="sample from the shipped digits model (or --model DIR); writes PNG + npz")
    p.add_argument(
        "--model",
        default=None,
        help=f"'{SHIPPED_MODEL}' (the shipped network, default) or a diffusers model or pipeline directory",
    )
    p.add_argument("--solver", default=None, help="solver name (default: generate's choice for --nfe)")
    p.add_argument(
        "--nfe",
        type=positive_int,
        default=None,
        help=f"budget in model evaluations (a guided call costs 2; default {DEFAULT_NFE}, or the plan's)",
    )
    p.add_argument("--step-schedule", default=None, help=STEP_SCHEDULE_HELP)
    p.add_argument(
        "--schedule", dest="step_schedule", action=_DeprecatedOption, new="--step-schedule", help=argparse.SUPPRESS
    )
    p.add_argument(
        "--auto",
        action="store_true",
        help="choose the solver and steps for this model (and fit the solver's weights) by a one-off calibration run, "
        "cached on disk",
    )
    p.add_argument(
        "--plan",
        default=None,
        help="a tuned plan (JSON from `diffsample tune`) for this model's span; its cost must fit --nfe",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="noise seed (sample i has its own stream: the same in any --batch)"
    )
    p.add_argument("--batch", type=positive_int, default=64, help="number of samples (default 64)")
    p.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance scale (with --class; default 1.0)"
    )
    p.add_argument("--class", dest="class_label", default=None, help="digit 0-9, or 'all' (cycles 0..9)")
    p.add_argument("--shape", type=shape, default=(1, 8, 8), help="per-sample shape for --model (default 1x8x8)")
    p.add_argument("--out", default="samples-out", help="folder for samples.png and samples.npz")
    p.add_argument("--overwrite", action="store_true", help="replace samples.npz and samples.png if already there")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_sample)
