"""A noise-aware digits classifier ``p_φ(y | x_σ, σ)`` for classifier guidance of the digits models.

Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis", §4) needs the
class probability of a *noisy* sample: the classifier sees ``x_σ = x0 + σ ε`` in the σ-space of the digits
models together with σ. Inputs are preconditioned as in EDM (Karras et al. 2022, Table 1): the image is scaled by
``c_in(σ) = 1 / sqrt(σ² + σ_data²)`` (unit variance at every σ) and a second input channel holds the constant
``c_noise(σ) = log(σ) / 4``.

Architecture: conv3×3(2→32) · SiLU · conv3×3(32→64) · SiLU · maxpool 2 → 4×4 · conv3×3(64→64) · SiLU ·
flatten (1024) · linear(1024→64) · SiLU · linear(64→10). Trained by ``scripts/train_noisy_classifier.py`` on
:func:`~diffsample.models.data.classifier_split`'s training part, noised over the digits models' σ range;
``weights/digits_noisy_classifier.json`` holds the record (held-out accuracy per σ).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import DiffsampleError, ShapeError
from ._io import load_safetensors

__all__ = [
    "NOISY_CLASSIFIER_INFO",
    "NoisyDigitsClassifier",
    "class_log_prob_potential",
    "load_noisy_classifier",
]

WEIGHTS = Path(__file__).parent / "weights"
SIGMA_DATA = 0.75
"""The data scale used for ``c_in`` (the digits models' ``sigma_data``)."""


class NoisyDigitsClassifier(nn.Module):
    """CNN logits ``(B, 10)`` of noisy digits ``x_σ`` (shape ``(B, 1, 8, 8)``, σ-space) at noise levels ``σ``."""

    def __init__(self, width: int = 64, features: int = 64, sigma_data: float = SIGMA_DATA) -> None:
        super().__init__()
        self.sigma_data = float(sigma_data)
        self.conv1 = nn.Conv2d(2, width // 2, 3, padding=1)
        self.conv2 = nn.Conv2d(width // 2, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width * 16, features)
        self.head = nn.Linear(features, 10)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Class logits ``(B, 10)``; ``sigma`` a float or a ``(B,)`` tensor of positive noise levels."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ShapeError(f"noisy digits must have shape (B, 1, 8, 8), got {tuple(x.shape)}")
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if s.numel() == 1:
            s = s.expand(x.shape[0])
        if s.shape != (x.shape[0],) or bool((s <= 0).any()):
            raise DiffsampleError(f"sigma must be positive, a float or shape ({x.shape[0]},), got {tuple(s.shape)}")
        c_in = (s.square() + self.sigma_data**2).rsqrt()[:, None, None, None]
        c_noise = (s.log() / 4)[:, None, None, None].expand_as(x)
        h = torch.cat([x * c_in, c_noise], dim=1)
        h = F.silu(self.conv2(F.silu(self.conv1(h))))
        h = F.silu(self.conv3(F.max_pool2d(h, 2)))
        return self.head(F.silu(self.fc(h.flatten(1))))


def _read_info() -> dict[str, Any]:
    path = WEIGHTS / "digits_noisy_classifier.json"
    return json.loads(path.read_text()) if path.exists() else {}


NOISY_CLASSIFIER_INFO: dict[str, Any] = _read_info()
"""The noise-aware classifier's training record, read from ``weights/digits_noisy_classifier.json``."""


def load_noisy_classifier() -> NoisyDigitsClassifier:
    """A new :class:`NoisyDigitsClassifier` with the shipped weights, in eval mode, parameter gradients off."""
    path = WEIGHTS / "digits_noisy_classifier.safetensors"
    if not path.exists():
        raise DiffsampleError(f"no noise-aware classifier weights at {path}; run scripts/train_noisy_classifier.py")
    net = NoisyDigitsClassifier(**NOISY_CLASSIFIER_INFO.get("architecture", {}))
    net.load_state_dict(load_safetensors(path))
    net.eval().requires_grad_(False)
    return net


@lru_cache(maxsize=1)
def _shared() -> NoisyDigitsClassifier:
    return load_noisy_classifier()


def class_log_prob_potential(
    target: int | torch.Tensor, classifier: NoisyDigitsClassifier | None = None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The log-potential ``f(x, σ) = log p_φ(y | x, σ)`` for the wanted class(es) ``target`` (an int or ``(B,)``).

    Use with :func:`diffsample.transforms.classifier_guidance`; ``classifier`` defaults to the shipped one.
    σ is clamped below at 1e-3 (the classifier's training range starts at 0.01).
    """
    net = classifier if classifier is not None else _shared()
    labels = torch.as_tensor(target, dtype=torch.int64).reshape(-1)
    if bool(((labels < 0) | (labels > 9)).any()):
        raise DiffsampleError(f"digit classes are 0…9, got {labels.tolist()}")

    def log_p(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        y = labels.to(x.device).expand(x.shape[0]) if labels.numel() == 1 else labels.to(x.device)
        if y.shape[0] != x.shape[0]:
            raise ShapeError(f"target has {y.shape[0]} labels for a batch of {x.shape[0]}")
        s = sigma.to(torch.float32).clamp_min(1e-3)
        logits = net(x.to(torch.float32), s)
        return F.log_softmax(logits, dim=1).gather(1, y[:, None])[:, 0].to(x.dtype)

    return log_p
