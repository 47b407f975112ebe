"""Step schedules in a noise schedule's own time: uniform time steps (with diffusers' timestep spacings
on DDPM tables), steps uniform in ``sqrt(t)``, and the continuous VP SDE's uniform time steps."""

from __future__ import annotations

import math

import torch

from ..errors import SigmaError, UnknownNameError
from ..schedules import DiscreteVP, NoiseSchedule
from ._assignment import assign_unique
from ._common import check_n, check_span, finish, np_linspace, pin_ends, ramp
from ._deprecated import accepts_old_schedule_keyword
from ._noise_time import ZERO_SNR_SIGMA, continuous_span, table_levels, table_span, time_levels

__all__ = ["SPACINGS", "ZERO_SNR_SIGMA", "time_quadratic", "time_uniform", "vp_continuous", "vp_continuous_between"]

SPACINGS = ("leading", "linspace", "trailing")
"""diffusers' timestep spacings on DDPM tables (:func:`time_uniform`)."""


@accepts_old_schedule_keyword
def time_uniform(
    n: int,
    noise_schedule: NoiseSchedule,
    *,
    spacing: str = "linspace",
    steps_offset: int = 0,
    t_min: float | None = None,
    t_max: float | None = None,
    return_timesteps: bool = False,
    append_zero: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Steps uniform in the noise schedule's time (DDPM/DDIM's "uniform" skip, Ho et al. 2020, Song et al. 2021;
    DPM-Solver's "time_uniform", Lu et al. 2022).

    **DDPM tables** (:class:`DiscreteVP`, ``N`` training timesteps): integer timesteps exactly as
    diffusers' ``DDIMScheduler.set_timesteps`` makes them (the spacings of Lin et al. 2024, "Common
    Diffusion Noise Schedules and Sample Steps are Flawed", Table 2), and the table's own levels:

    * ``"linspace"``: ``round(linspace(0, N−1, n))`` reversed (numpy's round-half-to-even);
      ``t_min``/``t_max`` replace 0 and ``N−1``;
    * ``"leading"``: ``arange(n)·(N // n)`` reversed, plus ``steps_offset`` (SD's configs use 1);
    * ``"trailing"``: ``round(arange(N, 0, −N/n)) − 1``.

    ``steps_offset`` is ignored by the other spacings, as in diffusers. ``EulerDiscreteScheduler``
    gives the same ``leading``/``trailing`` timesteps, but its ``linspace`` keeps fractional timesteps
    and interpolates σ linearly, which is not reproduced here. Two deviations from diffusers, both where
    diffusers is off: for ``n`` such as 61 of 1000, numpy's float ``arange`` makes ``n + 1`` trailing
    timesteps ending in −1; here there are always ``n``. And ``linspace`` with ``n = 1`` gives
    ``[N−1]``, not numpy's ``[0]``. On a zero-terminal-SNR table timestep ``N−1`` (σ = ∞) gets
    σ = :data:`ZERO_SNR_SIGMA`, as diffusers' Euler scheduler does.

    **Continuous schedules**: ``n`` sampling times ``u`` uniform from ``t_max`` down to ``t_min``
    (default: the times of ``noise_schedule.sigma_max`` and ``sigma_min``), mapped through
    ``noise_schedule.sampling_time`` (so a :class:`~diffsample.schedules.RectifiedFlow`'s SD3 shift applies)
    to native times and σ-space levels. Only ``spacing="linspace"`` applies.

    With ``return_timesteps=True`` returns ``(sigmas, timesteps)``: the ``n`` native times of the levels
    (int64 on a table, float64 otherwise), without an entry for the trailing 0.
    """
    n = check_n(n)
    if spacing not in SPACINGS:
        raise UnknownNameError("timestep spacing", spacing, list(SPACINGS))
    if isinstance(noise_schedule, DiscreteVP):
        big_n = noise_schedule.num_train_timesteps
        if n > big_n:
            raise SigmaError(f"n = {n} steps exceed the table's {big_n} timesteps")
        if spacing != "linspace" and (t_min is not None or t_max is not None):
            raise SigmaError(f"t_min/t_max apply only to spacing='linspace', not {spacing!r}")
        if spacing == "linspace":
            lo, hi = table_span(noise_schedule, t_min, t_max)
            ts = torch.tensor([hi], dtype=torch.float64) if n == 1 else np_linspace(lo, hi, n).round().flip(0)
        elif spacing == "leading":
            ts = (torch.arange(n, dtype=torch.float64) * (big_n // n)).flip(0) + int(steps_offset)
            if int(ts[0]) > big_n - 1 or int(ts[-1]) < 0:
                raise SigmaError(
                    f"leading timesteps {int(ts[-1])}…{int(ts[0])} with steps_offset={steps_offset} leave the "
                    f"table's range 0…{big_n - 1}"
                )
        else:  # trailing: numpy's float arange is start + i·((start + step) − start)
            delta = (big_n - big_n / n) - big_n
            ts = torch.round(torch.arange(n, dtype=torch.float64) * delta + big_n) - 1
        timesteps = ts.to(torch.int64)
        levels = table_levels(noise_schedule, timesteps)
    else:
        if spacing != "linspace":
            raise SigmaError(f"spacing={spacing!r} is defined for DDPM tables (DiscreteVP) only")
        lo, hi = continuous_span(noise_schedule, t_min, t_max)
        u = torch.tensor([hi], dtype=torch.float64) if n == 1 else np_linspace(lo, hi, n).flip(0)
        timesteps, levels = time_levels(noise_schedule, u)
        if t_max is None:
            levels[0] = noise_schedule.sigma_max
        if t_min is None and n > 1:
            levels[-1] = noise_schedule.sigma_min
    sigmas = finish(levels, append_zero)
    return (sigmas, timesteps) if return_timesteps else sigmas


@accepts_old_schedule_keyword
def time_quadratic(
    n: int,
    noise_schedule: NoiseSchedule,
    *,
    t_min: float | None = None,
    t_max: float | None = None,
    quantize: bool = False,
    return_timesteps: bool = False,
    append_zero: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Steps uniform in ``sqrt(t)``: DDIM's "quadratic" sequence (Song, Meng & Ermon 2021, §D.2, used for
    CIFAR10) and DPM-Solver's "time_quadratic" (Lu et al. 2022): ``t_i = (√t_lo + i/(n−1)(√t_hi − √t_lo))²``,
    walked from ``t_hi`` down, so the steps are dense near the data.

    The span defaults to the whole table ``[0, N−1]`` for a :class:`DiscreteVP` and to the times of
    ``noise_schedule.sigma_min``/``sigma_max`` otherwise (sampling times, mapped through
    ``noise_schedule.sampling_time``). Fractional table times get log-linearly interpolated levels.
    ``quantize=True`` (tables only) floors the times to integer timesteps like DDIM's ``int(·)``;
    timesteps that floor to the same integer (``n ≳ sqrt(t_hi)``) are moved to the nearest free ones
    (:func:`to_timesteps`' assignment), so no step is lost. DDIM's own sequence is
    ``time_quadratic(n, table, t_max=0.8 * N, quantize=True)``, i.e. ``int((linspace(0, √(0.8N), n))²)``.
    ``return_timesteps`` as in :func:`time_uniform`.
    """
    n = check_n(n)
    table = isinstance(noise_schedule, DiscreteVP)
    if quantize and not table:
        raise SigmaError("quantize=True needs a DDPM table (DiscreteVP)")
    lo, hi = table_span(noise_schedule, t_min, t_max) if table else continuous_span(noise_schedule, t_min, t_max)
    if lo < 0:
        raise SigmaError(f"time_quadratic needs t_min >= 0, got {lo}")
    u = torch.tensor([hi], dtype=torch.float64) if n == 1 else np_linspace(math.sqrt(lo), math.sqrt(hi), n) ** 2
    if quantize:
        assert isinstance(noise_schedule, DiscreteVP)
        if n > int(math.floor(hi)) + 1:
            raise SigmaError(f"n = {n} integer timesteps do not fit in [0, {math.floor(hi)}]")
        grid = torch.arange(int(math.floor(hi)) + 1, dtype=torch.float64)
        timesteps = assign_unique(u.floor(), grid).flip(0)
        levels = table_levels(noise_schedule, timesteps)
    else:
        timesteps, levels = time_levels(noise_schedule, u.flip(0))
    sigmas = finish(levels, append_zero)
    return (sigmas, timesteps) if return_timesteps else sigmas


def vp_continuous(
    n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3, *, append_zero: bool = True
) -> torch.Tensor:
    """Uniform time steps of the continuous VP SDE (Song et al. 2021; EDM's "VP" column, Karras et al. 2022,
    Table 1; k-diffusion's ``get_sigmas_vp``): ``t_i`` linear from 1 to ``eps_s``,
    ``σ_i = sqrt(exp(β_d t_i²/2 + β_min t_i) − 1)`` (computed with ``expm1``).
    """
    n = check_n(n)
    if not 0 < eps_s < 1:
        raise SigmaError(f"need 0 < eps_s < 1, got {eps_s}")
    if not (math.isfinite(beta_d) and math.isfinite(beta_min)):
        raise SigmaError(f"beta_d and beta_min must be finite, got {beta_d}, {beta_min}")
    # β(t) = β_min + β_d t must be > 0 on [eps_s, 1] (it is linear: check both ends), and σ(eps_s) > 0
    if beta_min + beta_d * eps_s <= 0 or beta_min + beta_d <= 0 or beta_d * eps_s**2 / 2 + beta_min * eps_s <= 0:
        raise SigmaError(f"beta_d={beta_d}, beta_min={beta_min} do not give σ(t) increasing on [{eps_s}, 1]")
    return finish(_vp_levels(n, beta_d, beta_min, eps_s), append_zero)


def _vp_levels(n: int, beta_d: float, beta_min: float, eps_s: float) -> torch.Tensor:
    t = 1 + ramp(n) * (eps_s - 1)
    return torch.sqrt(torch.expm1(beta_d * t * t / 2 + beta_min * t))


def vp_continuous_between(
    n: int, sigma_min: float, sigma_max: float, eps_s: float = 1e-3, *, append_zero: bool = True
) -> torch.Tensor:
    """:func:`vp_continuous` on ``[σ_min, σ_max]``: ``β_d, β_min`` fitted so that ``σ(1) = σ_max`` and
    ``σ(eps_s) = σ_min``. With ``L(σ) = log(1 + σ²)``, ``β_d = 2(L(σ_max) − L(σ_min)/ε)/(1 − ε)`` and
    ``β_min = L(σ_max) − β_d/2``; the end points are then set exactly."""
    check_span(n, sigma_min, sigma_max)
    l_max, l_min = math.log1p(sigma_max * sigma_max), math.log1p(sigma_min * sigma_min)
    beta_d = 2 * (l_max - l_min / eps_s) / (1 - eps_s)
    beta_min = l_max - beta_d / 2
    vp_continuous(2, beta_d, beta_min, eps_s)  # parameter checks
    return finish(pin_ends(_vp_levels(n, beta_d, beta_min, eps_s), sigma_max, sigma_min), append_zero)
