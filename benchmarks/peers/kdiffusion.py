"""k-diffusion's samplers on our denoisers: loading its ``sampling.py`` alone, step counts, schedules and runs.

k-diffusion already speaks our contract: its model is ``D(x, σ)`` in σ-space, so :func:`kdiffusion_sample`
hands it our denoiser as is. Only its ``sampling.py`` is loaded (:func:`load_k_sampling`), never
``k_diffusion/__init__.py`` (which imports torchvision, CLIP, wandb…).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

from diffsample.denoisers import Denoiser, as_denoiser
from diffsample.errors import BudgetError, UnknownNameError

from .spans import INSTALL_HINT, Span, get_span

__all__ = [
    "KDIFFUSION_SAMPLERS",
    "KDIFFUSION_SCHEDULES",
    "SPAN_SAMPLERS",
    "kdiffusion_sample",
    "kdiffusion_sigmas",
    "kdiffusion_steps_for_nfe",
    "load_k_sampling",
]

_K_PACKAGE = "_diffsample_peer_k_diffusion"


def _append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """k-diffusion's ``utils.append_dims``: trailing singleton dims up to ``target_dims``."""
    extra = target_dims - x.ndim
    if extra < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * extra]


def _load_file_module(qualname: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(qualname, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[qualname]
        raise
    return module


@functools.cache
def load_k_sampling() -> types.ModuleType:
    """k-diffusion's ``sampling`` module, loaded without running ``k_diffusion/__init__.py``.

    If ``k_diffusion`` is already imported (a full install), its ``sampling`` is returned. Otherwise
    ``sampling.py`` is loaded from the installed package directory as a submodule of a private stub
    package (``_diffsample_peer_k_diffusion``, so a later real ``import k_diffusion`` is unaffected).
    Its ``from . import utils`` gets the real ``utils.py`` when that imports (it needs torchvision);
    otherwise a one-function module with ``append_dims``, the only utility ``sampling.py`` uses.
    ``sampling.py`` itself needs scipy, tqdm, torchsde (+ trampoline) and torchdiffeq.

    Raises:
        ImportError: k-diffusion or one of those dependencies is missing; the message gives the
            install command.
    """
    loaded = sys.modules.get("k_diffusion.sampling")
    if loaded is not None:
        return loaded
    try:
        spec = importlib.util.find_spec("k_diffusion")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"k-diffusion is not installed; install the peers with: {INSTALL_HINT}")
    pkg_dir = list(spec.submodule_search_locations)[0]
    package = types.ModuleType(_K_PACKAGE)
    package.__path__ = [pkg_dir]
    package.__package__ = _K_PACKAGE
    sys.modules[_K_PACKAGE] = package
    utils_name = f"{_K_PACKAGE}.utils"
    try:
        utils = _load_file_module(utils_name, f"{pkg_dir}/utils.py")
    except ImportError:
        utils = types.ModuleType(utils_name)
        utils.append_dims = _append_dims  # type: ignore[attr-defined]
        sys.modules[utils_name] = utils
    package.utils = utils  # type: ignore[attr-defined]
    try:
        sampling = _load_file_module(f"{_K_PACKAGE}.sampling", f"{pkg_dir}/sampling.py")
    except ImportError as exc:
        sys.modules.pop(utils_name, None)
        sys.modules.pop(_K_PACKAGE, None)
        raise ImportError(
            f"k-diffusion's sampling.py needs a module that is missing ({exc}); install the peers with: {INSTALL_HINT}"
        ) from exc
    package.sampling = sampling  # type: ignore[attr-defined]
    return sampling


KDIFFUSION_SCHEDULES = ("karras", "exponential", "polyexponential")

# k-diffusion samplers with a fixed cost: name -> (model calls per step, whether a step into σ = 0
# costs one call fewer). All are deterministic as called here (eta = 0). ipndm/ipndm_v/deis exist
# only in some forks (e.g. ComfyUI's); configurations use them when the installed sampling.py has them.
KDIFFUSION_SAMPLERS: dict[str, tuple[int, bool]] = {
    "euler": (1, False),
    "heun": (2, True),
    "dpm_2": (2, True),
    "lms": (1, False),
    "dpmpp_2m": (1, False),
    "dpmpp_2s_ancestral": (2, True),
    "dpmpp_sde": (2, True),
    "dpmpp_2m_sde": (1, False),
    "dpmpp_3m_sde": (1, False),
    "ipndm": (1, False),
    "ipndm_v": (1, False),
    "deis": (1, False),
}
SPAN_SAMPLERS = ("dpm_fast", "dpm_adaptive")


def kdiffusion_steps_for_nfe(name: str, nfe: int) -> int:
    """Number of steps (levels before the final 0) of sampler ``name`` costing at most ``nfe`` calls."""
    if name not in KDIFFUSION_SAMPLERS:
        raise UnknownNameError("k-diffusion fixed-step sampler", name, list(KDIFFUSION_SAMPLERS))
    if int(nfe) != nfe or nfe < 1:
        raise BudgetError(f"NFE budget must be a positive integer, got {nfe!r}")
    per_step, saves_last = KDIFFUSION_SAMPLERS[name]
    steps = (nfe + (per_step - 1 if saves_last else 0)) // per_step
    if steps < 1:
        raise BudgetError(f"k-diffusion sampler {name!r} needs {per_step} model calls per step; the budget is {nfe}")
    return steps


def kdiffusion_sigmas(schedule: str, steps: int, span: Span | str, **options: Any) -> torch.Tensor:
    """k-diffusion's own schedule ``get_sigmas_<schedule>(steps, σ_min, σ_max)`` (ends in 0), as float64."""
    if schedule not in KDIFFUSION_SCHEDULES:
        raise UnknownNameError("k-diffusion schedule", schedule, list(KDIFFUSION_SCHEDULES))
    sp = get_span(span) if isinstance(span, str) else span
    fn = getattr(load_k_sampling(), f"get_sigmas_{schedule}")
    return fn(steps, sp.sigma_min, sp.sigma_max, **options).to(torch.float64)


def _zero_noise(x: torch.Tensor) -> Callable[[Any, Any], torch.Tensor]:
    return lambda sigma, sigma_next: torch.zeros_like(x)


def kdiffusion_sample(
    name: str, denoiser: Denoiser | Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor, **options: Any
) -> tuple[torch.Tensor, int]:
    """Run k-diffusion's ``sample_<name>(model, x, sigmas, disable=True, **options)`` on our denoiser.

    k-diffusion's model contract is ours, ``model(x, σ) -> x̂0`` with σ of shape ``(B,)``, so the
    denoiser is passed as the model. ``sigmas`` are cast to x's dtype and device, as k-diffusion's
    own ``get_sigmas_*`` give them (k-diffusion promotes x to the sigmas' dtype otherwise).

    ``dpm_fast`` and ``dpm_adaptive`` take a span instead of a σ array: they run from ``sigmas[0]``
    down to the smallest *positive* entry of ``sigmas`` and return the state *there* (not at 0);
    ``dpm_fast`` uses ``n = len(sigmas) − 1`` model calls unless ``n`` is given, ``dpm_adaptive``
    as many as its tolerances (``rtol``, ``atol``) need.

    Samplers with an ``eta`` get ``eta=0`` unless it is given (deterministic: ancestral and SDE
    samplers become their ODE counterparts) and, while ``eta`` is 0, a noise sampler returning
    zeros, so no global RNG or Brownian tree is touched.

    Returns:
        ``(x_out, nfe)``: the final state and the number of model evaluations it took, read from the
        denoiser's counter.
    """
    ks = load_k_sampling()
    fn = getattr(ks, f"sample_{name}", None)
    if fn is None:
        names = sorted(n[len("sample_") :] for n in dir(ks) if n.startswith("sample_"))
        raise UnknownNameError("k-diffusion sampler", name, names)
    den = as_denoiser(denoiser)
    start = den.nfe
    sig = torch.as_tensor(sigmas).to(device=x.device, dtype=x.dtype)
    params = inspect.signature(fn).parameters
    opts: dict[str, Any] = {"eta": 0.0} if "eta" in params else {}
    opts.update(options)
    if "noise_sampler" in params and not opts.get("eta") and opts.get("noise_sampler") is None:
        opts["noise_sampler"] = _zero_noise(x)
    if name in SPAN_SAMPLERS:
        positive = sig[sig > 0]
        if len(positive) < 2:
            raise ValueError(f"{name} needs sigmas with at least two positive levels, got {sig.tolist()}")
        if name == "dpm_fast":
            opts.setdefault("n", len(sig) - 1)
        out = fn(den, x, float(positive[-1]), float(positive[0]), disable=True, **opts)
        if isinstance(out, tuple):
            out = out[0]
    else:
        out = fn(den, x, sig, disable=True, **opts)
    return out, den.nfe - start
