"""Noise schedules: how a network's native time ``t`` relates to its noise, ``x_t = α(t)·x0 + σ(t)·ε``.

diffsample works in *σ-space*: dividing by α gives ``x_t/α = x0 + (σ/α)·ε``, so a noisy sample at
native time ``t`` is a σ-space sample at level ``σ_space(t) = σ(t)/α(t) = exp(−λ(t))``, where
``λ(t) = log(α/σ)`` is the log signal-to-noise ratio (Kingma et al. 2021, "Variational Diffusion
Models"). A schedule gives α, σ, λ, the σ-space level and their inverses; the parameterisation
wrapper (:mod:`diffsample.parameterization`) uses it to feed a network its own ``(x_t, t)``.

Every method accepts a Python float or a tensor and computes in float64, returning a float64
tensor (0-d for a float). Attributes common to all schedules:

* ``t_min``, ``t_max``: the native time domain of the network. The wrapper clamps times into it.
* ``sigma_min``, ``sigma_max``: the finite, positive σ-space span a step schedule should cover.
  They equal ``sigma_space(t)`` at the ends of the sampling range, which is the time domain unless
  that reaches infinite σ (zero terminal SNR, flow matching at t = 1; see each class).

``log_snr`` is clipped to ``[−LOG_SNR_LIMIT, LOG_SNR_LIMIT]`` so that it is finite everywhere,
including at zero-terminal-SNR ends and at ``σ = 0``; ``sigma_space`` is *not* clipped and returns
``inf`` where α = 0 (never NaN). Inverses accept ``±inf``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from .errors import DiffsampleError, UnknownNameError

__all__ = [
    "BETA_SCHEDULES",
    "LOG_SNR_LIMIT",
    "VE",
    "ContinuousVPCosine",
    "ContinuousVPLinear",
    "DiscreteVP",
    "EDM",
    "NoiseSchedule",
    "RectifiedFlow",
    "available_schedules",
    "edm_preconditioning",
    "get_schedule",
    "make_betas",
    "rescale_zero_terminal_snr",
    "resolution_shift",
]

LOG_SNR_LIMIT = 50.0
"""|λ| beyond which ``log_snr`` is clipped (α or σ below e^-50 ≈ 2e-22: far below float32 resolution)."""

TimeLike = float | torch.Tensor


def _f64(v: TimeLike | Sequence[float]) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v.to(torch.float64)
    return torch.as_tensor(v, dtype=torch.float64)


def _softplus(v: torch.Tensor) -> torch.Tensor:
    """``log(1 + e^v)`` exactly (no threshold), ``inf`` for ``v = inf``."""
    return torch.logaddexp(v, torch.zeros_like(v))


class NoiseSchedule:
    """Base class: subclasses implement the private ``_alpha``, ``_sigma``, ``_log_snr``, ``_t_of_log_snr``
    (and may override ``_sigma_space`` / ``_t_of_sigma_space`` with more accurate closed forms).
    """

    name: ClassVar[str] = ""
    t_min: float
    t_max: float
    sigma_min: float
    sigma_max: float

    # ---- public API -------------------------------------------------------------------------
    def alpha(self, t: TimeLike) -> torch.Tensor:
        """Signal scale ``α(t)`` of ``x_t = α x0 + σ ε``."""
        return self._alpha(_f64(t))

    def sigma(self, t: TimeLike) -> torch.Tensor:
        """The model's own noise scale ``σ(t)`` (not σ-space)."""
        return self._sigma(_f64(t))

    def log_snr(self, t: TimeLike) -> torch.Tensor:
        """``λ(t) = log(α(t)/σ(t))``, clipped to ``±LOG_SNR_LIMIT`` so it is always finite."""
        return self._log_snr(_f64(t)).clamp(-LOG_SNR_LIMIT, LOG_SNR_LIMIT)

    def t_of_log_snr(self, lam: TimeLike) -> torch.Tensor:
        """Inverse of :meth:`log_snr` (exact closed form, or monotone interpolation for tables)."""
        return self._t_of_log_snr(_f64(lam))

    def sigma_space(self, t: TimeLike) -> torch.Tensor:
        """σ-space level ``σ(t)/α(t) = exp(−λ(t))``; ``inf`` where α = 0."""
        return self._sigma_space(_f64(t))

    def t_of_sigma_space(self, s: TimeLike) -> torch.Tensor:
        """Inverse of :meth:`sigma_space`; accepts ``0`` and ``inf``."""
        s = _f64(s)
        if bool((s < 0).any()) or bool(torch.isnan(s).any()):
            raise DiffsampleError("σ-space levels must be >= 0 (and not NaN)")
        return self._t_of_sigma_space(s)

    def sampling_time(self, u: TimeLike) -> torch.Tensor:
        """Native time at sampling time ``u``: the identity, except for shifted flows (:class:`RectifiedFlow`).

        Step schedules that are uniform "in time" space ``u`` uniformly and map it through this.
        """
        return _f64(u)

    def to_config(self) -> dict[str, Any]:
        """A JSON-serialisable dict; ``NoiseSchedule.from_config`` (or :func:`get_schedule`) rebuilds it."""
        return {"name": self.name, **self._params()}

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> NoiseSchedule:
        """Rebuild a schedule from :meth:`to_config` output."""
        cfg = dict(config)
        if "name" not in cfg:
            raise DiffsampleError(f"a schedule config needs a 'name' key, got keys {sorted(cfg)}")
        return get_schedule(cfg.pop("name"), **cfg)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoiseSchedule) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items() if k != "betas")
        return f"{type(self).__name__}({params})"

    # ---- defaults for subclasses ------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _t_of_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return torch.log(self._alpha(t)) - torch.log(self._sigma(t))

    def _sigma_space(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self._log_snr(t))

    def _t_of_sigma_space(self, s: torch.Tensor) -> torch.Tensor:
        return self._t_of_log_snr(-torch.log(s))


class _VP(NoiseSchedule):
    """Variance-preserving schedules, ``α² + σ² = 1``, defined by ``log ᾱ(t) = 2 log α(t)`` and its inverse.

    With ``ℓ = log ᾱ``: ``σ = sqrt(1 − e^ℓ)``, ``λ = ½ℓ − ½ log(1 − e^ℓ)``, ``σ_space = sqrt(e^{−ℓ} − 1)``;
    inversely ``ℓ = −softplus(−2λ) = −log(1 + s²)`` (all with ``expm1``/``log1p`` for accuracy).
    """

    def _log_alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _t_of_log_alpha_bar(self, lab: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _set_time_domain(self, T: float, eps: float) -> None:
        """Time domain ``[0, T]``; sampling span ``[σ_space(eps), σ_space(T)]``."""
        self.t_min, self.t_max = 0.0, T
        self.sigma_min, self.sigma_max = float(self.sigma_space(eps)), float(self.sigma_space(T))

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(0.5 * self._log_alpha_bar(t))

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(self._log_alpha_bar(t)))

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        lab = self._log_alpha_bar(t)
        return 0.5 * lab - 0.5 * torch.log(-torch.expm1(lab))

    def _sigma_space(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.expm1(-self._log_alpha_bar(t)))

    def _t_of_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        return self._t_of_log_alpha_bar(-_softplus(-2 * lam))

    def _t_of_sigma_space(self, s: torch.Tensor) -> torch.Tensor:
        return self._t_of_log_alpha_bar(-torch.log1p(s * s))


# ---------------------------------------------------------------------------------------------
# Discrete-time VP (DDPM tables)
# ---------------------------------------------------------------------------------------------

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

_BETA_DEFAULTS = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012)}


def _beta_range(beta_schedule: str, beta_start: float | None, beta_end: float | None) -> tuple[float, float]:
    """``(β_start, β_end)`` of a ``linear`` or ``scaled_linear`` table: the given values, else its defaults."""
    d0, d1 = _BETA_DEFAULTS[beta_schedule]
    return (d0 if beta_start is None else float(beta_start)), (d1 if beta_end is None else float(beta_end))


def make_betas(
    beta_schedule: str = "linear",
    num_train_timesteps: int = 1000,
    beta_start: float | None = None,
    beta_end: float | None = None,
    max_beta: float = 0.999,
) -> torch.Tensor:
    """The β table of a named schedule, in float64 (diffusers uses the same formulas in float32).

    * ``"linear"`` (Ho et al. 2020, DDPM): ``β_i`` linear from ``beta_start=1e-4`` to ``beta_end=0.02``.
    * ``"scaled_linear"`` (Stable Diffusion): ``sqrt β_i`` linear from ``sqrt 0.00085`` to ``sqrt 0.012``.
    * ``"squaredcos_cap_v2"`` (Nichol & Dhariwal 2021, eq. 17): ``β_i = min(1 − f((i+1)/N)/f(i/N), max_beta)``
      with ``f(t) = cos²((t + 0.008)/1.008 · π/2)``; ``beta_start``/``beta_end`` are ignored.
    """
    n = int(num_train_timesteps)
    if n != num_train_timesteps or n < 3:
        raise DiffsampleError(f"num_train_timesteps must be an integer >= 3, got {num_train_timesteps!r}")
    if beta_schedule == "squaredcos_cap_v2":
        i = torch.arange(n, dtype=torch.float64)

        def f(t: torch.Tensor) -> torch.Tensor:
            return torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return (1 - f((i + 1) / n) / f(i / n)).clamp(max=max_beta)
    if beta_schedule not in _BETA_DEFAULTS:
        raise UnknownNameError("beta schedule", beta_schedule, list(BETA_SCHEDULES))
    b0, b1 = _beta_range(beta_schedule, beta_start, beta_end)
    if beta_schedule == "linear":
        return torch.linspace(b0, b1, n, dtype=torch.float64)
    return torch.linspace(math.sqrt(b0), math.sqrt(b1), n, dtype=torch.float64) ** 2


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Lin et al. (2024), "Common Diffusion Noise Schedules and Sample Steps are Flawed", Algorithm 1.

    Shift and scale ``sqrt ᾱ`` affinely so that its first value is kept and its last becomes 0:
    ``sqrt ᾱ'_i = (sqrt ᾱ_i − sqrt ᾱ_{N−1}) · sqrt ᾱ_0 / (sqrt ᾱ_0 − sqrt ᾱ_{N−1})``. Returns ``ᾱ'``
    (the betas follow as ``β'_i = 1 − ᾱ'_i/ᾱ'_{i−1}``, so ``β'_{N−1} = 1``).
    """
    r = alphas_cumprod.to(torch.float64).sqrt()
    first, last = r[0].clone(), r[-1].clone()
    r = (r - last) * (first / (first - last))
    r[-1] = 0.0
    return r * r


class DiscreteVP(NoiseSchedule):
    """A DDPM β table: ``ᾱ_t = Π_{i≤t}(1 − β_i)`` at integer timesteps ``t = 0 … N−1``.

    Between timesteps, ``log σ_space`` is interpolated linearly in ``t`` (k-diffusion's
    ``DiscreteSchedule`` with ``quantize=False``), so the inverse is a monotone piecewise-linear
    interpolation. Outside ``[0, N−1]`` times are clamped to the ends (a table cannot extrapolate);
    likewise σ-space levels beyond the table map to ``t = 0`` or ``t = N−1``.

    Build from a β array, ``DiscreteVP(betas)``, or by name,
    ``DiscreteVP(beta_schedule="scaled_linear", num_train_timesteps=1000)`` (see :func:`make_betas`).

    Zero terminal SNR (``zero_terminal_snr=True``, or a table whose last β is 1): ``ᾱ_{N−1} = 0``
    after :func:`rescale_zero_terminal_snr`, so ``sigma_space(N−1) = inf`` and ``sigmas[-1] = inf``.
    Choices, to keep everything NaN-free:

    * on the last interval ``[N−2, N−1]`` α (not log σ) is interpolated linearly, from ``α_{N−2}``
      to 0; σ-space is finite for ``t < N−1``, and ``t_of_sigma_space`` maps any large σ into
      ``(N−2, N−1]`` (``inf`` to exactly ``N−1``), so a walk may start at any finite σ;
    * ``sigma_max`` is the last *finite* table entry ``sigmas[N−2]`` (diffusers' Euler scheduler
      instead starts at ``ᾱ = 2^-24``, i.e. σ = 4096: pass that level explicitly to match it);
    * ``log_snr(N−1)`` is clipped to ``−LOG_SNR_LIMIT``; ``alpha(N−1) = 0``, ``sigma(N−1) = 1``.
    """

    name = "discrete_vp"

    def __init__(
        self,
        betas: torch.Tensor | Sequence[float] | None = None,
        *,
        beta_schedule: str | None = None,
        num_train_timesteps: int = 1000,
        beta_start: float | None = None,
        beta_end: float | None = None,
        max_beta: float = 0.999,
        zero_terminal_snr: bool = False,
    ) -> None:
        if betas is not None and beta_schedule is not None:
            raise DiffsampleError("give either betas or beta_schedule, not both")
        if betas is None:
            beta_schedule = beta_schedule or "linear"
            b = make_betas(beta_schedule, num_train_timesteps, beta_start, beta_end, max_beta)
            n_train = int(num_train_timesteps)
            self._cfg: dict[str, Any] = {"beta_schedule": beta_schedule, "num_train_timesteps": n_train}
            if beta_schedule == "squaredcos_cap_v2":
                self._cfg["max_beta"] = float(max_beta)
            else:
                self._cfg["beta_start"], self._cfg["beta_end"] = _beta_range(beta_schedule, beta_start, beta_end)
        else:
            b = torch.as_tensor(betas, dtype=torch.float64).detach().cpu().flatten()
            self._cfg = {"betas": b.tolist()}
        self._cfg["zero_terminal_snr"] = bool(zero_terminal_snr)
        n = b.numel()
        if n < 3:
            raise DiffsampleError(f"a β table needs at least 3 entries, got {n}")
        if not bool(torch.isfinite(b).all()) or bool((b <= 0).any()) or bool((b[:-1] >= 1).any()) or b[-1] > 1:
            raise DiffsampleError("betas must lie in (0, 1) (the last one in (0, 1])")
        log_abar = torch.cumsum(torch.log1p(-b), 0)
        if zero_terminal_snr:
            abar = rescale_zero_terminal_snr(log_abar.exp())
            log_abar = abar.log()
            b = 1 - abar / torch.cat([abar.new_ones(1), abar[:-1]])
        self.betas = b
        self.alphas_cumprod = log_abar.exp()
        self.num_train_timesteps = n
        self.timesteps = torch.arange(n, dtype=torch.float64)
        self.log_sigmas = 0.5 * torch.log(torch.expm1(-log_abar))
        self.sigmas = self.log_sigmas.exp()
        self.zero_terminal = bool(torch.isinf(self.log_sigmas[-1]))
        m = n - 1 if self.zero_terminal else n
        finite = self.log_sigmas[:m]
        if bool((finite[1:] <= finite[:-1]).any()):
            raise DiffsampleError("ᾱ must be strictly decreasing (betas too small to change it in float64)")
        self._finite = finite
        self._lerp_table = torch.cat([finite, finite[-1:]]) if self.zero_terminal else finite
        self._alpha_last_finite = float(self.alphas_cumprod[m - 1].sqrt())
        self.t_min, self.t_max = 0.0, float(n - 1)
        self.sigma_min, self.sigma_max = float(self.sigmas[0]), float(self.sigmas[m - 1])

    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any]) -> DiscreteVP:
        """Build from a diffusers scheduler config (``beta_schedule``, ``num_train_timesteps``,
        ``beta_start``, ``beta_end``, ``trained_betas``, ``rescale_betas_zero_snr``)."""
        ztsnr = bool(config.get("rescale_betas_zero_snr", False))
        if config.get("trained_betas") is not None:
            return cls(config["trained_betas"], zero_terminal_snr=ztsnr)
        return cls(
            beta_schedule=config.get("beta_schedule", "linear"),
            num_train_timesteps=config.get("num_train_timesteps", 1000),
            beta_start=config.get("beta_start"),
            beta_end=config.get("beta_end"),
            zero_terminal_snr=ztsnr,
        )

    def _params(self) -> dict[str, Any]:
        return dict(self._cfg)

    def _log_sigma_space(self, t: torch.Tensor) -> torch.Tensor:
        n = self.num_train_timesteps
        tc = t.clamp(0, n - 1)
        lo = tc.floor().clamp(max=n - 2)
        w = tc - lo
        idx = lo.long()
        table = self._lerp_table.to(t.device)
        ls = torch.lerp(table[idx], table[idx + 1], w)
        if self.zero_terminal:
            a = self._alpha_last_finite * (1 - w)  # α linear on the last interval
            ls_last = 0.5 * torch.log1p(-a * a) - torch.log(a)  # log(sqrt(1 − α²)/α), inf at α = 0
            ls = torch.where(idx == n - 2, ls_last, ls)
        return ls

    def _t_of_log_sigma_space(self, ls: torch.Tensor) -> torch.Tensor:
        f = self._finite.to(ls.device)
        flat = ls.reshape(-1).contiguous()
        idx = (torch.searchsorted(f, flat, right=True) - 1).clamp(0, f.numel() - 2)
        w = ((flat - f[idx]) / (f[idx + 1] - f[idx])).clamp(0, 1)
        t = idx.to(torch.float64) + w
        if self.zero_terminal:
            a = torch.exp(-0.5 * _softplus(2 * flat))
            t = torch.where(flat > f[-1], (self.num_train_timesteps - 1) - a / self._alpha_last_finite, t)
        return t.reshape(ls.shape)

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * _softplus(2 * self._log_sigma_space(t)))

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * _softplus(-2 * self._log_sigma_space(t)))

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return -self._log_sigma_space(t)

    def _sigma_space(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self._log_sigma_space(t))

    def _t_of_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        return self._t_of_log_sigma_space(-lam)

    def _t_of_sigma_space(self, s: torch.Tensor) -> torch.Tensor:
        return self._t_of_log_sigma_space(torch.log(s))


# ---------------------------------------------------------------------------------------------
# Continuous-time VP
# ---------------------------------------------------------------------------------------------


class ContinuousVPLinear(_VP):
    """Score-SDE VP with linear β(t) = β_min + t(β_max − β_min) (Song et al. 2021; DPM-Solver 'linear').

    ``log α(t) = −¼ t² (β_max − β_min) − ½ t β_min``. Inverse (DPM-Solver, stable form): with
    ``L = −log ᾱ ≥ 0``, ``t = 2L / (β_min + sqrt(β_min² + 2(β_max − β_min)L))``.
    Time domain ``[0, T]``; sampling span ``[σ_space(eps), σ_space(T)]``.
    """

    name = "vp_linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, eps: float = 1e-3) -> None:
        if not (0 <= beta_min <= beta_max and beta_max > 0):
            raise DiffsampleError(f"need 0 <= beta_min <= beta_max, beta_max > 0; got {beta_min}, {beta_max}")
        if not 0 < eps < T:
            raise DiffsampleError(f"need 0 < eps < T, got eps={eps}, T={T}")
        self.beta_min, self.beta_max, self.T, self.eps = float(beta_min), float(beta_max), float(T), float(eps)
        self._set_time_domain(self.T, self.eps)

    def _params(self) -> dict[str, Any]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "T": self.T, "eps": self.eps}

    def _log_alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * t * t * (self.beta_max - self.beta_min) - t * self.beta_min

    def _t_of_log_alpha_bar(self, lab: torch.Tensor) -> torch.Tensor:
        big = torch.isinf(lab)
        L = torch.where(big, torch.zeros_like(lab), -lab)
        b0, d = self.beta_min, self.beta_max - self.beta_min
        t = 2 * L / (b0 + torch.sqrt(b0 * b0 + 2 * d * L))
        return torch.where(big, torch.full_like(t, math.inf), t)


class ContinuousVPCosine(_VP):
    """Nichol & Dhariwal's cosine schedule in continuous time (DPM-Solver's NoiseScheduleVP 'cosine').

    ``α(t) = cos((t + s)/(1 + s) · π/2) / cos(s/(1 + s) · π/2)``; inverse
    ``t = 2(1 + s)/π · arccos(α · cos(s/(1 + s) · π/2)) − s``. The time domain is ``[0, T]`` with
    DPM-Solver's ``T = 0.9946`` (β(t) blows up as t → 1); sampling span ``[σ_space(eps), σ_space(T)]``.
    """

    name = "vp_cosine"

    def __init__(self, s: float = 0.008, T: float = 0.9946, eps: float = 1e-3) -> None:
        if not s >= 0:
            raise DiffsampleError(f"s must be >= 0, got {s}")
        if not 0 < eps < T <= 1:
            raise DiffsampleError(f"need 0 < eps < T <= 1, got eps={eps}, T={T}")
        self.s, self.T, self.eps = float(s), float(T), float(eps)
        self._log_cos0 = math.log(math.cos(self.s / (1 + self.s) * math.pi / 2))
        self._set_time_domain(self.T, self.eps)

    def _params(self) -> dict[str, Any]:
        return {"s": self.s, "T": self.T, "eps": self.eps}

    def _log_alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        c = torch.cos((t + self.s) / (1 + self.s) * (math.pi / 2)).clamp(min=0)
        return (2 * (torch.log(c) - self._log_cos0)).clamp(max=0)  # exact 0 at t = 0 despite round-off

    def _t_of_log_alpha_bar(self, lab: torch.Tensor) -> torch.Tensor:
        a = torch.exp(0.5 * lab + self._log_cos0).clamp(max=1)
        return torch.arccos(a) * (2 * (1 + self.s) / math.pi) - self.s


# ---------------------------------------------------------------------------------------------
# α = 1 schedules and flow matching
# ---------------------------------------------------------------------------------------------


class _UnitAlpha(NoiseSchedule):
    """Schedules with ``α = 1`` (VE, EDM): the σ-space level is the model's own σ, sampled on a finite span."""

    def _set_sigma_span(self, sigma_min: float, sigma_max: float) -> None:
        if not 0 < sigma_min < sigma_max < math.inf:
            raise DiffsampleError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def _sigma_space(self, t: torch.Tensor) -> torch.Tensor:
        return self._sigma(t)


class VE(_UnitAlpha):
    """Variance exploding (Song et al. 2021): ``α = 1``, ``σ(t) = σ_min (σ_max/σ_min)^t`` on ``t ∈ [0, 1]``.

    Inverse ``t = log(σ/σ_min) / log(σ_max/σ_min)`` (it extrapolates; the wrapper clamps to [0, 1]).
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        self._set_sigma_span(sigma_min, sigma_max)
        self.t_min, self.t_max = 0.0, 1.0
        self._log_min, self._log_ratio = math.log(self.sigma_min), math.log(self.sigma_max / self.sigma_min)

    def _params(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self._log_min + t * self._log_ratio)

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return -(self._log_min + t * self._log_ratio)

    def _t_of_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        return (-lam - self._log_min) / self._log_ratio


def edm_preconditioning(
    sigma: TimeLike, sigma_data: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM preconditioning (Karras et al. 2022, Table 1): ``D(x, σ) = c_skip x + c_out F(c_in x, c_noise)``.

    ``c_skip = σ_d²/(σ² + σ_d²)``, ``c_out = σ σ_d / sqrt(σ² + σ_d²)``, ``c_in = 1/sqrt(σ² + σ_d²)``,
    ``c_noise = ¼ ln σ``. Returns ``(c_skip, c_out, c_in, c_noise)`` as float64 tensors.
    """
    s = _f64(sigma)
    total = s * s + sigma_data**2
    return sigma_data**2 / total, s * sigma_data / total.sqrt(), total.rsqrt(), 0.25 * torch.log(s)


class EDM(_UnitAlpha):
    """Karras et al. (2022): ``α = 1``, ``σ(t) = t``, so native time *is* the σ-space level.

    The time domain is ``[0, inf)`` (an EDM network accepts any σ through its preconditioning);
    ``sigma_min = 0.002`` and ``sigma_max = 80`` are only the sampling span.
    """

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5) -> None:
        self._set_sigma_span(sigma_min, sigma_max)
        if not sigma_data > 0:
            raise DiffsampleError(f"sigma_data must be > 0, got {sigma_data}")
        self.sigma_data = float(sigma_data)
        self.t_min, self.t_max = 0.0, math.inf

    def _params(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "sigma_data": self.sigma_data}

    def preconditioning(self, sigma: TimeLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c_skip, c_out, c_in, c_noise)`` at σ with this schedule's ``sigma_data`` (:func:`edm_preconditioning`)."""
        return edm_preconditioning(sigma, self.sigma_data)

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return t.clone()

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log(t)

    def _t_of_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        return torch.exp(-lam)

    def _t_of_sigma_space(self, s: torch.Tensor) -> torch.Tensor:
        return s.clone()


def _check_shift(shift: float) -> None:
    if not shift > 0:
        raise DiffsampleError(f"shift must be > 0, got {shift}")


def resolution_shift(t: TimeLike, shift: float) -> torch.Tensor:
    """SD3's timestep shift (Esser et al. 2024, eq. 23): ``t' = shift·t / (1 + (shift − 1) t)``.

    In σ-space it is a plain scaling, ``t'/(1 − t') = shift · t/(1 − t)``; it fixes 0 and 1, and
    ``resolution_shift(·, 1/shift)`` is its inverse.
    """
    _check_shift(shift)
    t = _f64(t)
    return shift * t / (1 + (shift - 1) * t)


class RectifiedFlow(NoiseSchedule):
    """Flow matching / rectified flow (Liu et al. 2023; Lipman et al. 2023): ``x_t = (1 − t) x0 + t ε``.

    ``α = 1 − t``, ``σ = t``, ``σ_space = t/(1 − t)``, ``λ = log((1 − t)/t)``, inverse
    ``t = 1/(1 + 1/σ_space) = sigmoid(−λ)``. The time domain is ``[0, 1]``; ``t = 1`` is σ = inf
    (returned as inf, and ``t_of_sigma_space(inf) = 1``, no NaN).

    ``shift`` (SD3's resolution shift, :func:`resolution_shift`) does not change α or σ, which are
    the network's own; it changes which times are sampled: :meth:`sampling_time` maps a sampling
    time ``u`` to ``t = resolution_shift(u, shift)``, i.e. every σ-space level is multiplied by
    ``shift``. The sampling span is ``u ∈ [eps, 1 − eps]``: ``sigma_min = shift·eps/(1 − eps)``,
    ``sigma_max = shift·(1 − eps)/eps`` (finite; 2997 for SD3's shift = 3 and the default eps = 1e-3).
    """

    name = "rectified_flow"

    def __init__(self, shift: float = 1.0, eps: float = 1e-3) -> None:
        _check_shift(shift)
        if not 0 < eps < 0.5:
            raise DiffsampleError(f"need 0 < eps < 0.5, got {eps}")
        self.shift, self.eps = float(shift), float(eps)
        self.t_min, self.t_max = 0.0, 1.0
        # = sigma_space(sampling_time(u)) at u = eps, 1 − eps, written exactly
        self.sigma_min = self.shift * self.eps / (1 - self.eps)
        self.sigma_max = self.shift * (1 - self.eps) / self.eps

    def _params(self) -> dict[str, Any]:
        return {"shift": self.shift, "eps": self.eps}

    def sampling_time(self, u: TimeLike) -> torch.Tensor:
        """``resolution_shift(u, shift)``: the native time at sampling time u."""
        return resolution_shift(u, self.shift)

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - t

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return t.clone()

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return torch.log1p(-t) - torch.log(t)

    def _sigma_space(self, t: torch.Tensor) -> torch.Tensor:
        return t / (1 - t)

    def _t_of_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-lam)

    def _t_of_sigma_space(self, s: torch.Tensor) -> torch.Tensor:
        return 1 / (1 + 1 / s)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def _named_discrete(beta_schedule: str) -> Callable[..., NoiseSchedule]:
    def make(**kwargs: Any) -> NoiseSchedule:
        return DiscreteVP(beta_schedule=beta_schedule, **kwargs)

    return make


_SCHEDULES: dict[str, Callable[..., NoiseSchedule]] = {
    "discrete_vp": DiscreteVP,
    "linear": _named_discrete("linear"),
    "scaled_linear": _named_discrete("scaled_linear"),
    "squaredcos_cap_v2": _named_discrete("squaredcos_cap_v2"),
    "vp_linear": ContinuousVPLinear,
    "vp_cosine": ContinuousVPCosine,
    "ve": VE,
    "edm": EDM,
    "rectified_flow": RectifiedFlow,
    "flow": RectifiedFlow,
}


def available_schedules() -> list[str]:
    """Names :func:`get_schedule` accepts ("linear", "scaled_linear", "squaredcos_cap_v2" are DDPM tables)."""
    return sorted(_SCHEDULES)


def get_schedule(name: str, **kwargs: Any) -> NoiseSchedule:
    """Build the schedule registered under ``name`` with constructor keyword arguments ``kwargs``."""
    try:
        factory = _SCHEDULES[name]
    except KeyError:
        raise UnknownNameError("noise schedule", name, list(_SCHEDULES)) from None
    return factory(**kwargs)
