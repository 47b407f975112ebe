"""A small CNN classifier of the 8×8 digits: class accuracy of samples and features for a Fréchet distance.

Architecture: conv3×3(1→32) · SiLU · conv3×3(32→64) · SiLU · maxpool 2 → 4×4 · conv3×3(64→64) · SiLU ·
flatten (1024) · linear(1024→64) · SiLU [the 64 features] · linear(64→10). Trained by
``scripts/train_classifier.py`` on :func:`~diffsample.models.data.classifier_split`'s training part.

Inputs are images in [−1, 1] of shape ``(B, 1, 8, 8)``; generated samples are clamped to [−1, 1]
first (the usual image post-processing), so a sample's few out-of-range pixels do not leave the
range the classifier was trained on.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ShapeError
from ._io import load_safetensors

__all__ = ["CLASSIFIER_INFO", "DigitsClassifier", "class_accuracy", "classifier_features", "load_classifier"]

WEIGHTS = Path(__file__).parent / "weights"
FEATURE_DIM = 64


class DigitsClassifier(nn.Module):
    """CNN on ``(B, 1, 8, 8)`` digits in [−1, 1]; :meth:`features` gives the 64-d penultimate layer."""

    def __init__(self, features: int = FEATURE_DIM, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 16, features)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations ``(B, 64)``."""
        h = F.silu(self.conv2(F.silu(self.conv1(x))))
        h = F.silu(self.conv3(F.max_pool2d(h, 2)))
        return F.silu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, 10)``."""
        return self.head(self.dropout(self.features(x)))


def _read_info() -> dict[str, Any]:
    path = WEIGHTS / "digits_classifier.json"
    return json.loads(path.read_text()) if path.exists() else {}


CLASSIFIER_INFO: dict[str, Any] = _read_info()
"""The classifier's training record (split, accuracy, time), read from ``weights/digits_classifier.json``."""


@lru_cache(maxsize=1)
def _shared() -> DigitsClassifier:
    return load_classifier()


def load_classifier() -> DigitsClassifier:
    """A new :class:`DigitsClassifier` with the shipped weights, in eval mode, gradients off."""
    net = DigitsClassifier()
    net.load_state_dict(load_safetensors(WEIGHTS / "digits_classifier.safetensors"))
    net.eval().requires_grad_(False)
    return net


def _prepare(samples: torch.Tensor) -> torch.Tensor:
    if samples.dim() == 3:
        samples = samples.unsqueeze(1)
    if samples.dim() != 4 or tuple(samples.shape[1:]) != (1, 8, 8):
        raise ShapeError(f"digit samples must have shape (B, 1, 8, 8), got {tuple(samples.shape)}")
    return samples.detach().to("cpu", torch.float32).clamp(-1, 1)


@torch.no_grad()
def classifier_features(samples: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The shipped classifier's 64-d penultimate features of ``samples`` (clamped to [−1, 1]), float64."""
    x = _prepare(samples)
    net = _shared()
    return torch.cat([net.features(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]).double()


@torch.no_grad()
def class_accuracy(samples: torch.Tensor, labels: torch.Tensor | int) -> float:
    """Fraction of ``samples`` the shipped classifier assigns to ``labels`` (a ``(B,)`` tensor or one int)."""
    x = _prepare(samples)
    y = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    if y.numel() == 1:
        y = y.expand(x.shape[0])
    if y.shape[0] != x.shape[0]:
        raise ShapeError(f"labels has {y.shape[0]} entries for {x.shape[0]} samples")
    pred = _shared()(x).argmax(1)
    return float((pred == y).double().mean())
