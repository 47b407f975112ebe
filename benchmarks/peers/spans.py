"""The σ spans the peers run on (the DDPM table ``"vp1000"`` and EDM's ``"edm"``) and the peers' install hint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffsample.errors import UnknownNameError

__all__ = ["EDM_CONFIG", "INSTALL_HINT", "SPANS", "Span", "VP1000_CONFIG", "get_span", "vp1000_sigma_table"]

INSTALL_HINT = (
    "pip install --no-deps -r requirements-peers.txt (diffsample repository root: diffusers 0.42.1, "
    "k-diffusion 0.1.1.post1, torchsde, trampoline, torchdiffeq and diffusers' light dependencies, pinned; "
    "--no-deps so that no other torch, torchvision, CLIP or wandb is pulled)"
)

# --------------------------------------------------------------------------------------------- spans

VP1000_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "thresholding": False,
}
"""The DDPM training table every VP diffusers scheduler is built on (overrides come on top).

``clip_sample`` is off: DDIM/DDPM clip x̂0 to [−1, 1] by default, which changes the ODE being solved
(the exact references know nothing of clipping). Keys a scheduler does not take are dropped."""

EDM_CONFIG: dict[str, Any] = {"sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5, "prediction_type": "epsilon"}
"""EDM's noise range and data scale for diffusers' EDM schedulers."""


def vp1000_sigma_table() -> torch.Tensor:
    """σ(t) = sqrt((1 − ᾱ_t)/ᾱ_t), t = 0…999, of the DDPM linear-β table, in float64."""
    betas = torch.linspace(VP1000_CONFIG["beta_start"], VP1000_CONFIG["beta_end"], 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    return ((1 - abar) / abar).sqrt()


@dataclass(frozen=True)
class Span:
    """A model's noise range in σ-space: ``sigma_min`` (its last trained level) to ``sigma_max``."""

    name: str
    sigma_min: float
    sigma_max: float


def _make_spans() -> dict[str, Span]:
    table = vp1000_sigma_table()
    return {
        "vp1000": Span("vp1000", float(table[0]), float(table[-1])),
        "edm": Span("edm", EDM_CONFIG["sigma_min"], EDM_CONFIG["sigma_max"]),
    }


SPANS: dict[str, Span] = _make_spans()


def get_span(name: str) -> Span:
    """The span called ``name`` (:data:`SPANS`)."""
    try:
        return SPANS[name]
    except KeyError:
        raise UnknownNameError("span", name, list(SPANS)) from None
