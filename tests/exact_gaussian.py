"""One diagonal Gaussian N(μ, diag(s²)): its exact denoiser and its exact probability-flow map (shared by tests)."""

from __future__ import annotations

import torch

from diffsample.denoisers import Denoiser, FunctionDenoiser

F64 = torch.float64
MU = torch.tensor([0.5, -1.0, 0.2], dtype=F64)
VAR = torch.tensor([0.3, 0.6, 1.0], dtype=F64) ** 2


def gaussian() -> Denoiser:
    """Posterior mean of N(μ, diag(s²)): ``μ + s²/(s² + σ²) (x − μ)``."""
    return FunctionDenoiser(lambda x, s: MU + VAR / (VAR + s[:, None].to(F64) ** 2) * (x - MU))


def gaussian_flow(x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """The PF-ODE of one Gaussian is linear: ``x(σ') = μ + sqrt((s² + σ'²)/(s² + σ²)) (x(σ) − μ)``."""
    return MU + ((VAR + sigma_next**2) / (VAR + sigma**2)).sqrt() * (x - MU)
