"""Load a diffusers model from a local directory (or take a pipeline object) as a σ-space denoiser.

A diffusers checkpoint is a network plus a scheduler config; the config says everything the σ-space
wrapper needs (:class:`~diffsample.parameterization.ModelDenoiser`):

================================== ============================================ ==============================
scheduler config                   noise schedule                               network sees
================================== ============================================ ==============================
DDPM-table schedulers (DDPM, DDIM, :class:`~diffsample.schedules.DiscreteVP` from ``(α·x, t)``, t in ``[0, N−1]``;
Euler, DPMSolver*, UniPC, …)       ``beta_schedule``/``betas``/``trained_betas``, output per ``prediction_type``
                                   ``num_train_timesteps``,                     (epsilon, v_prediction,
                                   ``rescale_betas_zero_snr``                   sample)
``FlowMatch*`` (SD3-style)         :class:`~diffsample.schedules.RectifiedFlow` ``((1−t)·x, 1000·t)``, flow
                                   (``shift``)                                  velocity ``ε − x0``
``EDM*``                           :class:`~diffsample.schedules.EDM`           EDM preconditioning
                                   (``sigma_min/max``, ``sigma_data``)          (``c_in·x``, ``¼ log σ``)
================================== ============================================ ==============================

The network is called as ``model(x_t, timestep=t, **kwargs)`` (UNet2DModel, UNet2DConditionModel and
the SD3-style transformers all take that form), so conditioning (``class_labels=…``,
``encoder_hidden_states=…``) passes through the denoiser's keyword arguments; the output's ``.sample``
is used. Time labels are float32 and not rounded unless ``quantize=True`` (diffusers' own Euler-type
schedulers feed fractional timesteps too). A DDPM ``variance_type`` of ``learned``/``learned_range``
means the network also predicts a variance: only its first half of channels (the mean) is used.

:class:`SampleClipping` (from :func:`sample_clipping_from_config`) is a config's ``clip_sample`` /
``thresholding`` as an x̂0 transform; :class:`~diffsample.integrations.DiffsampleScheduler` applies it,
the denoiser returned here does not (it is the model, not a sampler setting).

diffusers is imported only inside these functions, and only when a path has to be loaded.
Nothing is downloaded: paths must be local directories (``local_files_only=True``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .._deprecation import RenamedAttribute
from ..errors import DiffsampleError
from ..parameterization import ModelDenoiser, canonical_prediction
from ..schedules import EDM, DiscreteVP, NoiseSchedule, RectifiedFlow
from ..transforms.thresholding import capped_threshold

__all__ = [
    "DiffusersParameterization",
    "DiffusersNetwork",
    "SampleClipping",
    "load_diffusers_denoiser",
    "parameterization_from_config",
    "sample_clipping_from_config",
]

SCHEDULER_CONFIG = "scheduler_config.json"
MODEL_CONFIG = "config.json"
PIPELINE_INDEX = "model_index.json"
LEARNED_VARIANCE = ("learned", "learned_range")
"""``variance_type`` values of networks that also predict a variance (twice the input channels)."""


@dataclass(frozen=True)
class DiffusersParameterization:
    """What a diffusers scheduler config says about its network.

    ``noise_schedule`` and ``prediction`` are :class:`~diffsample.parameterization.ModelDenoiser`'s;
    ``time_scale`` multiplies the native time to give the network's timestep (1000 for flow
    matching, 1 otherwise); ``learned_variance`` is true when the network's output has twice the
    input channels (mean and variance).
    """

    noise_schedule: NoiseSchedule
    prediction: str
    time_scale: float = 1.0
    learned_variance: bool = False

    schedule = RenamedAttribute("noise_schedule")
    """Deprecated spelling of ``noise_schedule``."""


def is_flow_config(config: Mapping[str, Any]) -> bool:
    """A flow-matching scheduler config: a ``FlowMatch*`` class, flow prediction, flow sigmas, or (with no
    ``prediction_type`` key, as in ``FlowMatch*`` configs, whose ``.config`` has no class name) a ``shift`` key."""
    name = str(config.get("_class_name", ""))
    if name.startswith("FlowMatch") or bool(config.get("use_flow_sigmas", False)):
        return True
    if "prediction_type" in config:
        return canonical_prediction(str(config["prediction_type"])) == "flow"
    return "shift" in config


def is_edm_config(config: Mapping[str, Any]) -> bool:
    """An EDM scheduler config (``EDM*`` class, or a ``sigma_data`` key)."""
    return str(config.get("_class_name", "")).startswith("EDM") or "sigma_data" in config


def parameterization_from_config(config: Mapping[str, Any], *, shift: float | None = None) -> DiffusersParameterization:
    """Read a diffusers scheduler config (a dict or a scheduler's ``.config``).

    Args:
        config: the scheduler config.
        shift: the flow-matching resolution shift, overriding the config's ``shift``; required for
            configs with ``use_dynamic_shifting`` (the shift then depends on the image size).

    Raises:
        DiffsampleError: an unsupported config (EDM with ``v_prediction``, dynamic shifting without
            ``shift``).
    """
    config = dict(config)
    if is_flow_config(config):
        if shift is None:
            if config.get("use_dynamic_shifting", False):
                raise DiffsampleError(
                    "this flow-matching config uses dynamic shifting (the shift depends on the image size): "
                    "pass shift=<the shift for your resolution>"
                )
            shift = float(config.get("shift", config.get("flow_shift", 1.0)))
        return DiffusersParameterization(
            RectifiedFlow(shift=shift), "flow", time_scale=float(config.get("num_train_timesteps", 1000))
        )
    if is_edm_config(config):
        prediction = config.get("prediction_type", "epsilon")
        if prediction != "epsilon":
            raise DiffsampleError(
                f"EDM scheduler configs are supported with prediction_type='epsilon' (diffusers' name for EDM's "
                f"preconditioned F), got {prediction!r}"
            )
        schedule = EDM(
            sigma_min=float(config.get("sigma_min", 0.002)),
            sigma_max=float(config.get("sigma_max", 80.0)),
            sigma_data=float(config.get("sigma_data", 0.5)),
        )
        return DiffusersParameterization(schedule, "edm")
    prediction = canonical_prediction(str(config.get("prediction_type", "epsilon")))
    if prediction not in ("eps", "v", "x0"):
        raise DiffsampleError(f"a DDPM-table scheduler config cannot have prediction_type {prediction!r}")
    learned = config.get("variance_type") in LEARNED_VARIANCE
    return DiffusersParameterization(DiscreteVP.from_diffusers_config(config), prediction, learned_variance=learned)


class DiffusersNetwork:
    """Calls a diffusers model as ``model(x_t, timestep=t, **kwargs)`` and returns its output tensor.

    ``.sample`` of a diffusers output (or the first item of a tuple) is taken; with
    ``mean_channels`` set, only the first that many channels (a learned-variance network's mean).
    """

    def __init__(self, model: Callable[..., Any], mean_channels: int | None = None) -> None:
        self.model = model
        self.mean_channels = mean_channels

    def __repr__(self) -> str:
        return f"DiffusersNetwork({type(self.model).__name__})"

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        out = self.model(x, timestep=t, **kwargs)
        if not isinstance(out, torch.Tensor):
            out = out.sample if hasattr(out, "sample") else out[0]
        if self.mean_channels is not None:
            out = out[:, : self.mean_channels]
        return out


@dataclass(frozen=True)
class SampleClipping:
    """diffusers' treatment of the predicted clean sample x̂0 (``clip_sample`` / ``thresholding``), as a
    denoiser-output transform ``x̂0 -> x̂0'``.

    * ``kind="clip"``: ``clamp(x̂0, −clip_range, clip_range)`` (DDPM/DDIM's ``clip_sample``);
    * ``kind="threshold"``: dynamic thresholding (Saharia et al. 2022, "Imagen", §2.3) with diffusers'
      constants, :func:`diffsample.transforms.thresholding.capped_threshold` (``max_value`` caps the
      threshold and the result lies in ``[−1, 1]``).

    Thresholding takes precedence over clipping, as in diffusers' DDPM/DDIM/DPM-Solver schedulers.
    """

    kind: str
    clip_range: float = 1.0
    ratio: float = 0.995
    max_value: float = 1.0

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        if self.kind == "clip":
            return x0.clamp(-self.clip_range, self.clip_range)
        return capped_threshold(x0, self.ratio, self.max_value)


def sample_clipping_from_config(config: Mapping[str, Any]) -> SampleClipping | None:
    """The x̂0 transform a DDPM-table config asks for (``thresholding``, else ``clip_sample``), or None.

    Raises:
        DiffsampleError: a quantile ratio outside ``(0, 1]`` or a non-positive range.
    """
    if config.get("thresholding", False):
        ratio, max_value = (
            float(config.get("dynamic_thresholding_ratio", 0.995)),
            float(config.get("sample_max_value", 1.0)),
        )
        if not 0 < ratio <= 1 or not max_value > 0:
            raise DiffsampleError(
                f"thresholding needs 0 < dynamic_thresholding_ratio <= 1 and sample_max_value > 0, got "
                f"{ratio}, {max_value}"
            )
        return SampleClipping("threshold", ratio=ratio, max_value=max_value)
    if config.get("clip_sample", False):
        clip_range = float(config.get("clip_sample_range", 1.0))
        if not clip_range > 0:
            raise DiffsampleError(f"clip_sample_range must be > 0, got {clip_range}")
        return SampleClipping("clip", clip_range=clip_range)
    return None


def _read_json(path: str) -> dict[str, Any]:
    """A JSON config file as a dict; a missing, unreadable or non-object file is a DiffsampleError naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as err:
        raise DiffsampleError(f"cannot read the config {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DiffsampleError(f"{path} is not a JSON config: {err}") from None
    if not isinstance(data, dict):
        raise DiffsampleError(f"{path}: a config is a JSON object, got {type(data).__name__}")
    return data


def _inside(directory: str, subfolder: str) -> str:
    """``directory/subfolder``, refused when it resolves outside ``directory`` (``..``, an absolute path, a
    symbolic link pointing elsewhere): weights are only ever read from the model folder the user named."""
    root = os.path.realpath(directory)
    target = os.path.realpath(os.path.join(root, subfolder))
    if os.path.commonpath([root, target]) != root:
        raise DiffsampleError(f"the subfolder {subfolder!r} leaves the model folder {root}")
    return target


def _scheduler_config(scheduler: object) -> dict[str, Any]:
    """A scheduler config from a scheduler object, a mapping, a JSON file or a directory holding one."""
    if hasattr(scheduler, "config"):
        config = dict(scheduler.config)
        config.setdefault("_class_name", type(scheduler).__name__)
        return config
    if isinstance(scheduler, Mapping):
        return dict(scheduler)
    if isinstance(scheduler, str | os.PathLike):
        path = os.fspath(scheduler)
        nested = os.path.join(path, "scheduler", SCHEDULER_CONFIG)
        for candidate in (path, os.path.join(path, SCHEDULER_CONFIG), nested):
            if os.path.isfile(candidate):
                return _read_json(candidate)
        raise DiffsampleError(f"no {SCHEDULER_CONFIG} at {path!r}")
    raise TypeError(f"scheduler must be a scheduler, a config mapping or a path, got {type(scheduler).__name__}")


def _find_scheduler_config(model_dir: str) -> dict[str, Any]:
    """Look for the scheduler config next to a model: in its directory, a ``scheduler/`` subfolder of it
    or of its parent (a pipeline's ``unet/`` folder)."""
    parent = os.path.dirname(os.path.normpath(model_dir))
    candidates = (
        os.path.join(model_dir, SCHEDULER_CONFIG),
        os.path.join(model_dir, "scheduler", SCHEDULER_CONFIG),
        os.path.join(parent, "scheduler", SCHEDULER_CONFIG),
    )
    for candidate in candidates:
        if os.path.isfile(candidate):
            return _read_json(candidate)
    raise DiffsampleError(
        f"no scheduler config found for the model in {model_dir!r} (looked for {', '.join(candidates)}); "
        f"pass scheduler=<a scheduler, its config or its directory>"
    )


def _load_model(directory: str, subfolder: str | None, dtype: torch.dtype | None) -> torch.nn.Module:
    """Load the diffusers model class named in ``<directory>/<subfolder>/config.json`` from local files."""
    import diffusers

    config_path = os.path.join(_inside(directory, subfolder or ""), MODEL_CONFIG)
    class_name = _read_json(config_path).get("_class_name")
    model_cls = getattr(diffusers, str(class_name), None)
    if model_cls is None or not hasattr(model_cls, "from_pretrained"):
        raise DiffsampleError(f"{config_path} names model class {class_name!r}, which diffusers does not provide")
    kwargs: dict[str, Any] = {"local_files_only": True}
    if subfolder:
        kwargs["subfolder"] = subfolder
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    return model_cls.from_pretrained(directory, **kwargs)


def _resolve(
    path_or_pipeline: str | os.PathLike[str] | object,
    subfolder: str | None,
    dtype: torch.dtype | None,
    scheduler: object,
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The network and its scheduler config from a path, a pipeline or a model object."""
    obj = path_or_pipeline
    if isinstance(obj, str | os.PathLike):
        directory = os.fspath(obj)
        if not os.path.isdir(directory):
            raise DiffsampleError(
                f"{directory!r} is not a local directory; load_diffusers_denoiser never downloads (fetch the "
                f"checkpoint first, e.g. with diffusers' from_pretrained, and pass the pipeline or its directory)"
            )
        if os.path.isfile(os.path.join(directory, PIPELINE_INDEX)) and subfolder is None:
            subfolder = next(
                (s for s in ("unet", "transformer") if os.path.isfile(os.path.join(directory, s, MODEL_CONFIG))), None
            )
            if subfolder is None:
                raise DiffsampleError(f"the pipeline in {directory!r} has no unet/ or transformer/ subfolder")
        model = _load_model(directory, subfolder, dtype)
        config = (
            _scheduler_config(scheduler)
            if scheduler is not None
            else _find_scheduler_config(os.path.join(directory, subfolder or ""))
        )
        return model, config
    network = getattr(obj, "unet", None)
    if network is None:
        network = getattr(obj, "transformer", None)
    if network is not None and hasattr(obj, "scheduler"):  # a pipeline object
        config = _scheduler_config(scheduler if scheduler is not None else obj.scheduler)
        model = network
    elif callable(obj):
        if scheduler is None:
            raise DiffsampleError("a model object needs scheduler=<a scheduler, its config or its directory>")
        model, config = obj, _scheduler_config(scheduler)
    else:
        raise TypeError(f"expected a directory, a diffusers pipeline or a model, got {type(obj).__name__}")
    if dtype is not None and isinstance(model, torch.nn.Module):
        model.to(dtype=dtype)
    return model, config


def _model_dtype(model: object) -> torch.dtype | None:
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(model, torch.nn.Module):
        return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    return None


def load_diffusers_denoiser(
    path_or_pipeline: str | os.PathLike[str] | object,
    *,
    subfolder: str | None = None,
    dtype: torch.dtype | None = None,
    scheduler: object = None,
    device: torch.device | str | None = None,
    quantize: bool = False,
    shift: float | None = None,
) -> ModelDenoiser:
    """A σ-space denoiser ``D(x, σ) -> x̂0`` for a diffusers model (see the module docstring).

    Args:
        path_or_pipeline: a local pipeline directory (with ``model_index.json``, ``unet/`` or
            ``transformer/`` and ``scheduler/``), a local model directory (``config.json`` and weights; the
            scheduler config is looked for in it, in its ``scheduler/`` subfolder and in ``../scheduler/``),
            a pipeline object (its ``unet`` or ``transformer`` and its ``scheduler``), or a model object
            (then ``scheduler`` is required).
        subfolder: the model's subfolder inside the directory (default: ``unet``/``transformer`` for a
            pipeline directory, none otherwise).
        dtype: load the weights in this dtype (for an object: the module is cast in place with ``.to``).
        scheduler: the scheduler config to use instead of the checkpoint's: a scheduler object, a config
            mapping, a ``scheduler_config.json`` path or its directory.
        device: move the model there (in place).
        quantize: round time labels to integers (DDPM networks trained on integer steps only).
        shift: flow matching's resolution shift, overriding the config's (see
            :func:`parameterization_from_config`).

    Returns:
        A :class:`~diffsample.parameterization.ModelDenoiser` with float32 time labels; keyword
        arguments of a call (``class_labels=…``, ``encoder_hidden_states=…``) reach the model.
    """
    model, config = _resolve(path_or_pipeline, subfolder, dtype, scheduler)
    if device is not None and isinstance(model, torch.nn.Module):
        model.to(device)
    param = parameterization_from_config(config, shift=shift)
    mean_channels = None
    if param.learned_variance:
        channels = getattr(getattr(model, "config", None), "in_channels", None)
        if channels is None:
            raise DiffsampleError("a learned-variance config needs a model whose config has in_channels")
        mean_channels = int(channels)
    return ModelDenoiser(
        DiffusersNetwork(model, mean_channels),
        param.noise_schedule,
        param.prediction,
        time_scale=param.time_scale,
        quantize=quantize,
        dtype=_model_dtype(model),
        time_dtype=torch.float32,
    )
