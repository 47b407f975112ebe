"""Load the shipped 8×8-digits rectified-flow network as a σ-space denoiser.

``digits_flow`` (trained by ``scripts/train_digits_flow.py``) predicts the rectified-flow velocity
``u = ε − x0`` of the path ``x_t = (1 − t) x0 + t ε`` (Liu, Gong & Liu 2023; Lipman et al. 2023) at native time
``t ∈ [0, 1]``. :func:`load_digits_flow_model` wraps it in :class:`~diffsample.parameterization.ModelDenoiser` on
:class:`~diffsample.schedules.RectifiedFlow` with prediction ``"flow"``: ``D(x, σ) = x̂0`` for ``x = x0 + σ ε``,
``σ = t/(1 − t)``. ``shift`` applies SD3's resolution shift (Esser et al. 2024), which moves the sampling times
(every σ-space level times ``shift``), not the network: the same weights then serve a flow model "with shift",
whose span is ``[shift·ε/(1 − ε), shift·(1 − ε)/ε]``.

Example::

    D = load_digits_flow_model()
    x = diffsample.generate(D, D.noise_schedule.sigma_max * torch.randn(16, 1, 8, 8), nfe=8)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import DiffsampleError
from ..parameterization import ModelDenoiser
from ..schedules import RectifiedFlow
from ._io import load_safetensors
from .digits import WEIGHTS, weights_path
from .network import DigitsMLP

__all__ = ["FLOW_NAME", "FLOW_NAMES", "flow_model_config", "load_digits_flow_model"]

FLOW_NAME = "digits_flow"

FLOW_NAMES: tuple[str, ...] = (FLOW_NAME, "digits16_flow")
"""The shipped flow networks: ``digits_flow`` (8×8) and ``digits16_flow`` (the same recipe on 16×16 images,
:func:`~diffsample.models.data.digits16_data`; a second flow unit for the defaults' selection)."""


def flow_model_config(*, weights_dir: str | Path | None = None, name: str = FLOW_NAME) -> dict[str, Any]:
    """The JSON config of the flow network ``name`` (architecture, schedule, parameterisation, training record)."""
    if weights_dir is None and name not in FLOW_NAMES:
        raise DiffsampleError(f"unknown digits flow model {name!r}; shipped: {', '.join(FLOW_NAMES)}")
    path = Path(weights_dir or WEIGHTS) / f"{name}.json"
    if not path.exists():
        raise DiffsampleError(f"no digits flow model config at {path}; run scripts/train_digits_flow.py to create it")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DiffsampleError(f"{path} is not a JSON config: {err}") from None
    for key in ("weights", "architecture", "schedule"):
        if key not in config:
            raise DiffsampleError(f"{path}: missing key {key!r}; the flow config needs weights, architecture, schedule")
    return config


def load_digits_flow_model(
    shift: float = 1.0, *, weights_dir: str | Path | None = None, name: str = FLOW_NAME
) -> ModelDenoiser:
    """The digits rectified-flow network ``name`` (:data:`FLOW_NAMES`) as a σ-space denoiser (``D.noise_schedule``
    a ``RectifiedFlow(shift)``; inputs of the config's ``architecture.image_shape``)."""
    cfg = flow_model_config(weights_dir=weights_dir, name=name)
    net = DigitsMLP(**cfg["architecture"])
    state = load_safetensors(weights_path(Path(weights_dir or WEIGHTS), cfg["weights"]))
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as err:
        raise DiffsampleError(f"the weights {cfg['weights']!r} do not fit the config's architecture: {err}") from None
    net = net.eval().requires_grad_(False)
    schedule = RectifiedFlow(shift=shift, eps=float(cfg["schedule"].get("eps", 1e-3)))
    den = ModelDenoiser(net, schedule, "flow", time_input="native", time_dtype=torch.float64)
    den.name = name if shift == 1.0 else f"{name}_shift{shift:g}"
    return den
