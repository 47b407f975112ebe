"""The shipped masked diffusion language model: characters of the standard library's docstrings and comments.

* :func:`load_text_model` — the model as a time-free masked denoiser (the contract of
  :class:`~diffsample.discrete.contracts.MaskedDenoiser`): ``D(z, t) -> (B, L, 58)`` float64 probabilities,
  ``t`` ignored, NFE counted; the corpus and vocabulary are :mod:`diffsample.discrete.corpus`.
* :func:`load_text_network` — the bare :class:`~.network.TextConvNet` (float32 logits).
* :data:`TEXT_MODEL_INFO` — architecture, training record and held-out bound (``text_mdlm.json``).

``weights/MODEL_CARD_TEXT.md`` documents data, architecture, training and the reference numbers;
``scripts/train_text.py`` trains it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ...discrete.denoiser import CountingMaskedDenoiser
from .._io import load_safetensors
from .network import ConvConfig, TextConvNet

__all__ = [
    "TEXT_MODEL_INFO_FILE",
    "TEXT_MODEL_WEIGHTS",
    "TextDenoiser",
    "ConvConfig",
    "TextConvNet",
    "load_text_model",
    "load_text_network",
    "text_model_info",
]

_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
TEXT_MODEL_WEIGHTS = _WEIGHTS_DIR / "text_mdlm.safetensors"
"""The shipped weights (float32 safetensors)."""
TEXT_MODEL_INFO_FILE = "text_mdlm.json"
"""The name of the JSON next to the weights: architecture, training record, held-out bound."""


@lru_cache(maxsize=1)
def text_model_info() -> dict[str, Any]:
    """The shipped ``text_mdlm.json`` (architecture, training record, evaluation)."""
    return json.loads((_WEIGHTS_DIR / TEXT_MODEL_INFO_FILE).read_text())


def load_text_network(path: str | Path | None = None) -> TextConvNet:
    """The shipped :class:`TextConvNet` in eval mode, gradients off."""
    net = TextConvNet(ConvConfig(**text_model_info()["architecture"]))
    net.load_state_dict(load_safetensors(path or TEXT_MODEL_WEIGHTS))
    return net.eval().requires_grad_(False)


class TextDenoiser(CountingMaskedDenoiser):
    """A :class:`TextConvNet` as a time-free masked denoiser (logits in float32, probabilities in float64).

    Sequences may be shorter than the model's 64 characters (the convolutions see zero padding earlier), not longer.
    """

    output = "logits"

    def __init__(self, net: TextConvNet) -> None:
        super().__init__(net.config.vocab_size, time_free=True)
        self.net = net
        self.length = net.config.length

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(z.to(torch.int64))


def load_text_model(path: str | Path | None = None) -> TextDenoiser:
    """The shipped model as a time-free masked denoiser over the 58 symbols of :mod:`diffsample.discrete.corpus`."""
    return TextDenoiser(load_text_network(path))
