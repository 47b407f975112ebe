"""A noise-aware minority classifier for the shipped digits model: ``p(l | x_σ, σ)`` over minority-score levels.

Um et al. 2024 ("Don't Play Favorites: Minority Guidance for Diffusion Models", ICLR) guide a diffusion model
towards unusual samples with a classifier of *minority levels*: the minority score of each training digit
(:func:`~diffsample.transforms.minority_score`: the Tweedie reconstruction error of the shipped unconditional
model at a fixed level σ̄) is cut into ``L`` levels of equal counts (level ``L − 1`` the most unusual), and a
classifier of the noised digits ``x = x0 + σ ε`` learns the level at every σ. Guidance with it is
:func:`~diffsample.transforms.minority_guidance`.

Network (:class:`MinorityClassifier`): the input ``c_in(σ) x`` (EDM's scaling, unit variance at every σ) goes
through a linear layer and :class:`~diffsample.models.network.FiLMBlock` residual blocks conditioned on the
sinusoidal embedding of ``c_noise = ¼ ln σ`` (the digits network's own noise conditioning), then a linear head
to ``L`` logits. Trained by ``scripts/train_minority_classifier.py``; the weights and the level thresholds live in
``weights/digits_minority.{safetensors,json}``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DiffsampleError, ShapeError
from ..schedules import edm_preconditioning
from ._io import load_safetensors
from .network import FiLMBlock, sinusoidal_embedding

__all__ = ["MINORITY_INFO", "MinorityClassifier", "load_minority_classifier", "minority_config"]

WEIGHTS = Path(__file__).parent / "weights"
_NAME = "digits_minority"


class MinorityClassifier(nn.Module):
    """``forward(x, sigma) -> (B, L)``: level logits of σ-space digits ``x = x0 + σ ε`` (σ a scalar or ``(B,)``)."""

    def __init__(
        self,
        levels: int = 4,
        width: int = 192,
        blocks: int = 3,
        *,
        pixels: int = 64,
        emb_dim: int = 64,
        sigma_data: float = 0.5,
        time_scale: float = 250.0,
    ) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = {
            "levels": levels,
            "width": width,
            "blocks": blocks,
            "pixels": pixels,
            "emb_dim": emb_dim,
            "sigma_data": sigma_data,
            "time_scale": time_scale,
        }
        self.sigma_data, self.time_scale, self.emb_dim = float(sigma_data), float(time_scale), int(emb_dim)
        self.pixels = int(pixels)
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Linear(pixels, width)
        self.blocks = nn.ModuleList([FiLMBlock(width, emb_dim, 0.0) for _ in range(blocks)])
        self.head = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, levels))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        batch = x.shape[0]
        if x[0].numel() != self.pixels:
            raise ShapeError(f"expected samples of {self.pixels} pixels, got shape {tuple(x.shape)}")
        s = torch.as_tensor(sigma, dtype=torch.float64).detach().to("cpu").reshape(-1).expand(batch)
        if bool((s <= 0).any()):
            raise DiffsampleError("the minority classifier needs sigma > 0")
        _, _, c_in, c_noise = edm_preconditioning(s, self.sigma_data)
        c_in = c_in.to(x.device, x.dtype)[:, None]
        emb = self.time_mlp(sinusoidal_embedding(c_noise.to(x.device) * self.time_scale, self.emb_dim)).to(x.dtype)
        h = self.inp(c_in * x.reshape(batch, -1))
        for blk in self.blocks:
            h = blk(h, emb)
        return self.head(h)


def minority_config(*, weights_dir: str | Path | None = None) -> dict[str, Any]:
    """The shipped classifier's JSON config: architecture, σ̄, level thresholds, training record."""
    path = Path(weights_dir or WEIGHTS) / f"{_NAME}.json"
    if not path.exists():
        raise DiffsampleError(f"no minority classifier at {path}; run scripts/train_minority_classifier.py")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DiffsampleError(f"{path} is not a JSON config: {err}") from None
    for key in ("architecture", "weights", "score_sigma", "thresholds"):
        if key not in config:
            raise DiffsampleError(f"{path}: missing key {key!r}")
    return config


def _read_info() -> dict[str, Any]:
    path = WEIGHTS / f"{_NAME}.json"
    return json.loads(path.read_text()) if path.exists() else {}


MINORITY_INFO: dict[str, Any] = _read_info()
"""The shipped minority classifier's config (σ̄, thresholds, accuracy), read from ``weights/digits_minority.json``."""


def load_minority_classifier(*, weights_dir: str | Path | None = None) -> MinorityClassifier:
    """The shipped digits minority classifier in eval mode, gradients of its weights off (inputs stay differentiable).

    Use it with :func:`diffsample.transforms.minority_guidance` on the digits model, target level
    ``levels − 1`` for the most unusual digits::

        D = load_digits_model()
        guided = minority_guidance(D, load_minority_classifier(), target_level=3, scale=2.0)
    """
    config = minority_config(weights_dir=weights_dir)
    folder = Path(weights_dir or WEIGHTS)
    net = MinorityClassifier(**config["architecture"])
    state = load_safetensors(folder / Path(config["weights"]).name)
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as err:
        raise DiffsampleError(f"the minority weights do not fit the config's architecture: {err}") from None
    return net.eval().requires_grad_(False)


@lru_cache(maxsize=1)
def shared_minority_classifier() -> MinorityClassifier:
    """One shared instance of the shipped classifier (for benchmarks)."""
    return load_minority_classifier()
