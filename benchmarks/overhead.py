"""Sampler overhead: wall time per model evaluation spent outside the model, against diffusers and k-diffusion.

Times are divided by the number of model evaluations each library made (diffusers' Heun lists 2n−1
timesteps for n steps, ours and k-diffusion's make 2n−1 calls), so every library is charged per call.

The model is a zero-cost stand-in that returns a precomputed tensor, so what is timed is the
solver's own work per step: coefficient arithmetic, tensor updates, validation and guards (ours
includes the NaN check on every model output). Each configuration is timed ``repeats`` times,
interleaved with its peers so machine noise hits all alike, and the minimum is reported.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffsample import steps
from diffsample.denoisers import Denoiser
from diffsample.sampling import sample

from .report import Column, text_table

__all__ = ["OverheadRow", "OVERHEAD_PAIRS", "format_overhead_table", "measure_overhead"]

# our solver → (diffusers scheduler and options, k-diffusion sampler); None where the peer has none
OVERHEAD_PAIRS: dict[str, tuple[tuple[str, dict] | None, str | None]] = {
    "euler": (("EulerDiscreteScheduler", {}), "euler"),
    "heun": (("HeunDiscreteScheduler", {}), "heun"),
    "lms": (("LMSDiscreteScheduler", {}), "lms"),
    "dpmpp_2m": (("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}), "dpmpp_2m"),
    "dpmpp_3m": (("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 3}), None),
    "unipc": (("UniPCMultistepScheduler", {}), None),
    "deis": (("DEISMultistepScheduler", {}), None),
    "dpm_solver_2m": (
        (
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver", "solver_order": 2, "final_sigmas_type": "sigma_min"},
        ),
        None,
    ),
}


@dataclass
class OverheadRow:
    solver: str
    ours_ms: float
    diffusers_ms: float | None
    kdiffusion_ms: float | None

    @property
    def ratio_diffusers(self) -> float | None:
        return self.ours_ms / self.diffusers_ms if self.diffusers_ms else None

    @property
    def ratio_kdiffusion(self) -> float | None:
        return self.ours_ms / self.kdiffusion_ms if self.kdiffusion_ms else None


class _ConstantDenoiser(Denoiser):
    """Returns the same precomputed tensor at every call: the model costs nothing."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.value


def _interleaved_best(runs: dict[str, Callable[[], int]], repeats: int) -> dict[str, float]:
    """Run every configuration once per round for ``repeats`` rounds; min (seconds / step) in ms."""
    best = {name: float("inf") for name in runs}
    for run in runs.values():  # warm-up: first calls allocate and import
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            n = run()
            best[name] = min(best[name], (time.perf_counter() - t0) / n * 1e3)
    return best


def _ours(solver: str, x: torch.Tensor, n_steps: int) -> Callable[[], int]:
    sigmas = steps.karras(n_steps, 0.002, 80.0)
    model = _ConstantDenoiser(torch.zeros_like(x))

    def run() -> int:
        model.reset_counter()
        sample(model, x, sigmas, solver=solver)
        return model.nfe

    return run


def _diffusers(name: str, options: dict, x: torch.Tensor, n_steps: int) -> Callable[[], int]:
    import diffusers

    scheduler = getattr(diffusers, name)(**options)
    output = torch.zeros_like(x)

    def run() -> int:
        scheduler.set_timesteps(n_steps)
        sample_ = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            scheduler.scale_model_input(sample_, t)
            sample_ = scheduler.step(output, t, sample_).prev_sample
        return len(scheduler.timesteps)

    return run


def _kdiffusion(name: str, x: torch.Tensor, n_steps: int) -> Callable[[], int]:
    from .peers import load_k_sampling

    k_sampling = load_k_sampling()
    sigmas = k_sampling.get_sigmas_karras(n_steps, 0.002, 80.0)
    output = torch.zeros_like(x)
    fn = getattr(k_sampling, f"sample_{name}")

    def run() -> int:
        calls = [0]

        def model(x_, s_, **kw):
            calls[0] += 1
            return output

        fn(model, x * 80.0, sigmas, disable=True)
        return calls[0]

    return run


def measure_overhead(
    solvers: list[str] | None = None,
    shape: tuple[int, ...] = (64, 3, 32, 32),
    n_steps: int = 20,
    repeats: int = 5,
    peers: bool = True,
) -> list[OverheadRow]:
    """Overhead per model evaluation in milliseconds for each solver and its peers (None where a peer is missing)."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    rows = []
    for solver in solvers or list(OVERHEAD_PAIRS):
        diffusers_cfg, k_name = OVERHEAD_PAIRS.get(solver, (None, None))
        runs = {"ours": _ours(solver, x, n_steps)}
        if peers and diffusers_cfg is not None:
            with contextlib.suppress(ImportError):
                runs["diffusers"] = _diffusers(diffusers_cfg[0], diffusers_cfg[1], x, n_steps)
        if peers and k_name is not None:
            with contextlib.suppress(ImportError):
                runs["kdiffusion"] = _kdiffusion(k_name, x, n_steps)
        best = _interleaved_best(runs, repeats)
        rows.append(OverheadRow(solver, best["ours"], best.get("diffusers"), best.get("kdiffusion")))
    return rows


def format_overhead_table(rows: list[OverheadRow]) -> str:
    """One line per solver: ms per evaluation for diffsample, diffusers, k-diffusion and the two ratios."""

    columns = [
        Column("solver", "<16"),
        Column("diffsample", ">10.3f"),
        Column("diffusers", ">10.3f"),
        Column("k-diffusion", ">11.3f"),
        Column("÷ diffusers", ">11.2f"),
        Column("÷ k-diff", ">9.2f"),
    ]
    return text_table(
        columns,
        (
            [
                r.solver,
                r.ours_ms,
                *(
                    v if v is not None else "—"
                    for v in (r.diffusers_ms, r.kdiffusion_ms, r.ratio_diffusers, r.ratio_kdiffusion)
                ),
            ]
            for r in rows
        ),
        rule="",
    )
