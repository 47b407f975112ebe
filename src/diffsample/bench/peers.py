"""Peer libraries side by side: diffusers' schedulers and k-diffusion's samplers on our σ-space denoisers.

The benchmark compares solvers at equal NFE, from the same initial noise ``z``, against the exact
probability-flow ODE solution over each run's own σ span. This module lets the two reference
libraries take part in that comparison on the exact test beds:

* **k-diffusion** already speaks our contract: its model is ``D(x, σ)`` in σ-space, so
  :func:`kdiffusion_sample` hands it our denoiser as is. Only its ``sampling.py`` is loaded
  (:func:`load_k_sampling`), never ``k_diffusion/__init__.py`` (which imports torchvision, CLIP,
  wandb…).
* **diffusers** schedulers drive a *network* at integer or float timesteps ``t`` on a discrete
  training table. :func:`diffusers_sample` builds the network a scheduler expects from our exact
  denoiser (see "The network" below), starts the scheduler's walk from the σ-space state
  ``σ_start·z``, runs diffusers' standard loop, and converts the result back to σ-space.

Nothing here is imported by ``import diffsample``; diffusers and k-diffusion are imported inside the
functions that use them. Install them with the commands in ``requirements-peers.txt``.

Spans
-----
``"vp1000"``: the DDPM table (1000 steps, linear β from 1e-4 to 0.02, ε-prediction), on which
diffusers' VP schedulers run; σ runs from ``σ(t=0) ≈ 0.0100`` to ``σ(t=999) ≈ 157.4`` with
``σ(t) = sqrt((1 − ᾱ_t)/ᾱ_t)``. ``"edm"``: EDM's ``σ ∈ [0.002, 80]`` with σ_data = 0.5, on which
diffusers' EDM schedulers run. A diffusers walk starts at *its own* first level (``'leading'``
spacing never starts at t = 999) and may end above 0 (DDIM/PNDM with ``set_alpha_to_one=False``,
DEIS, DPM-Solver with ``final_sigmas_type='sigma_min'``): every run reports ``sigma_start`` and
``sigma_end`` so the reference ODE solution is computed over exactly that span.

The network
-----------
*VP table* (every diffusers scheduler except the EDM ones). Two sample conventions exist:

- VP sample (DDIM, PNDM, DPMSolver*, UniPC, DEIS; ``init_noise_sigma == 1``):
  ``x_t = α_t·x`` with ``α_t = 1/sqrt(1 + σ²)``, where ``x = x0 + σ·ε`` is the σ-space state;
- σ-space sample (Euler, Heun, LMS, KDPM2; ``init_noise_sigma != 1``): the sample *is* ``x`` and
  ``scale_model_input`` divides it by ``sqrt(σ² + 1)``, so the network again sees ``α_t·x``.

So one network serves both: at timestep ``t`` it takes ``σ(t)`` from the scheduler's own
``alphas_cumprod`` table (log-σ interpolated linearly between integer timesteps, the inverse of
diffusers' ``_sigma_to_t``; exact at integer ``t``), recovers ``x = x_t·sqrt(1 + σ²)`` and returns
``ε̂ = (x − D(x, σ))/σ`` (or ``D`` for ``prediction_type='sample'``, or ``v̂ = α(ε̂ − σ·D)`` for
``'v_prediction'``). The network knows ``t`` only, like a trained one: where diffusers rounds a
Karras σ to an integer timestep (``use_karras_sigmas`` in DPMSolverMultistep/Singlestep, UniPC, DEIS,
and KDPM2's full steps), the model is evaluated at the rounded timestep's table σ while the update
uses the unrounded σ. That mismatch is
diffusers' own and is part of what the benchmark measures. Schedulers whose float timesteps come
from linear-in-σ interpolation (Euler/Heun/LMS default ``linspace`` without Karras sigmas) see a
network that interpolates log σ instead; the two differ only between adjacent table entries (at
most ≈1.5 % of σ between t = 0 and t = 1, far less above).

*EDM* (``EDMEulerScheduler``, ``EDMDPMSolverMultistepScheduler``): the network is EDM's raw
preconditioned network ``F`` (Karras et al. 2022, eq. 7). It receives ``c_in·x`` with
``c_in = 1/sqrt(σ² + σ_data²)`` and ``c_noise = ¼ log σ``, recovers σ and ``x``, and returns
``F = (D(x, σ) − c_skip·x)/c_out`` with ``c_skip = σ_data²/(σ² + σ_data²)`` and
``c_out = σ·σ_data/sqrt(σ² + σ_data²)`` (negated for ``prediction_type='v_prediction'``); the
scheduler's ``precondition_outputs`` turns it back into exactly ``D``. diffusers calls this
parameterisation ``"epsilon"``.

Starting state: both walks start from the σ-space state ``σ_start·z`` with ``σ_start`` the
scheduler's own first level (``sigmas[0]``, or ``σ(timesteps[0])`` for DDIM/PNDM), i.e. the VP
sample ``σ_start·z/sqrt(1 + σ_start²) = sqrt(1 − ᾱ)·z`` or the σ-space sample ``σ_start·z``. This
is what a pipeline's ``randn·init_noise_sigma`` means, except where diffusers' ``init_noise_sigma``
is ``sqrt(σ_max² + 1)`` rather than ``σ_max`` (Euler/LMS with ``'leading'`` spacing, Heun, KDPM2,
the EDM schedulers): there a pipeline starts slightly off its first level; we start on it, so both
libraries solve the same ODE problem.

All diffusers walks run in float32 (their own update dtype); the network's conversions use float64.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
import math
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal, NamedTuple

import torch

from ..denoisers import Denoiser, as_denoiser
from ..errors import BudgetError, UnknownNameError

__all__ = [
    "DIFFUSERS_CONFIGS",
    "INSTALL_HINT",
    "KDIFFUSION_CONFIGS",
    "KDIFFUSION_SCHEDULES",
    "PeerConfig",
    "PeerRun",
    "SPANS",
    "Span",
    "diffusers_sample",
    "diffusers_sigmas",
    "kdiffusion_sample",
    "kdiffusion_sigmas",
    "kdiffusion_steps_for_nfe",
    "load_k_sampling",
    "peer_configs",
    "peers_available",
    "vp1000_sigma_table",
]

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


def _span(name: str) -> Span:
    try:
        return SPANS[name]
    except KeyError:
        raise UnknownNameError("span", name, list(SPANS)) from None


# ------------------------------------------------------------------------------------------ versions


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def peers_available() -> dict[str, str | None]:
    """Installed versions of the peer libraries, ``None`` where one is missing or does not load.

    ``"k-diffusion"`` is reported only when its ``sampling.py`` actually loads (see
    :func:`load_k_sampling`), ``"diffusers"`` only when ``import diffusers`` succeeds.
    """
    out: dict[str, str | None] = {}
    try:
        import diffusers

        out["diffusers"] = str(diffusers.__version__)
    except ImportError:
        out["diffusers"] = None
    try:
        load_k_sampling()
        out["k-diffusion"] = _version("k-diffusion")
    except ImportError:
        out["k-diffusion"] = None
    return out


# --------------------------------------------------------------------------------------- k-diffusion

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
            f"k-diffusion's sampling.py needs a module that is missing ({exc}); install the peers with: "
            f"{INSTALL_HINT}"
        ) from exc
    package.sampling = sampling  # type: ignore[attr-defined]
    return sampling


KDIFFUSION_SCHEDULES = ("karras", "exponential", "polyexponential")

# k-diffusion samplers with a fixed cost: name -> (model calls per step, whether a step into σ = 0
# costs one call fewer). All are deterministic as called here (eta = 0). ipndm/ipndm_v/deis exist
# only in some forks (e.g. ComfyUI's); configurations use them when the installed sampling.py has them.
_KD_SAMPLERS: dict[str, tuple[int, bool]] = {
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
_KD_SPAN_SAMPLERS = ("dpm_fast", "dpm_adaptive")


def kdiffusion_steps_for_nfe(name: str, nfe: int) -> int:
    """Number of steps (levels before the final 0) of sampler ``name`` costing at most ``nfe`` calls."""
    if name not in _KD_SAMPLERS:
        raise UnknownNameError("k-diffusion fixed-step sampler", name, list(_KD_SAMPLERS))
    if int(nfe) != nfe or nfe < 1:
        raise BudgetError(f"NFE budget must be a positive integer, got {nfe!r}")
    per_step, saves_last = _KD_SAMPLERS[name]
    steps = (nfe + (per_step - 1 if saves_last else 0)) // per_step
    if steps < 1:
        raise BudgetError(f"k-diffusion sampler {name!r} needs {per_step} model calls per step; the budget is {nfe}")
    return steps


def kdiffusion_sigmas(schedule: str, steps: int, span: Span | str, **options: Any) -> torch.Tensor:
    """k-diffusion's own schedule ``get_sigmas_<schedule>(steps, σ_min, σ_max)`` (ends in 0), as float64."""
    if schedule not in KDIFFUSION_SCHEDULES:
        raise UnknownNameError("k-diffusion schedule", schedule, list(KDIFFUSION_SCHEDULES))
    sp = _span(span) if isinstance(span, str) else span
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
        names = sorted(n[len("sample_"):] for n in dir(ks) if n.startswith("sample_"))
        raise UnknownNameError("k-diffusion sampler", name, names)
    den = as_denoiser(denoiser)
    start = den.nfe
    sig = torch.as_tensor(sigmas).to(device=x.device, dtype=x.dtype)
    params = inspect.signature(fn).parameters
    opts: dict[str, Any] = {"eta": 0.0} if "eta" in params else {}
    opts.update(options)
    if "noise_sampler" in params and not opts.get("eta") and opts.get("noise_sampler") is None:
        opts["noise_sampler"] = _zero_noise(x)
    if name in _KD_SPAN_SAMPLERS:
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


# ------------------------------------------------------------------------------------------ diffusers


def _diffusers_class(name: str) -> type:
    import diffusers

    for candidate in (name, f"{name}Scheduler"):
        cls = getattr(diffusers, candidate, None)
        if isinstance(cls, type) and hasattr(cls, "set_timesteps"):
            return cls
    names = sorted(n for n in dir(diffusers) if n.endswith("Scheduler"))
    raise UnknownNameError("diffusers scheduler", name, names)


def _is_edm(cls: type) -> bool:
    return hasattr(cls, "precondition_outputs") and hasattr(cls, "precondition_noise")


def _build_scheduler(cls: type, span: str, overrides: Mapping[str, Any]) -> Any:
    params = inspect.signature(cls.__init__).parameters
    base = EDM_CONFIG if span == "edm" else VP1000_CONFIG
    kwargs = {k: v for k, v in base.items() if k in params}
    kwargs.update(overrides)
    return cls(**kwargs)


def _steps_for_nfe(cls: type, span: str, overrides: Mapping[str, Any], nfe: int) -> tuple[Any, int]:
    """A scheduler set to the most inference steps whose walk makes at most ``nfe`` model calls.

    diffusers' loop calls the network once per entry of ``scheduler.timesteps`` (Heun/KDPM2 list
    the second-stage timesteps too, PLMS repeats one), so the count is read from the scheduler:
    ``n = nfe`` first (one call per step), else a bisection on ``n`` (the count grows with ``n``).
    Each trial runs on a copy of one freshly built scheduler, since ``set_timesteps`` may rewrite
    its config and some constructors are slow (KDPM2 builds a 1000-step schedule).
    """
    if int(nfe) != nfe or nfe < 1:
        raise BudgetError(f"NFE budget must be a positive integer, got {nfe!r}")
    base = _build_scheduler(cls, span, overrides)

    def trial(steps: int) -> Any:
        sched = copy.deepcopy(base)
        sched.set_timesteps(steps)
        return sched

    sched = trial(int(nfe))
    if len(sched.timesteps) <= nfe:
        return sched, int(nfe)
    lo, hi = 0, int(nfe)  # len(timesteps(lo)) <= nfe < len(timesteps(hi)), lo = 0 meaning none found
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(trial(mid).timesteps) <= nfe:
            lo = mid
        else:
            hi = mid
    if lo == 0:
        raise BudgetError(f"{cls.__name__} cannot run within {nfe} model evaluations")
    return trial(lo), lo


def _sigma_of_alpha_cumprod(abar: float) -> float:
    return math.sqrt((1.0 - abar) / abar)


def _start_end_sigmas(sched: Any) -> tuple[float, float]:
    """The σ-space levels the scheduler's walk starts at and ends at (its own belief, not ours)."""
    sigmas = getattr(sched, "sigmas", None)
    if isinstance(sigmas, torch.Tensor) and sigmas.numel() > 1:
        return float(sigmas[0]), float(sigmas[-1])
    abar = sched.alphas_cumprod.to(torch.float64)
    t0, t_last = int(sched.timesteps[0]), int(sched.timesteps[-1])
    # DDIM/PNDM step from t to t − T // n, using final_alpha_cumprod below 0
    prev = t_last - sched.config.num_train_timesteps // sched.num_inference_steps
    abar_end = float(abar[prev]) if prev >= 0 else float(sched.final_alpha_cumprod)
    return _sigma_of_alpha_cumprod(float(abar[t0])), _sigma_of_alpha_cumprod(abar_end)


class _VPNetwork:
    """The ε/x0/v network a VP-table scheduler expects, made from an exact σ-space denoiser."""

    def __init__(self, sched: Any, denoiser: Denoiser, dtype: torch.dtype) -> None:
        abar = sched.alphas_cumprod.to(torch.float64)
        self.log_sigma = 0.5 * torch.log((1 - abar) / abar)
        self.prediction = sched.config.prediction_type
        if self.prediction not in ("epsilon", "sample", "v_prediction"):
            raise ValueError(f"unsupported prediction_type {self.prediction!r} for a VP-table scheduler")
        self.denoiser = denoiser
        self.dtype = dtype

    def sigma(self, t: torch.Tensor) -> float:
        """σ(t): log σ interpolated linearly between integer timesteps (exact at integers)."""
        tf = float(t)
        last = len(self.log_sigma) - 1
        tf = min(max(tf, 0.0), float(last))
        lo = min(int(math.floor(tf)), last - 1)
        w = tf - lo
        return math.exp((1 - w) * float(self.log_sigma[lo]) + w * float(self.log_sigma[lo + 1]))

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma(t)
        scale = math.sqrt(1.0 + sigma * sigma)  # 1/α
        x = (x_t.to(torch.float64) * scale).to(self.dtype)
        s = torch.full((x.shape[0],), sigma, dtype=self.dtype, device=x.device)
        d = self.denoiser(x, s).to(torch.float64)
        x64 = x.to(torch.float64)
        if self.prediction == "sample":
            out = d
        else:
            eps = (x64 - d) / sigma
            out = eps if self.prediction == "epsilon" else (eps - sigma * d) / scale
        return out.to(self.dtype)


class _EDMNetwork:
    """EDM's raw network ``F`` for diffusers' EDM schedulers, made from an exact σ-space denoiser."""

    def __init__(self, sched: Any, denoiser: Denoiser, dtype: torch.dtype) -> None:
        self.sigma_data = float(sched.config.sigma_data)
        prediction = sched.config.prediction_type
        if prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction_type {prediction!r} for an EDM scheduler")
        self.sign = 1.0 if prediction == "epsilon" else -1.0
        self.denoiser = denoiser
        self.dtype = dtype

    def __call__(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        sigma = math.exp(4.0 * float(c_noise))  # c_noise = ¼ log σ
        sd2 = self.sigma_data**2
        norm = math.sqrt(sigma * sigma + sd2)
        x = (x_in.to(torch.float64) * norm).to(self.dtype)  # c_in = 1/norm
        s = torch.full((x.shape[0],), sigma, dtype=self.dtype, device=x.device)
        d = self.denoiser(x, s).to(torch.float64)
        c_skip = sd2 / norm**2
        c_out = self.sign * sigma * self.sigma_data / norm
        return ((d - c_skip * x.to(torch.float64)) / c_out).to(self.dtype)


def _prepare(scheduler_name: str, nfe: int, config: Mapping[str, Any] | None, span: str | None,
             scheduler_kwargs: Mapping[str, Any]) -> tuple[Any, bool]:
    """Resolve the class, check the span, and return the scheduler set for ``nfe`` (and whether it is EDM)."""
    cls = _diffusers_class(scheduler_name)
    edm = _is_edm(cls)
    expected = "edm" if edm else "vp1000"
    if span is not None and span != expected:
        raise ValueError(f"{cls.__name__} runs on the {expected!r} span, not {span!r}")
    sched, _ = _steps_for_nfe(cls, expected, {**(config or {}), **scheduler_kwargs}, nfe)
    return sched, edm


def diffusers_sample(
    scheduler_name: str,
    denoiser: Denoiser | Callable[..., torch.Tensor],
    z: torch.Tensor,
    nfe: int,
    *,
    config: Mapping[str, Any] | None = None,
    span: Literal["vp1000", "edm"] | None = None,
    **scheduler_kwargs: Any,
) -> tuple[torch.Tensor, int, float, float]:
    """Run a diffusers scheduler's standard loop on a network made from our σ-space denoiser.

    Args:
        scheduler_name: a diffusers scheduler class name, with or without the ``Scheduler`` suffix
            (``"DPMSolverMultistepScheduler"``, ``"UniPCMultistep"``, ``"EDMEuler"``…).
        denoiser: ``D(x, σ) -> x̂0`` in σ-space.
        z: standard normal noise of shape ``(B, …)``; the walk starts at the σ-space state
            ``σ_start·z`` (see the module docstring for how that maps onto diffusers' sample).
        nfe: model-evaluation budget; the scheduler gets the largest ``num_inference_steps`` whose
            walk makes at most ``nfe`` network calls.
        config: scheduler config overrides, on top of the span's defaults (the DDPM table with
            ε-prediction and no clipping for ``"vp1000"``; σ ∈ [0.002, 80], σ_data = 0.5 for ``"edm"``).
        span: ``"edm"`` for diffusers' EDM schedulers, ``"vp1000"`` for all others; inferred from
            the class when omitted, an error when it does not fit the class.
        **scheduler_kwargs: more config overrides (``use_karras_sigmas=True``,
            ``timestep_spacing="trailing"``, ``algorithm_type``, ``solver_order``…).

    Returns:
        ``(x, nfe_used, sigma_start, sigma_end)``: the final state in σ-space (``x = x0 + σ_end·ε``
        form, float32), the model evaluations made, and the σ-space levels the walk started and
        ended at (``sigma_end`` is 0 when the scheduler ends in x0). NaN in ``x`` is returned as is:
        some diffusers configurations produce it (see ``DIFFUSERS_CONFIGS`` notes).
    """
    sched, edm = _prepare(scheduler_name, nfe, config, span, scheduler_kwargs)
    den = as_denoiser(denoiser)
    start_nfe = den.nfe
    dtype = torch.float32
    net = (_EDMNetwork if edm else _VPNetwork)(sched, den, dtype)
    sigma_start, sigma_end = _start_end_sigmas(sched)
    sigma_space = float(sched.init_noise_sigma) != 1.0
    state = z.to(torch.float64) * sigma_start
    sample = (state if sigma_space else state / math.sqrt(1.0 + sigma_start**2)).to(dtype)
    step_kwargs: dict[str, Any] = {}
    if "generator" in inspect.signature(sched.step).parameters:
        # the stochastic branches are off; a private generator keeps the global RNG untouched anyway
        step_kwargs["generator"] = torch.Generator(device=z.device).manual_seed(0)
    with torch.no_grad():
        for t in sched.timesteps:
            model_input = sched.scale_model_input(sample, t)
            out = net(model_input, t)
            sample = sched.step(out, t, sample, **step_kwargs).prev_sample
    x = sample.to(torch.float64)
    if not sigma_space:
        x = x * math.sqrt(1.0 + sigma_end**2)
    return x.to(dtype), den.nfe - start_nfe, sigma_start, sigma_end


def diffusers_sigmas(
    scheduler_name: str,
    nfe: int,
    *,
    config: Mapping[str, Any] | None = None,
    span: Literal["vp1000", "edm"] | None = None,
    **scheduler_kwargs: Any,
) -> torch.Tensor:
    """The σ-space levels the scheduler's walk visits at this budget, float64, from σ_start to σ_end.

    These are the scheduler's own step levels (Heun/KDPM2 second-stage repeats and a repeated final
    level collapsed; KDPM2's midpoints left out), so our solvers or k-diffusion's can run on the same
    grid. For DDIM/PNDM they are ``σ(t)`` of the timesteps plus the final level.
    """
    sched, _ = _prepare(scheduler_name, nfe, config, span, scheduler_kwargs)
    sigmas = getattr(sched, "sigmas", None)
    if isinstance(sigmas, torch.Tensor) and sigmas.numel() > 1:
        levels = sigmas.to(torch.float64)
    else:
        abar = sched.alphas_cumprod.to(torch.float64)
        ts = torch.as_tensor(sched.timesteps).long()
        levels = torch.cat([((1 - abar[ts]) / abar[ts]).sqrt(),
                            torch.tensor([_start_end_sigmas(sched)[1]], dtype=torch.float64)])
    return torch.unique_consecutive(levels)


# -------------------------------------------------------------------------------------------- configs


class PeerRun(NamedTuple):
    """One peer walk: final σ-space state, model evaluations, and the σ span it covered."""

    x: torch.Tensor
    nfe: int
    sigma_start: float
    sigma_end: float


@dataclass(frozen=True, eq=False)
class PeerConfig:
    """A named peer-library configuration the benchmark can run at any NFE budget.

    ``library`` is ``"diffusers"`` (``sampler`` a scheduler class, ``options`` config overrides) or
    ``"k-diffusion"`` (``sampler`` a ``sample_*`` name, ``schedule`` one of
    :data:`KDIFFUSION_SCHEDULES` or ``None`` for dpm_fast/dpm_adaptive, ``options`` sampler
    keyword arguments). ``fixed_nfe`` is false for adaptive samplers, whose cost the budget does
    not set. ``issue`` describes a known failure of the peer itself (measured with diffusers
    0.42.1), e.g. NaN output; such configurations are kept so the benchmark shows it.
    """

    name: str
    library: Literal["diffusers", "k-diffusion"]
    sampler: str
    span: str
    options: Mapping[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    fixed_nfe: bool = True
    note: str = ""
    issue: str = ""

    def run(self, denoiser: Denoiser | Callable[..., torch.Tensor], z: torch.Tensor, nfe: int) -> PeerRun:
        """Walk from the σ-space state ``σ_start·z`` with at most ``nfe`` model evaluations."""
        if self.library == "diffusers":
            x, used, s0, s1 = diffusers_sample(self.sampler, denoiser, z, nfe, config=self.options,
                                               span=self.span)  # type: ignore[arg-type]
            return PeerRun(x, used, s0, s1)
        sp = _span(self.span)
        if self.schedule is None:  # dpm_fast / dpm_adaptive: a span, not a σ array
            sigmas = torch.tensor([sp.sigma_max, sp.sigma_min, 0.0], dtype=torch.float64)
            opts = dict(self.options)
            if self.sampler == "dpm_fast":
                opts["n"] = nfe
            x0 = z.to(torch.float32) * sp.sigma_max
            x, used = kdiffusion_sample(self.sampler, denoiser, x0, sigmas, **opts)
            return PeerRun(x, used, sp.sigma_max, sp.sigma_min)
        steps = kdiffusion_steps_for_nfe(self.sampler, nfe)
        sigmas = kdiffusion_sigmas(self.schedule, steps, sp)
        x0 = z.to(torch.float32) * float(sigmas[0])
        x, used = kdiffusion_sample(self.sampler, denoiser, x0, sigmas, **self.options)
        return PeerRun(x, used, float(sigmas[0]), float(sigmas[-1]))


def _df(name: str, cls: str, span: str = "vp1000", note: str = "", issue: str = "", **options: Any) -> PeerConfig:
    return PeerConfig(f"diffusers:{name}", "diffusers", cls, span, options, note=note, issue=issue)


_DPMM = "DPMSolverMultistepScheduler"
_DPMS = "DPMSolverSinglestepScheduler"
_UNIPC = "UniPCMultistepScheduler"
_KARRAS = {"use_karras_sigmas": True}
_SIGMA_MIN_END = {"final_sigmas_type": "sigma_min"}  # required by diffusers for non-++ DPM-Solver
_NAN_BH1 = ("NaN at the last step into σ = 0 at every NFE: bh1 sets B(h) = −h, infinite there "
            "(bh2's expm1(−h) = −1 stays finite); ending at sigma_min avoids it")
_DDIM_SPACING = ("wrong result when 1000/steps is not an integer: DDIM.step goes to t − 1000//steps, not to "
                 "the next listed timestep, so the next step starts from the wrong level ('linspace' spacing "
                 "has it at every step count below 1000; 'leading' never)")
_NAN_3M_KARRAS = ("NaN at the last step from 15 steps on (lower_order_final only acts below 15): the Karras "
                  "σ_min equals the final sigma_min level, so that step has h = 0 and the 3rd-order "
                  "coefficients divide by it; euler_at_final=True avoids it")

DIFFUSERS_CONFIGS: tuple[PeerConfig, ...] = (
    # DPM-Solver++ multistep (data prediction), ends in x0
    _df("dpm++2m", _DPMM, algorithm_type="dpmsolver++", solver_order=2),
    _df("dpm++2m-karras", _DPMM, algorithm_type="dpmsolver++", solver_order=2, **_KARRAS),
    _df("dpm++2m-no-lof", _DPMM, algorithm_type="dpmsolver++", solver_order=2, lower_order_final=False),
    _df("dpm++2m-heun", _DPMM, algorithm_type="dpmsolver++", solver_order=2, solver_type="heun"),
    _df("dpm++2m-trailing", _DPMM, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing"),
    _df("dpm++2m-leading", _DPMM, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="leading"),
    _df("dpm++3m", _DPMM, algorithm_type="dpmsolver++", solver_order=3),
    _df("dpm++3m-karras", _DPMM, algorithm_type="dpmsolver++", solver_order=3, **_KARRAS),
    _df("dpm++3m-no-lof", _DPMM, algorithm_type="dpmsolver++", solver_order=3, lower_order_final=False),
    # DPM-Solver multistep (noise prediction); diffusers forbids ending at 0, so they end at σ_min
    _df("dpm2m", _DPMM, algorithm_type="dpmsolver", solver_order=2, **_SIGMA_MIN_END),
    _df("dpm2m-karras", _DPMM, algorithm_type="dpmsolver", solver_order=2, **_KARRAS, **_SIGMA_MIN_END),
    _df("dpm3m", _DPMM, algorithm_type="dpmsolver", solver_order=3, **_SIGMA_MIN_END),
    _df("dpm3m-karras", _DPMM, algorithm_type="dpmsolver", solver_order=3, issue=_NAN_3M_KARRAS, **_KARRAS,
        **_SIGMA_MIN_END),
    _df("dpm3m-karras-euler-final", _DPMM, algorithm_type="dpmsolver", solver_order=3, euler_at_final=True,
        **_KARRAS, **_SIGMA_MIN_END),
    # DPM-Solver singlestep
    _df("dpm++2s", _DPMS, algorithm_type="dpmsolver++", solver_order=2),
    _df("dpm++3s", _DPMS, algorithm_type="dpmsolver++", solver_order=3),
    _df("dpm++3s-karras", _DPMS, algorithm_type="dpmsolver++", solver_order=3, **_KARRAS),
    _df("dpm2s", _DPMS, algorithm_type="dpmsolver", solver_order=2, **_SIGMA_MIN_END),
    _df("dpm3s", _DPMS, algorithm_type="dpmsolver", solver_order=3, **_SIGMA_MIN_END),
    # UniPC
    _df("unipc-bh1-o2", _UNIPC, solver_type="bh1", solver_order=2, issue=_NAN_BH1),
    _df("unipc-bh1-o2-sigma-min", _UNIPC, solver_type="bh1", solver_order=2, **_SIGMA_MIN_END),
    _df("unipc-bh2-o2", _UNIPC, solver_type="bh2", solver_order=2),
    _df("unipc-bh1-o3", _UNIPC, solver_type="bh1", solver_order=3, issue=_NAN_BH1),
    _df("unipc-bh1-o3-sigma-min", _UNIPC, solver_type="bh1", solver_order=3, **_SIGMA_MIN_END,
        note="its error stalls near 5e-4 from 40 to 320 NFE on the Gaussian bed (float64 tables too)"),
    _df("unipc-bh2-o3", _UNIPC, solver_type="bh2", solver_order=3),
    _df("unipc-bh2-o2-karras", _UNIPC, solver_type="bh2", solver_order=2, **_KARRAS),
    _df("unipc-bh2-o3-karras", _UNIPC, solver_type="bh2", solver_order=3, **_KARRAS),
    # DEIS (ends at the table's σ_min)
    _df("deis-o2", "DEISMultistepScheduler", solver_order=2),
    _df("deis-o3", "DEISMultistepScheduler", solver_order=3,
        note="its 3rd-order coefficients come from float32 σ tables and lose accuracy as steps shrink: the "
             "error stops falling near 80 NFE and grows after (float64 tables converge)"),
    # DDIM / PLMS
    _df("ddim", "DDIMScheduler", note="diffusers default 'leading' spacing: starts below t = 999"),
    _df("ddim-trailing", "DDIMScheduler", timestep_spacing="trailing", issue=_DDIM_SPACING),
    _df("pndm-plms", "PNDMScheduler", skip_prk_steps=True, note="PLMS only; ends at σ(t=0)"),
    # k-diffusion-style σ-space schedulers
    _df("euler", "EulerDiscreteScheduler"),
    _df("euler-karras", "EulerDiscreteScheduler", **_KARRAS),
    _df("euler-leading", "EulerDiscreteScheduler", timestep_spacing="leading"),
    _df("heun", "HeunDiscreteScheduler"),
    _df("heun-karras", "HeunDiscreteScheduler", **_KARRAS),
    _df("lms", "LMSDiscreteScheduler"),
    _df("lms-karras", "LMSDiscreteScheduler", **_KARRAS),
    _df("kdpm2", "KDPM2DiscreteScheduler"),
    _df("kdpm2-karras", "KDPM2DiscreteScheduler", **_KARRAS),
    # EDM span
    _df("edm-euler", "EDMEulerScheduler", span="edm"),
    _df("edm-dpm++2m", "EDMDPMSolverMultistepScheduler", span="edm", solver_order=2),
    _df("edm-dpm++3m", "EDMDPMSolverMultistepScheduler", span="edm", solver_order=3),
)
"""Named diffusers configurations (VP table unless ``span='edm'``); see :func:`diffusers_sample`."""


def _kd_configs() -> tuple[PeerConfig, ...]:
    configs: list[PeerConfig] = []
    for span in SPANS:
        for sampler in _KD_SAMPLERS:
            for schedule in ("karras", "exponential"):
                configs.append(PeerConfig(f"k-diffusion:{sampler}-{schedule}@{span}", "k-diffusion", sampler, span,
                                          schedule=schedule))
        configs.append(PeerConfig(f"k-diffusion:dpm_fast@{span}", "k-diffusion", "dpm_fast", span,
                                  note="ends at the span's sigma_min, not 0"))
        configs.append(PeerConfig(f"k-diffusion:dpm_adaptive@{span}", "k-diffusion", "dpm_adaptive", span,
                                  fixed_nfe=False, note="adaptive steps (rtol 0.05, atol 0.0078): NFE is its own"))
    return tuple(configs)


KDIFFUSION_CONFIGS: tuple[PeerConfig, ...] = _kd_configs()
"""k-diffusion sampler × schedule (karras, exponential) × span; ``peer_configs`` drops the samplers
(ipndm, ipndm_v, deis) that the installed k-diffusion lacks."""


def peer_configs(library: str | None = None, span: str | None = None) -> list[PeerConfig]:
    """The configurations runnable with what is installed, optionally filtered by library and span."""
    avail = peers_available()
    out: list[PeerConfig] = []
    ks = load_k_sampling() if avail["k-diffusion"] else None
    for cfg in (*DIFFUSERS_CONFIGS, *KDIFFUSION_CONFIGS):
        if library is not None and cfg.library != library:
            continue
        if span is not None and cfg.span != span:
            continue
        if avail[cfg.library] is None:
            continue
        if cfg.library == "k-diffusion" and not hasattr(ks, f"sample_{cfg.sampler}"):
            continue
        out.append(cfg)
    return out
