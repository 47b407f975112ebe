"""Turn any network (ε, x0, v, flow velocity, score or EDM-preconditioned) into a σ-space denoiser.

For a σ-space input ``x = x0 + σ·ε`` the wrapper finds the network's native time
``t = noise_schedule.t_of_sigma_space(σ)`` (clamped into ``[t_min, t_max]``), with ``α = α(t)``,
``σ_t = σ(t)``, and calls ``out = network(x_t, t_in, **kwargs)`` on ``x_t = α·x``. Every
parameterisation is linear in ``(x_t, out)``, so ``x̂0 = a·x + b·out`` with (writing ``x_t = α x``,
``x_t = α x0 + σ_t ε``):

============ =============================== ===============================================
prediction   network output                   x̂0
============ =============================== ===============================================
``eps``      ε                                ``(x_t − σ_t ε)/α = x − (σ_t/α) ε``
``x0``       x0                               ``out``
``v``        ``v = α ε − σ_t x0`` (Salimans    ``(α x_t − σ_t v)/(α² + σ_t²)``
             & Ho 2022)
``flow``     ``u = ε − x0`` (rectified-flow   ``(x_t − σ_t u)/(α + σ_t)``; for ``α = 1 − t``,
             velocity; Liu et al. 2023)       ``σ_t = t`` this is ``x_t − t u``
``score``    ``∇ log p_t(x_t) = −ε/σ_t``      ``(x_t + σ_t² s)/α``
``edm``      F with EDM preconditioning       ``c_skip x + c_out F(c_in x, c_noise)`` (Karras et al.
                                              2022, Table 1); schedule and time options unused
============ =============================== ===============================================

The inverse direction, a network made from a σ-space denoiser (to drive a library that expects one,
e.g. a diffusers scheduler), is :class:`VPTableNetwork` (DDPM tables: ε, x0 or v) and
:class:`EDMNetwork` (EDM's raw ``F``): ``ModelDenoiser(VPTableNetwork(D, ᾱ, p), DiscreteVP(...), p)``
is ``D`` again, up to rounding.

The coefficients ``a, b`` are computed in float64 from the schedule; the network output is cast to
float32 (float64 when x is float64) *before* the combination, so fp16/bf16 networks never do the
conversion maths in half precision.

Edge cases (choices):

* σ = 0 entries return ``x`` itself (the clean sample) — there is no finite native time for infinite
  log-SNR. Those entries are still in the batched network call, evaluated at ``noise_schedule.sigma_min``
  and then replaced; a batch with σ = 0 everywhere skips the network (it still counts one NFE).
* σ outside the schedule's time domain (e.g. σ > 50 on ``VE()``) is clamped to ``t_max``
  (``t_min``): the network is evaluated as if at that time and x̂0 uses that time's coefficients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from . import contracts
from ._deprecation import RenamedAttribute, renamed_keyword
from .denoisers import Denoiser, append_dims, check_output
from .errors import ShapeError, UnknownNameError
from .schedules import NoiseSchedule, edm_preconditioning, get_schedule

__all__ = [
    "PREDICTIONS",
    "TIME_INPUTS",
    "EDMNetwork",
    "ModelDenoiser",
    "VPTableNetwork",
    "canonical_prediction",
    "x0_coefficients",
]

PREDICTIONS: dict[str, str] = {
    "eps": "eps",
    "epsilon": "eps",
    "x0": "x0",
    "sample": "x0",
    "v": "v",
    "v_prediction": "v",
    "flow": "flow",
    "velocity": "flow",
    "flow_prediction": "flow",
    "score": "score",
    "edm": "edm",
}
"""Accepted prediction names (diffusers' ``prediction_type`` values included) → canonical name."""

TIME_INPUTS = ("native", "sigma", "log_snr")
"""What the network is given as its time: native ``t``, the σ-space level, or the log-SNR λ."""


def canonical_prediction(name: str) -> str:
    """The canonical parameterisation name for ``name`` ("epsilon" → "eps", "v_prediction" → "v", …)."""
    try:
        return PREDICTIONS[name]
    except KeyError:
        raise UnknownNameError("parameterisation", name, list(PREDICTIONS)) from None


def x0_coefficients(prediction: str, alpha: torch.Tensor, sigma_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` with ``x̂0 = a·x + b·out`` for a network fed ``x_t = α·x`` (x in σ-space).

    ``prediction`` is one of eps, x0, v, flow, score (see the module table; "edm" has its own
    coefficients, :func:`~diffsample.schedules.edm_preconditioning`).
    """
    p = canonical_prediction(prediction)
    if p == "eps":
        return torch.ones_like(alpha), -sigma_t / alpha
    if p == "x0":
        return torch.zeros_like(alpha), torch.ones_like(alpha)
    if p == "v":
        norm = alpha * alpha + sigma_t * sigma_t
        return alpha * alpha / norm, -sigma_t / norm
    if p == "flow":
        norm = alpha + sigma_t
        return alpha / norm, -sigma_t / norm
    if p == "score":
        return torch.ones_like(alpha), sigma_t * sigma_t / alpha
    raise UnknownNameError("parameterisation", prediction, ["eps", "x0", "v", "flow", "score"])


def _network_dtype(network: object, dtype: torch.dtype | None) -> torch.dtype | None:
    if dtype is not None:
        return dtype
    if isinstance(network, torch.nn.Module):
        for p in network.parameters():
            if p.is_floating_point():
                return p.dtype
        for b in network.buffers():
            if b.is_floating_point():
                return b.dtype
    return None


def _as_output(out: object, x: torch.Tensor) -> torch.Tensor:
    """Accept a tensor, an object with ``.sample`` (diffusers outputs) or a tuple whose first item is the output."""
    if not isinstance(out, torch.Tensor):
        if hasattr(out, "sample"):
            out = out.sample
        elif isinstance(out, tuple | list) and out:
            out = out[0]
    out = check_output(out, "the network")
    if out.shape != x.shape:
        raise ShapeError(
            f"the network returned shape {tuple(out.shape)} for input shape {tuple(x.shape)}; a network that "
            f"also predicts a variance must be wrapped to return only the mean channels"
        )
    return out


class ModelDenoiser(Denoiser):
    """σ-space denoiser ``D(x, σ) -> x̂0`` from a network called as ``network(x_t, t_in, **kwargs)``.

    Args:
        network: the model; any callable (``nn.Module`` or function). Extra keyword arguments of a
            denoiser call (conditioning) are passed through to it unchanged.
        noise_schedule: a :class:`~diffsample.schedules.NoiseSchedule` or a name for
            :func:`~diffsample.schedules.get_schedule` (``schedule=`` is its deprecated spelling).
        prediction: eps | x0 | v | flow | score | edm (and the aliases in :data:`PREDICTIONS`).
        time_input: what ``t_in`` is before scaling: "native" (the schedule's t), "sigma" (the
            σ-space level) or "log_snr" (λ).
        time_scale: ``t_in`` is multiplied by this (e.g. 999 or 1000 for continuous-time VP
            networks that take 0…999).
        quantize: round ``t_in`` to the nearest integer (DDPM networks trained on integer steps).
            As in k-diffusion, only the time label is rounded; x_t and the conversion use exact t.
        sigma_data: EDM's σ_data for ``prediction="edm"``; default the schedule's, else 0.5.
        dtype: the network's dtype; detected from an ``nn.Module``'s parameters when not given,
            and the work dtype (float32/float64) for a plain function. x_t is cast to it.
        time_dtype: the dtype of ``t_in``; default the network dtype. Pass ``torch.float32`` for
            networks that embed time in float32 (diffusers UNets): bf16 cannot represent t = 999.
    """

    schedule = RenamedAttribute("noise_schedule")
    """Deprecated spelling of :attr:`noise_schedule`."""

    @renamed_keyword("schedule", "noise_schedule")
    def __init__(
        self,
        network: Callable[..., Any],
        noise_schedule: NoiseSchedule | str,
        prediction: str = "eps",
        *,
        time_input: str = "native",
        time_scale: float = 1.0,
        quantize: bool = False,
        sigma_data: float | None = None,
        dtype: torch.dtype | None = None,
        time_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not callable(network):
            raise TypeError(f"network must be callable as network(x_t, t, **kwargs), got {type(network).__name__}")
        self.network = network
        self.noise_schedule = get_schedule(noise_schedule) if isinstance(noise_schedule, str) else noise_schedule
        self.prediction = canonical_prediction(prediction)
        if time_input not in TIME_INPUTS:
            raise UnknownNameError("time input", time_input, list(TIME_INPUTS))
        self.time_input = time_input
        self.time_scale = float(time_scale)
        self.quantize = bool(quantize)
        self.sigma_data = float(
            sigma_data if sigma_data is not None else getattr(self.noise_schedule, "sigma_data", 0.5)
        )
        self.dtype = _network_dtype(network, dtype)
        self.time_dtype = time_dtype

    def __repr__(self) -> str:
        return f"ModelDenoiser(prediction={self.prediction!r}, noise_schedule={self.noise_schedule!r})"

    def _time_label(self, t: torch.Tensor) -> torch.Tensor:
        if self.time_input == "native":
            tau = t
        elif self.time_input == "sigma":
            tau = self.noise_schedule.sigma_space(t)
        else:
            tau = self.noise_schedule.log_snr(t)
        tau = tau * self.time_scale
        return tau.round() if self.quantize else tau

    def network_inputs(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float64 ``(scale, t_in, a, b)`` at σ-space levels ``sigma`` (> 0): the network sees
        ``network(scale·x, t_in)`` and ``x̂0 = a·x + b·out``."""
        s = sigma.detach().to("cpu", torch.float64)
        if self.prediction == "edm":
            c_skip, c_out, c_in, c_noise = edm_preconditioning(s, self.sigma_data)
            return c_in, c_noise, c_skip, c_out
        sched = self.noise_schedule
        t = sched.t_of_sigma_space(s).clamp(sched.t_min, sched.t_max)
        alpha, sigma_t = sched.alpha(t), sched.sigma(t)
        a, b = x0_coefficients(self.prediction, alpha, sigma_t)
        return alpha, self._time_label(t), a, b

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        xw = x.to(work)
        s = sigma.detach().to("cpu", torch.float64)
        clean = s == 0
        if bool(clean.all()):
            return xw
        s_eval = torch.where(clean, torch.full_like(s, self.noise_schedule.sigma_min), s)
        scale, t_in, a, b = self.network_inputs(s_eval)

        def per_sample(v: torch.Tensor) -> torch.Tensor:
            return append_dims(v.to(x.device, work), x.dim())

        net_dtype = self.dtype or work
        x_in = (per_sample(scale) * xw).to(net_dtype)
        t_in = t_in.to(x.device, self.time_dtype or net_dtype)
        out = _as_output(self.network(x_in, t_in, **kwargs), x).to(work)
        x0 = per_sample(a) * xw + per_sample(b) * out
        if bool(clean.any()):
            x0 = torch.where(append_dims(clean.to(x.device), x.dim()), xw, x0)
        return x0


def _per_level(
    network: Callable[[torch.Tensor, float], torch.Tensor], x: torch.Tensor, level: torch.Tensor | float
) -> torch.Tensor:
    """Call ``network(x, float level)`` once for a scalar (or uniform) level, else once per sample."""
    flat = torch.as_tensor(level).detach().flatten()
    if bool((flat == flat[0]).all()):
        return network(x, float(flat[0]))
    return torch.cat([network(x[i : i + 1], float(v)) for i, v in enumerate(flat)])


class VPTableNetwork:
    """The inverse of :class:`ModelDenoiser` on a DDPM table: the ε / x0 / v network of a σ-space denoiser.

    Called as ``network(x_t, t)`` at a (possibly fractional) timestep ``t`` of the table ``ᾱ_t``, it takes
    ``σ(t)`` from the table (log σ interpolated linearly between integer timesteps, as
    :class:`~diffsample.schedules.DiscreteVP` does; exact at integers), recovers the σ-space state
    ``x = x_t/α = x_t·sqrt(1 + σ²)`` and returns, with ``x̂0 = D(x, σ)`` and ``ε̂ = (x − x̂0)/σ``,

    * ``eps``: ``ε̂`` (from ``x_t = α x0 + σ_t ε`` and ``σ = σ_t/α``);
    * ``x0``: ``x̂0``;
    * ``v``: ``v̂ = α ε̂ − σ_t x̂0 = α(ε̂ − σ·x̂0)`` (Salimans & Ho 2022),

    so that ``ModelDenoiser(VPTableNetwork(D, ᾱ, p), DiscreteVP(betas), p)`` is ``D`` again. The
    conversions run in float64; the denoiser sees ``x`` and σ in ``dtype``, and the output is cast to it.
    The network knows ``t`` only, like a trained one.

    Args:
        denoiser: ``D(x, σ) -> x̂0`` in σ-space.
        alphas_cumprod: the table ``ᾱ_t``, ``t = 0 … N−1`` (diffusers' ``scheduler.alphas_cumprod``).
        prediction: eps, x0 or v (and the aliases in :data:`PREDICTIONS`: epsilon, sample, v_prediction).
        dtype: the working dtype of the denoiser call and of the output.
    """

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        alphas_cumprod: torch.Tensor,
        prediction: str = "eps",
        *,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        abar = torch.as_tensor(alphas_cumprod).to(torch.float64)
        self.log_sigma = 0.5 * torch.log((1 - abar) / abar)
        self.prediction = canonical_prediction(prediction)
        if self.prediction not in ("eps", "x0", "v"):
            raise ValueError(f"unsupported prediction_type {prediction!r} for a VP-table network")
        self.denoiser = denoiser
        self.dtype = dtype

    def sigma(self, t: torch.Tensor | float) -> float:
        """σ(t): log σ interpolated linearly between integer timesteps (exact at integers)."""
        tf = float(t)
        last = len(self.log_sigma) - 1
        tf = min(max(tf, 0.0), float(last))
        lo = min(int(math.floor(tf)), last - 1)
        w = tf - lo
        return math.exp((1 - w) * float(self.log_sigma[lo]) + w * float(self.log_sigma[lo + 1]))

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """The network output at timestep ``t`` (a scalar, or one per sample)."""
        return _per_level(self._at, x_t, t)

    def _at(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        sigma = self.sigma(t)
        scale = math.sqrt(1.0 + sigma * sigma)  # 1/α
        x = (x_t.to(torch.float64) * scale).to(self.dtype)
        s = torch.full((x.shape[0],), sigma, dtype=self.dtype, device=x.device)
        d = self.denoiser(x, s).to(torch.float64)
        x64 = x.to(torch.float64)
        if self.prediction == "x0":
            out = d
        else:
            eps = (x64 - d) / sigma
            out = eps if self.prediction == "eps" else (eps - sigma * d) / scale
        return out.to(self.dtype)


class EDMNetwork:
    """The inverse of :class:`ModelDenoiser` with ``prediction="edm"``: EDM's raw network ``F`` of a denoiser.

    Called as ``network(c_in·x, c_noise)`` with EDM's preconditioning (Karras et al. 2022, Table 1:
    ``c_in = 1/sqrt(σ² + σ_d²)``, ``c_noise = ¼ ln σ``), it recovers σ and ``x`` and returns
    ``F = (D(x, σ) − c_skip·x)/c_out`` with ``c_skip = σ_d²/(σ² + σ_d²)``, ``c_out = σ σ_d/sqrt(σ² + σ_d²)``,
    so that ``c_skip·x + c_out·F`` is ``D(x, σ)`` again. ``prediction="v_prediction"`` returns ``−F``
    (diffusers' EDM schedulers negate ``c_out`` for it; ``"epsilon"`` and ``"edm"`` mean ``F``).

    Args:
        denoiser: ``D(x, σ) -> x̂0`` in σ-space.
        sigma_data: EDM's data scale σ_d.
        prediction: ``"edm"`` / ``"epsilon"`` (``F``) or ``"v_prediction"`` (``−F``).
        dtype: the working dtype of the denoiser call and of the output.
    """

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        sigma_data: float = 0.5,
        prediction: str = "edm",
        *,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if prediction not in ("edm", "epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction_type {prediction!r} for an EDM network")
        self.sigma_data = float(sigma_data)
        self.sign = -1.0 if prediction == "v_prediction" else 1.0
        self.denoiser = denoiser
        self.dtype = dtype

    def __call__(self, x_in: torch.Tensor, c_noise: torch.Tensor | float) -> torch.Tensor:
        """``F(c_in·x, c_noise)`` (``c_noise`` a scalar, or one per sample)."""
        return _per_level(self._at, x_in, c_noise)

    def _at(self, x_in: torch.Tensor, c_noise: float) -> torch.Tensor:
        sigma = math.exp(4.0 * c_noise)  # c_noise = ¼ log σ
        sd2 = self.sigma_data**2
        norm = math.sqrt(sigma * sigma + sd2)
        x = (x_in.to(torch.float64) * norm).to(self.dtype)  # c_in = 1/norm
        s = torch.full((x.shape[0],), sigma, dtype=self.dtype, device=x.device)
        d = self.denoiser(x, s).to(torch.float64)
        c_skip = sd2 / norm**2
        c_out = self.sign * sigma * self.sigma_data / norm
        return ((d - c_skip * x.to(torch.float64)) / c_out).to(self.dtype)
