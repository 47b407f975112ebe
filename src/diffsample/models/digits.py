"""Load the shipped 8×8-digits diffusion models as σ-space denoisers.

Three weight sets live in ``weights/`` next to a JSON config each (architecture, schedule,
parameterisation, training record): ``digits_uncond`` (unconditional) and ``digits_cond``
(class-conditional, trained with label dropout so the null label gives the unconditional model for
classifier-free guidance), and ``digits_cond_weak`` (``variant="weak"``: the conditional model's recipe
at a far smaller width and a fraction of the steps, the "bad version" that autoguidance guides away
from; :mod:`diffsample.transforms.autoguidance`). :func:`load_digits_model` rebuilds the network from the
config and wraps it in :class:`~diffsample.parameterization.ModelDenoiser` exactly as it was trained, so
``D(x, sigma, class_labels=y)`` returns x̂0 for ``x = x0 + σ ε`` and counts NFE like any denoiser.

Example (guided, 10 samples of the digit 3)::

    D = load_digits_model(conditional=True)
    sigmas = diffsample.steps.karras(20, D.noise_schedule.sigma_min, D.noise_schedule.sigma_max)
    guided = diffsample.cfg(D, 2.0, cond_kwargs={"class_labels": 3}, uncond_kwargs={"class_labels": NULL_LABEL})
    x = diffsample.sample(guided, sigmas[0] * torch.randn(10, 1, 8, 8), sigmas, solver="heun")
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import DiffsampleError
from ..parameterization import ModelDenoiser
from ..schedules import DiscreteVP, NoiseSchedule
from ._io import load_safetensors
from .network import DigitsMLP, VPEpsNetwork

__all__ = [
    "MODEL_INFO",
    "MODEL_VARIANTS",
    "NULL_LABEL",
    "check_config",
    "load_digits_model",
    "load_digits_network",
    "model_config",
    "model_name",
    "weights_path",
]

WEIGHTS = Path(__file__).parent / "weights"
NULL_LABEL = 10
"""The class label meaning "no class": the unconditional branch of the conditional model."""

_NAMES = {False: "digits_uncond", True: "digits_cond"}

MODEL_VARIANTS: dict[str, dict[bool, str]] = {
    "default": dict(_NAMES),
    "weak": {True: "digits_cond_weak"},
    "sd": {False: "digits_uncond_sd"},
    "sd16": {False: "digits16_uncond_sd"},
    "sd16_small": {False: "digits16_uncond_sd_small"},
    "holdout": {False: "digits_uncond_holdout"},
    "sd_holdout": {True: "digits_cond_sd_holdout"},
}
"""Variant → (conditional → weight-set name). ``"weak"`` exists only as a conditional model (autoguidance);
``"sd"`` only as an unconditional one: the same recipe on Stable Diffusion's β table (``scaled_linear``,
0.00085 → 0.012, 1000 steps; span σ 0.029 … 14.6), a second VP-ε unit for the defaults' selection; ``"sd16"``
the same on 16×16 images (:func:`~diffsample.models.data.digits16_data`: inputs ``(B, 1, 16, 16)``), and
``"sd16_small"`` a smaller such network of another seed (width 256, 3 blocks), a third unit of that table.
``"holdout"`` (DDPM table, unconditional) and ``"sd_holdout"`` (Stable Diffusion's table, conditional) are smaller
networks of another seed that the defaults' selection never sees: the figures' held-out networks."""


def model_name(conditional: bool = False, variant: str = "default") -> str:
    """The weight-set name (file stem in ``weights/``) of the digits model ``(conditional, variant)``."""
    if variant not in MODEL_VARIANTS:
        raise DiffsampleError(f"unknown digits model variant {variant!r}; valid variants: {', '.join(MODEL_VARIANTS)}")
    names = MODEL_VARIANTS[variant]
    if bool(conditional) not in names:
        kind = {True: "conditional", False: "unconditional"}
        have = ", ".join(kind[c] for c in names)
        raise DiffsampleError(f"the digits variant {variant!r} has no {kind[bool(conditional)]} model; it has: {have}")
    return names[bool(conditional)]


def model_config(
    conditional: bool = False, *, weights_dir: str | Path | None = None, variant: str = "default"
) -> dict[str, Any]:
    """The JSON config shipped with a weight set (architecture, schedule, parameterisation, training record).

    ``weights_dir`` reads a config written elsewhere by ``scripts/train_digits.py --out`` (default: shipped);
    ``variant`` picks the weight set (:data:`MODEL_VARIANTS`).
    The config is checked (:func:`check_config`): a damaged or foreign file is a
    :class:`~diffsample.errors.DiffsampleError` naming the file and the key.
    """
    path = Path(weights_dir or WEIGHTS) / f"{model_name(conditional, variant)}.json"
    if not path.exists():
        raise DiffsampleError(f"no digits model config at {path}; run scripts/train_digits.py to create it")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DiffsampleError(f"{path} is not a JSON config: {err}") from None
    return check_config(config, path)


REQUIRED_KEYS = ("weights", "architecture", "schedule", "parameterization")
"""The keys a digits config must have (others, such as the training record, are kept as information)."""


def check_config(config: object, path: Path) -> dict[str, Any]:
    """``config`` (read from ``path``) after checking its keys: the required ones present, the architecture's
    exactly :class:`~diffsample.models.network.DigitsMLP`'s options, ``parameterization.sigma_data`` a number."""
    if not isinstance(config, dict):
        raise DiffsampleError(f"{path}: a digits config is a JSON object, got {type(config).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise DiffsampleError(f"{path}: missing key {missing[0]!r}; a digits config needs {', '.join(REQUIRED_KEYS)}")
    arch = config["architecture"]
    valid = [name for name in inspect.signature(DigitsMLP).parameters if name != "self"]
    if not isinstance(arch, dict) or set(arch) - set(valid):
        wrong = sorted(set(arch) - set(valid)) if isinstance(arch, dict) else [type(arch).__name__]
        raise DiffsampleError(f"{path}: unknown architecture key {wrong[0]!r}; valid keys: {', '.join(valid)}")
    param = config["parameterization"]
    if not isinstance(param, dict) or not isinstance(param.get("sigma_data"), int | float):
        raise DiffsampleError(f"{path}: 'parameterization' must be an object with a number 'sigma_data'")
    if not isinstance(config["weights"], str) or not isinstance(config["schedule"], dict):
        raise DiffsampleError(f"{path}: 'weights' must be a file name and 'schedule' a schedule config object")
    return config


def weights_path(folder: Path, name: str) -> Path:
    """``folder / name`` resolved, refused when it leaves ``folder`` (``../``, an absolute path, a symbolic link
    pointing elsewhere): a config names a file beside it, never one anywhere on the disk."""
    root = folder.resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise DiffsampleError(f"the weights path {name!r} leaves the model folder {root}")
    return target


def _read_all() -> dict[str, dict[str, Any]]:
    info: dict[str, dict[str, Any]] = {}
    for cond, name in _NAMES.items():
        path = WEIGHTS / f"{name}.json"
        if path.exists():
            info["conditional" if cond else "unconditional"] = json.loads(path.read_text())
    return info


MODEL_INFO: dict[str, dict[str, Any]] = _read_all()
"""The shipped configs, keyed ``"unconditional"`` and ``"conditional"`` (see :func:`model_config`)."""


def load_digits_network(
    conditional: bool = False, *, weights_dir: str | Path | None = None, variant: str = "default"
) -> VPEpsNetwork:
    """The network ``eps = net(x_t, t, class_labels=None)`` on its DDPM table, EMA weights, eval mode."""
    cfg = model_config(conditional, weights_dir=weights_dir, variant=variant)
    core = DigitsMLP(**cfg["architecture"])
    state = load_safetensors(weights_path(Path(weights_dir or WEIGHTS), cfg["weights"]))
    try:
        core.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as err:
        raise DiffsampleError(f"the weights {cfg['weights']!r} do not fit the config's architecture: {err}") from None
    try:
        schedule = NoiseSchedule.from_config(cfg["schedule"])
    except TypeError as err:
        raise DiffsampleError(f"the config's schedule {cfg['schedule']!r} is not valid: {err}") from None
    if not isinstance(schedule, DiscreteVP):
        raise DiffsampleError(f"the digits network is served on a discrete VP table, got {schedule!r}")
    net = VPEpsNetwork(core, schedule, cfg["parameterization"]["sigma_data"])
    return net.eval().requires_grad_(False)


def load_digits_model(
    conditional: bool = False, *, weights_dir: str | Path | None = None, variant: str = "default"
) -> ModelDenoiser:
    """The shipped digits model as a σ-space denoiser ``D(x, sigma, class_labels=None) -> x̂0``.

    Args:
        conditional: the class-conditional weights (labels 0…9, :data:`NULL_LABEL` = 10 or ``None``
            for the unconditional branch) instead of the unconditional ones (labels must be ``None``).
        weights_dir: load weights written elsewhere by ``scripts/train_digits.py --out``.
        variant: ``"default"`` (the shipped models), ``"weak"`` (conditional only: a deliberately
            smaller, shorter-trained copy for autoguidance, :func:`diffsample.transforms.autoguidance`), ``"sd"``
            and ``"sd16"`` (unconditional only: on Stable Diffusion's β table, at 8×8 and at 16×16,
            :data:`MODEL_VARIANTS`).

    The network is an ε-predictor on diffusers' default DDPM table (``D.noise_schedule``: linear β, 1000
    steps), called at fractional timesteps ``t(σ)`` given in float64; ``D.network`` is the
    :class:`~diffsample.models.network.VPEpsNetwork`. ``D.noise_schedule.sigma_min``/``sigma_max``
    (0.01, 157.4) are the sampling span. Inputs are ``(B, 1, 8, 8)`` in σ-space; clean digits lie in [−1, 1].
    """
    net = load_digits_network(conditional, weights_dir=weights_dir, variant=variant)
    return ModelDenoiser(net, net.noise_schedule, "eps", time_input="native", time_dtype=torch.float64)
