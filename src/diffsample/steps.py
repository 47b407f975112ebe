"""Step schedules: the decreasing arrays of noise levels ``[σ_max, …, σ_min, 0]`` a solver walks.

Schedules are values (1-D float64 tensors), not flags. Every constructor returns ``n`` noise levels
from ``sigma_max`` down to ``sigma_min`` followed by a trailing ``0`` (``append_zero=False`` drops
it and ends at ``sigma_min``), so ``n`` is the number of solver steps; any array a user brings is
accepted after :func:`validate` (:func:`from_array`).

Families:

* spans in σ: :func:`karras`, :func:`logsnr` (= :func:`exponential`), :func:`polyexponential`,
  :func:`kl_optimal`, :func:`laplace`, :func:`beta_schedule`, :func:`linear_quadratic`;
* in a noise schedule's own time: :func:`time_uniform` (with diffusers' ``linspace`` / ``leading`` /
  ``trailing`` timestep spacings on DDPM tables), :func:`time_quadratic`, :func:`vp_continuous`;
* published tables: :func:`align_your_steps`, :func:`gits`;
* composition: :func:`truncate`, :func:`shift`, :func:`insert_sigma_min`, :func:`to_timesteps`.

:data:`SCHEDULES` maps names to uniform entries ``entry(n, sigma_min, sigma_max, *, schedule=None,
append_zero=True, **options)``; :func:`get` looks one up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .errors import DiffsampleError, SigmaError, UnknownNameError
from .schedules import DiscreteVP, NoiseSchedule, RectifiedFlow, resolution_shift

__all__ = [
    "AYS_TIMESTEPS",
    "SCHEDULES",
    "align_your_steps",
    "beta_schedule",
    "exponential",
    "from_array",
    "get",
    "gits",
    "insert_sigma_min",
    "karras",
    "kl_optimal",
    "laplace",
    "linear_quadratic",
    "logsnr",
    "polyexponential",
    "shift",
    "time_quadratic",
    "time_uniform",
    "to_timesteps",
    "truncate",
    "validate",
    "vp_continuous",
]

ZERO_SNR_SIGMA = math.sqrt(2.0**24 - 1)
"""σ used for a zero-terminal-SNR timestep (σ = ∞): diffusers' convention ``ᾱ = 2^-24``, σ ≈ 4096."""

SPACINGS = ("leading", "linspace", "trailing")


def validate(sigmas: torch.Tensor | Sequence[float], *, name: str = "sigmas") -> torch.Tensor:
    """Check a step schedule and return it as a 1-D float64 CPU tensor.

    Requirements: at least 2 entries, all finite, none negative, strictly decreasing
    (a zero may only be the last entry, which strict decrease already implies).
    """
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    if s.dim() != 1:
        raise SigmaError(f"{name} must be 1-D, got shape {tuple(s.shape)}")
    if s.numel() < 2:
        raise SigmaError(f"{name} needs at least 2 entries (a start and an end), got {s.numel()}")
    if not torch.isfinite(s).all():
        bad = int((~torch.isfinite(s)).nonzero()[0])
        raise SigmaError(f"{name}[{bad}] = {s[bad].item()} is not finite; all sigmas must be finite")
    if (s < 0).any():
        bad = int((s < 0).nonzero()[0])
        raise SigmaError(f"{name}[{bad}] = {s[bad].item()} is negative; sigmas must be >= 0")
    diff = s[1:] - s[:-1]
    if (diff >= 0).any():
        bad = int((diff >= 0).nonzero()[0])
        raise SigmaError(
            f"{name} must be strictly decreasing, but {name}[{bad}] = {s[bad].item():.6g} "
            f"<= {name}[{bad + 1}] = {s[bad + 1].item():.6g}"
        )
    return s


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _check_n(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise SigmaError(f"n (number of noise levels) must be a positive integer, got {n!r}")
    return int(n)


def _check_span(n: int, sigma_min: float, sigma_max: float) -> None:
    _check_n(n)
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max)):
        raise SigmaError(f"sigma_min and sigma_max must be finite, got {sigma_min}, {sigma_max}")
    if not 0 < sigma_min < sigma_max:
        raise SigmaError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def _finish(levels: torch.Tensor, append_zero: bool) -> torch.Tensor:
    levels = levels.to(torch.float64)
    if append_zero:
        levels = torch.cat([levels, levels.new_zeros(1)])
    return validate(levels)


def _pin_ends(levels: torch.Tensor, first: float, last: float) -> torch.Tensor:
    """Set the end points exactly (closed forms lose an ulp or two to round-off)."""
    levels[0] = first
    if levels.numel() > 1:
        levels[-1] = last
    return levels


def _ramp(n: int) -> torch.Tensor:
    """``i/(n−1)`` for ``i = 0 … n−1`` (``[0]`` when n = 1)."""
    if n == 1:
        return torch.zeros(1, dtype=torch.float64)
    return torch.arange(n, dtype=torch.float64) / (n - 1)


def _np_linspace(start: float, stop: float, n: int) -> torch.Tensor:
    """``numpy.linspace(start, stop, n)`` with numpy's own arithmetic (``start + i·step``, last = stop).

    torch's linspace fills from both ends, which can move a value across a ``.5`` rounding boundary;
    reproducing diffusers' rounded timesteps needs numpy's exact values.
    """
    if n == 1:
        return torch.tensor([float(start)], dtype=torch.float64)
    step = (stop - start) / (n - 1)
    out = torch.arange(n, dtype=torch.float64) * step + start
    out[-1] = stop
    return out


def _positive(value: float, what: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise SigmaError(f"{what} must be a finite number > 0, got {value}")
    return value


def _inverse_sampling_time(schedule: NoiseSchedule, t: torch.Tensor) -> torch.Tensor:
    """Sampling time ``u`` with ``schedule.sampling_time(u) = t`` (closed form, or bisection)."""
    if isinstance(schedule, RectifiedFlow):
        return resolution_shift(t, 1 / schedule.shift)
    if type(schedule).sampling_time is NoiseSchedule.sampling_time:
        return t.to(torch.float64)
    lo_t, hi_t = float(schedule.t_min), float(schedule.t_max)
    if not (math.isfinite(lo_t) and math.isfinite(hi_t)):
        raise DiffsampleError(f"cannot invert {type(schedule).__name__}.sampling_time on an infinite time domain")
    lo = torch.full_like(t, lo_t, dtype=torch.float64)
    hi = torch.full_like(t, hi_t, dtype=torch.float64)
    for _ in range(200):  # sampling_time is increasing; 200 halvings exhaust float64
        mid = 0.5 * (lo + hi)
        below = schedule.sampling_time(mid) < t
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _sampling_time_of_sigma(schedule: NoiseSchedule, sigma: float) -> float:
    """The sampling time ``u`` at which ``schedule`` reaches σ-space level ``sigma``."""
    t = schedule.t_of_sigma_space(torch.tensor(float(sigma), dtype=torch.float64))
    return float(_inverse_sampling_time(schedule, t))


def _table_span(schedule: DiscreteVP, t_min: float | None, t_max: float | None) -> tuple[float, float]:
    last = float(schedule.num_train_timesteps - 1)
    lo = 0.0 if t_min is None else float(t_min)
    hi = last if t_max is None else float(t_max)
    if not 0 <= lo < hi <= last:
        raise SigmaError(f"need 0 <= t_min < t_max <= {last:g} on this table, got t_min={lo}, t_max={hi}")
    return lo, hi


def _continuous_span(schedule: NoiseSchedule, t_min: float | None, t_max: float | None) -> tuple[float, float]:
    lo = _sampling_time_of_sigma(schedule, schedule.sigma_min) if t_min is None else float(t_min)
    hi = _sampling_time_of_sigma(schedule, schedule.sigma_max) if t_max is None else float(t_max)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise SigmaError(f"need finite t_min < t_max, got t_min={lo}, t_max={hi}")
    return lo, hi


def _no_infinite_levels(levels: torch.Tensor) -> torch.Tensor:
    """Replace the σ = ∞ of a zero-terminal-SNR timestep by :data:`ZERO_SNR_SIGMA` (diffusers' choice)."""
    inf = torch.isinf(levels)
    if bool(inf.any()):
        levels = torch.where(inf, torch.full_like(levels, ZERO_SNR_SIGMA), levels)
    return levels


def _table_levels(schedule: DiscreteVP, timesteps: torch.Tensor) -> torch.Tensor:
    return _no_infinite_levels(schedule.sigmas[timesteps.long()].clone())


def _time_levels(schedule: NoiseSchedule, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Native times and σ-space levels at sampling times ``u``."""
    t = schedule.sampling_time(u)
    return t, _no_infinite_levels(schedule.sigma_space(t))


def _nearest(targets: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Index of the nearest entry of the ascending ``grid`` for each target."""
    hi = torch.searchsorted(grid, targets).clamp(1, grid.numel() - 1)
    lo = hi - 1
    return torch.where((targets - grid[lo]).abs() <= (grid[hi] - targets).abs(), lo, hi)


def _assign_unique(targets: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Strictly increasing indices ``k_0 < … < k_{n−1}`` into the ascending ``grid`` that minimise
    ``Σ_i (grid[k_i] − targets_i)²`` for ascending ``targets`` (dynamic programming, O(n·K)).

    Where the nearest indices are already distinct they are returned unchanged (they are optimal).
    """
    n, k_count = targets.numel(), grid.numel()
    if n > k_count:
        raise SigmaError(f"cannot place {n} distinct levels on a table of {k_count} timesteps")
    near = _nearest(targets, grid)
    if n == 1 or bool((near[1:] > near[:-1]).all()):
        return near
    ks = torch.arange(k_count)
    inf = torch.tensor([math.inf], dtype=torch.float64)
    prev = (grid - targets[0]) ** 2
    prev[ks > k_count - n] = math.inf
    back = torch.empty((n, k_count), dtype=torch.int64)
    for i in range(1, n):
        best, arg = torch.cummin(prev, 0)  # best[k] = min over k' <= k of prev
        cur = torch.cat([inf, best[:-1]]) + (grid - targets[i]) ** 2  # predecessor strictly below k
        cur[(ks < i) | (ks > k_count - n + i)] = math.inf
        back[i, 1:] = arg[:-1]
        prev = cur
    out = [int(torch.argmin(prev))]
    for i in range(n - 1, 0, -1):
        out.append(int(back[i, out[-1]]))
    return torch.tensor(out[::-1], dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# σ-span schedules
# ---------------------------------------------------------------------------------------------


def karras(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *, append_zero: bool = True
) -> torch.Tensor:
    """Karras et al. (2022, EDM, eq. 5): ``σ_i = (σ_max^{1/ρ} + i/(n-1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``.

    ``rho=7`` is EDM's choice; ``rho=1`` is uniform in σ and ``rho → ∞`` tends to :func:`logsnr`.
    """
    _check_span(n, sigma_min, sigma_max)
    if rho <= 0:
        raise SigmaError(f"rho must be > 0, got {rho}")
    if n == 1:
        return _finish(torch.tensor([sigma_max], dtype=torch.float64), append_zero)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    levels = (hi + ramp * (lo - hi)) ** rho
    levels[0], levels[-1] = sigma_max, sigma_min  # exact end points despite pow round-off
    return _finish(levels, append_zero)


def logsnr(n: int, sigma_min: float, sigma_max: float, *, append_zero: bool = True) -> torch.Tensor:
    """Uniform in log-SNR ``λ = −log σ`` (DPM-Solver's "logSNR" spacing; k-diffusion's exponential)."""
    _check_span(n, sigma_min, sigma_max)
    if n == 1:
        return _finish(torch.tensor([sigma_max], dtype=torch.float64), append_zero)
    levels = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()
    levels[0], levels[-1] = sigma_max, sigma_min
    return _finish(levels, append_zero)


def exponential(n: int, sigma_min: float, sigma_max: float, *, append_zero: bool = True) -> torch.Tensor:
    """k-diffusion's name for :func:`logsnr`: ``σ_i = exp(log σ_max + i/(n−1)(log σ_min − log σ_max))``."""
    return logsnr(n, sigma_min, sigma_max, append_zero=append_zero)


def polyexponential(
    n: int, sigma_min: float, sigma_max: float, rho: float = 1.0, *, append_zero: bool = True
) -> torch.Tensor:
    """k-diffusion's polynomial-in-log-σ schedule: ``log σ_i = log σ_min + r_i^ρ (log σ_max − log σ_min)``
    with ``r_i = 1 − i/(n−1)``.

    ``rho = 1`` is :func:`exponential`; ``rho > 1`` crowds the steps towards σ_min.
    """
    _check_span(n, sigma_min, sigma_max)
    rho = _positive(rho, "rho")
    r = (1 - _ramp(n)) ** rho
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    levels = _pin_ends(torch.exp(lo + r * (hi - lo)), sigma_max, sigma_min)
    return _finish(levels, append_zero)


def kl_optimal(n: int, sigma_min: float, sigma_max: float, *, append_zero: bool = True) -> torch.Tensor:
    """The "KL-optimal" schedule of Sabour, Fidler & Kreis (2024, "Align Your Steps", appendix):
    uniform in ``arctan σ``, ``σ_i = tan((1 − i/(n−1)) atan σ_max + i/(n−1) atan σ_min)``.
    """
    _check_span(n, sigma_min, sigma_max)
    r = _ramp(n)
    levels = torch.tan((1 - r) * math.atan(sigma_max) + r * math.atan(sigma_min))
    return _finish(_pin_ends(levels, sigma_max, sigma_min), append_zero)


def _laplace_cdf(x: float, mu: float, b: float) -> float:
    z = (x - mu) / b
    return 0.5 * math.exp(z) if z < 0 else 1 - 0.5 * math.exp(-z)


def _laplace_quantile(p: torch.Tensor, mu: float, b: float) -> torch.Tensor:
    low = p < 0.5
    return torch.where(low, mu + b * torch.log(2 * p), mu - b * torch.log(2 * (1 - p)))


def laplace(
    n: int, sigma_min: float, sigma_max: float, mu: float = 0.0, beta: float = 0.5, *, append_zero: bool = True
) -> torch.Tensor:
    """Hang et al. (2024), "Improved Noise Schedule for Diffusion Training": levels at the quantiles of a
    Laplace distribution of ``log σ`` (location ``mu``, scale ``beta``), which crowds the steps around
    ``σ = e^mu``, here truncated to ``[σ_min, σ_max]``.

    With the Laplace CDF ``F`` and ``p_i = F(log σ_max) + i/(n−1) (F(log σ_min) − F(log σ_max))``,
    ``log σ_i = F⁻¹(p_i)``, where ``F⁻¹(p) = μ + b log(2p)`` for ``p < ½`` and ``μ − b log(2(1 − p))``
    otherwise. The truncation makes the ends exactly ``σ_max`` and ``σ_min``; ComfyUI's ``laplace``
    scheduler instead spaces ``p`` over ``(0, 1)`` (with a 1e-5 guard) and clamps to the span, which
    repeats the end levels when the span cuts the tails. Accurate while ``|log σ − μ|/b ≲ 30``.
    """
    _check_span(n, sigma_min, sigma_max)
    beta = _positive(beta, "beta (Laplace scale)")
    if not math.isfinite(mu):
        raise SigmaError(f"mu must be finite, got {mu}")
    p_hi, p_lo = _laplace_cdf(math.log(sigma_max), mu, beta), _laplace_cdf(math.log(sigma_min), mu, beta)
    p = p_hi + _ramp(n) * (p_lo - p_hi)
    levels = torch.exp(_laplace_quantile(p, mu, beta))
    return _finish(_pin_ends(levels, sigma_max, sigma_min), append_zero)


def _beta_ppf(q: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    try:
        from scipy.special import betaincinv
    except ImportError as err:  # pragma: no cover - scipy is in every extra that runs this
        raise DiffsampleError("beta_schedule needs scipy (pip install scipy)") from err
    return torch.as_tensor(betaincinv(alpha, beta, q.numpy()), dtype=torch.float64)


def beta_schedule(
    n: int,
    sigma_min: float,
    sigma_max: float,
    alpha: float = 0.6,
    beta: float = 0.6,
    *,
    schedule: NoiseSchedule | None = None,
    append_zero: bool = True,
) -> torch.Tensor:
    """Lee et al. (2024), "Beta Sampling is All You Need": steps at the quantiles of a ``Beta(α, β)``
    distribution, which for ``α, β < 1`` crowds them at both ends of the walk.

    With ``q_i = 1 − i/(n−1)`` and ``P = F⁻¹_{Beta(α,β)}`` (scipy's ``betaincinv``):

    * without ``schedule``, in σ (diffusers' ``use_beta_sigmas``): ``σ_i = σ_min + P(q_i)(σ_max − σ_min)``;
    * with ``schedule``, in its time, as in the paper: ``u_i = u(σ_min) + P(q_i)(u(σ_max) − u(σ_min))``
      in sampling time ``u`` and ``σ_i = σ_space(sampling_time(u_i))``. On a :class:`DiscreteVP` table
      ``u`` is the timestep (σ interpolated log-linearly between entries), so with the table's own span
      this is ComfyUI's ``beta`` scheduler without its rounding: ComfyUI rounds ``P(q)·(N−1)`` to table
      indices, drops the repeats that creates (fewer steps) and uses ``q = 1 − k/n`` (k < n), so its
      last level is above σ_min. ``to_timesteps(beta_schedule(n + 1, …, append_zero=False)[:-1], table)``
      puts the same quantiles on table timesteps (nearest in log σ rather than rounded in t) without
      losing steps; :func:`from_array` ``(…, append_zero=True)`` then adds the final 0.

    Needs scipy.
    """
    _check_span(n, sigma_min, sigma_max)
    alpha, beta = _positive(alpha, "alpha"), _positive(beta, "beta")
    q = _beta_ppf(1 - _ramp(n), alpha, beta)
    if schedule is None:
        levels = sigma_min + q * (sigma_max - sigma_min)
    else:
        lo, hi = _sampling_time_of_sigma(schedule, sigma_min), _sampling_time_of_sigma(schedule, sigma_max)
        _, levels = _time_levels(schedule, lo + q * (hi - lo))
    return _finish(_pin_ends(levels, sigma_max, sigma_min), append_zero)


def vp_continuous(
    n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3, *, append_zero: bool = True
) -> torch.Tensor:
    """Uniform time steps of the continuous VP SDE (Song et al. 2021; EDM's "VP" column, Karras et al. 2022,
    Table 1; k-diffusion's ``get_sigmas_vp``): ``t_i`` linear from 1 to ``eps_s``,
    ``σ_i = sqrt(exp(β_d t_i²/2 + β_min t_i) − 1)`` (computed with ``expm1``).
    """
    n = _check_n(n)
    if not 0 < eps_s < 1:
        raise SigmaError(f"need 0 < eps_s < 1, got {eps_s}")
    if not (math.isfinite(beta_d) and math.isfinite(beta_min)):
        raise SigmaError(f"beta_d and beta_min must be finite, got {beta_d}, {beta_min}")
    # β(t) = β_min + β_d t must be > 0 on [eps_s, 1] (it is linear: check both ends), and σ(eps_s) > 0
    if beta_min + beta_d * eps_s <= 0 or beta_min + beta_d <= 0 or beta_d * eps_s**2 / 2 + beta_min * eps_s <= 0:
        raise SigmaError(f"beta_d={beta_d}, beta_min={beta_min} do not give σ(t) increasing on [{eps_s}, 1]")
    return _finish(_vp_levels(n, beta_d, beta_min, eps_s), append_zero)


def _vp_levels(n: int, beta_d: float, beta_min: float, eps_s: float) -> torch.Tensor:
    t = 1 + _ramp(n) * (eps_s - 1)
    return torch.sqrt(torch.expm1(beta_d * t * t / 2 + beta_min * t))


def linear_quadratic(
    n: int,
    sigma_max: float,
    threshold_noise: float = 0.025,
    linear_steps: int | None = None,
    *,
    append_zero: bool = True,
) -> torch.Tensor:
    """The linear-quadratic schedule of Genmo's Mochi 1 (2024; also used for LTX-Video), in flow time.

    With ``L = linear_steps`` (default ``n // 2``), ``τ = threshold_noise`` and ``Q = n − L``, the
    "progress" ``s_j`` (0 = pure noise, 1 = clean) rises linearly, ``s_j = j τ/L`` for ``j < L``, then
    quadratically, ``s_j = a j² + b j + c`` for ``L ≤ j ≤ n`` with ``a = (L − τ n)/(L Q²)``,
    ``b = τ/L − 2(L − τ n)/Q²``, ``c = a L²``, so that ``s`` is continuous at ``j = L`` (value τ) and
    ``s_n = 1``. The flow times are ``t_j = t_max (1 − s_j)``; Mochi uses ``t_max = 1`` (σ = ∞), so here
    ``t_max = σ_max/(1 + σ_max)``, the flow time of ``sigma_max``, and the levels are ``σ_j = t_j/(1 − t_j)``
    for ``j < n``; ``s_n = 1`` is the trailing 0. (ComfyUI multiplies the flow times by the model's
    ``sigma_max``, which is 1 for flow models.) ``n = 1`` gives ``[σ_max, 0]``.
    """
    n = _check_n(n)
    sigma_max = _positive(sigma_max, "sigma_max")
    if not 0 < threshold_noise < 1:
        raise SigmaError(f"need 0 < threshold_noise < 1, got {threshold_noise}")
    if n == 1:
        return _finish(torch.tensor([sigma_max], dtype=torch.float64), append_zero)
    big_l = n // 2 if linear_steps is None else linear_steps
    if isinstance(big_l, bool) or int(big_l) != big_l or not 1 <= big_l < n:
        raise SigmaError(f"linear_steps must be an integer in [1, n − 1] = [1, {n - 1}], got {linear_steps!r}")
    big_l, tau = int(big_l), float(threshold_noise)
    q = n - big_l
    a = (big_l - tau * n) / (big_l * q * q)
    b = tau / big_l - 2 * (big_l - tau * n) / (q * q)
    j = torch.arange(n, dtype=torch.float64)
    s = torch.where(j < big_l, j * (tau / big_l), a * j * j + b * j + a * big_l * big_l)
    t = (sigma_max / (1 + sigma_max)) * (1 - s)
    levels = t / (1 - t)
    levels[0] = sigma_max
    return _finish(levels, append_zero)


# ---------------------------------------------------------------------------------------------
# schedules in a noise schedule's own time
# ---------------------------------------------------------------------------------------------


def time_uniform(
    n: int,
    schedule: NoiseSchedule,
    *,
    spacing: str = "linspace",
    steps_offset: int = 0,
    t_min: float | None = None,
    t_max: float | None = None,
    return_timesteps: bool = False,
    append_zero: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Steps uniform in the schedule's time (DDPM/DDIM's "uniform" skip, Ho et al. 2020, Song et al. 2021;
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
    (default: the times of ``schedule.sigma_max`` and ``sigma_min``), mapped through
    ``schedule.sampling_time`` (so a :class:`RectifiedFlow`'s SD3 shift applies) to native times
    and σ-space levels. Only ``spacing="linspace"`` applies.

    With ``return_timesteps=True`` returns ``(sigmas, timesteps)``: the ``n`` native times of the levels
    (int64 on a table, float64 otherwise), without an entry for the trailing 0.
    """
    n = _check_n(n)
    if spacing not in SPACINGS:
        raise UnknownNameError("timestep spacing", spacing, list(SPACINGS))
    if isinstance(schedule, DiscreteVP):
        big_n = schedule.num_train_timesteps
        if n > big_n:
            raise SigmaError(f"n = {n} steps exceed the table's {big_n} timesteps")
        if spacing != "linspace" and (t_min is not None or t_max is not None):
            raise SigmaError(f"t_min/t_max apply only to spacing='linspace', not {spacing!r}")
        if spacing == "linspace":
            lo, hi = _table_span(schedule, t_min, t_max)
            ts = torch.tensor([hi], dtype=torch.float64) if n == 1 else _np_linspace(lo, hi, n).round().flip(0)
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
        levels = _table_levels(schedule, timesteps)
    else:
        if spacing != "linspace":
            raise SigmaError(f"spacing={spacing!r} is defined for DDPM tables (DiscreteVP) only")
        lo, hi = _continuous_span(schedule, t_min, t_max)
        u = torch.tensor([hi], dtype=torch.float64) if n == 1 else _np_linspace(lo, hi, n).flip(0)
        timesteps, levels = _time_levels(schedule, u)
        if t_max is None:
            levels[0] = schedule.sigma_max
        if t_min is None and n > 1:
            levels[-1] = schedule.sigma_min
    sigmas = _finish(levels, append_zero)
    return (sigmas, timesteps) if return_timesteps else sigmas


def time_quadratic(
    n: int,
    schedule: NoiseSchedule,
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
    ``schedule.sigma_min``/``sigma_max`` otherwise (sampling times, mapped through
    ``schedule.sampling_time``). Fractional table times get log-linearly interpolated levels.
    ``quantize=True`` (tables only) floors the times to integer timesteps like DDIM's ``int(·)``;
    timesteps that floor to the same integer (``n ≳ sqrt(t_hi)``) are moved to the nearest free ones
    (:func:`to_timesteps`' assignment), so no step is lost. DDIM's own sequence is
    ``time_quadratic(n, table, t_max=0.8 * N, quantize=True)``, i.e. ``int((linspace(0, √(0.8N), n))²)``.
    ``return_timesteps`` as in :func:`time_uniform`.
    """
    n = _check_n(n)
    table = isinstance(schedule, DiscreteVP)
    if quantize and not table:
        raise SigmaError("quantize=True needs a DDPM table (DiscreteVP)")
    lo, hi = _table_span(schedule, t_min, t_max) if table else _continuous_span(schedule, t_min, t_max)
    if lo < 0:
        raise SigmaError(f"time_quadratic needs t_min >= 0, got {lo}")
    u = torch.tensor([hi], dtype=torch.float64) if n == 1 else _np_linspace(math.sqrt(lo), math.sqrt(hi), n) ** 2
    if quantize:
        assert isinstance(schedule, DiscreteVP)
        if n > int(math.floor(hi)) + 1:
            raise SigmaError(f"n = {n} integer timesteps do not fit in [0, {math.floor(hi)}]")
        grid = torch.arange(int(math.floor(hi)) + 1, dtype=torch.float64)
        timesteps = _assign_unique(u.floor(), grid).flip(0)
        levels = _table_levels(schedule, timesteps)
    else:
        timesteps, levels = _time_levels(schedule, u.flip(0))
    sigmas = _finish(levels, append_zero)
    return (sigmas, timesteps) if return_timesteps else sigmas


# ---------------------------------------------------------------------------------------------
# published tables
# ---------------------------------------------------------------------------------------------

_AYS_PROJECT_PAGE: dict[str, tuple[float, ...]] = {
    "sd15": (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029),
    "sdxl": (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029),
    "svd": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}
_AYS_HOWTO: dict[str, tuple[float, ...]] = {
    "sd15": (
        14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
        0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582,
    ),
    "sdxl": (
        14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
        0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582,
    ),
    "svd": _AYS_PROJECT_PAGE["svd"],
}
AYS_TIMESTEPS: dict[str, tuple[int, ...]] = {
    "sd15": (999, 850, 736, 645, 545, 455, 343, 233, 124, 24),
    "sdxl": (999, 845, 730, 587, 443, 310, 193, 116, 53, 13),
}
"""The published 10-step AYS timesteps on SD's 1000-step ``scaled_linear`` table (for diffusers' ``timesteps=``)."""

# GITS (Chen et al. 2024), coefficient 1.20, SD1.5: row k is the (k + 2)-step schedule (k + 3 levels).
_GITS_SD15_120: tuple[tuple[float, ...], ...] = (
    (14.61464119, 0.803307, 0.02916753),
    (14.61464119, 1.56271636, 0.52423614, 0.02916753),
    (14.61464119, 2.36326075, 0.92192322, 0.36617002, 0.02916753),
    (14.61464119, 2.84484982, 1.24153244, 0.59516323, 0.25053367, 0.02916753),
    (14.61464119, 5.85520077, 2.05039096, 0.95350921, 0.45573691, 0.17026083, 0.02916753),
    (14.61464119, 5.85520077, 2.45070267, 1.24153244, 0.64427125, 0.29807833, 0.09824532, 0.02916753),
    (14.61464119, 5.85520077, 2.45070267, 1.36964464, 0.803307, 0.45573691, 0.25053367, 0.09824532, 0.02916753),
    (
        14.61464119, 5.85520077, 2.84484982, 1.61558151, 0.95350921, 0.59516323, 0.36617002, 0.19894916,
        0.09824532, 0.02916753,
    ),
    (
        14.61464119, 5.85520077, 2.84484982, 1.67050016, 1.08895338, 0.74807048, 0.50118381, 0.32104823,
        0.19894916, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 5.85520077, 2.95596409, 1.84880662, 1.24153244, 0.83188516, 0.59516323, 0.41087446,
        0.27464288, 0.17026083, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 5.85520077, 3.07277966, 1.98035145, 1.36964464, 0.95350921, 0.69515091, 0.50118381,
        0.36617002, 0.25053367, 0.17026083, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 6.77309084, 3.46139455, 2.36326075, 1.56271636, 1.08895338, 0.803307, 0.59516323,
        0.45573691, 0.34370604, 0.25053367, 0.17026083, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 6.77309084, 3.46139455, 2.45070267, 1.61558151, 1.162866, 0.86115354, 0.64427125,
        0.50118381, 0.38853383, 0.29807833, 0.22545385, 0.17026083, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.12350607, 1.51179266, 1.08895338, 0.83188516,
        0.64427125, 0.50118381, 0.38853383, 0.29807833, 0.22545385, 0.17026083, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.12350607, 1.51179266, 1.08895338, 0.83188516,
        0.64427125, 0.50118381, 0.41087446, 0.32104823, 0.25053367, 0.19894916, 0.13792117, 0.09824532,
        0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.12350607, 1.51179266, 1.08895338, 0.83188516,
        0.64427125, 0.50118381, 0.41087446, 0.34370604, 0.27464288, 0.22545385, 0.17026083, 0.13792117,
        0.09824532, 0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.19988537, 1.61558151, 1.20157266, 0.92192322,
        0.72133851, 0.57119018, 0.45573691, 0.36617002, 0.29807833, 0.25053367, 0.19894916, 0.17026083,
        0.13792117, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.19988537, 1.61558151, 1.24153244, 0.95350921,
        0.74807048, 0.59516323, 0.4783645, 0.38853383, 0.32104823, 0.27464288, 0.22545385, 0.19894916,
        0.17026083, 0.13792117, 0.09824532, 0.02916753,
    ),
    (
        14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.19988537, 1.61558151, 1.24153244, 0.95350921,
        0.74807048, 0.59516323, 0.50118381, 0.41087446, 0.34370604, 0.29807833, 0.25053367, 0.22545385,
        0.19894916, 0.17026083, 0.13792117, 0.09824532, 0.02916753,
    ),
)
_GITS: dict[tuple[str, float], tuple[tuple[float, ...], ...]] = {("sd15", 1.20): _GITS_SD15_120}


def _loglinear_resample(levels: torch.Tensor, m: int) -> torch.Tensor:
    """AYS's recipe for other step counts: interpolate ``log σ`` linearly over the normalised index
    (``np.interp(linspace(0, 1, m), linspace(0, 1, L), log σ)``), keeping both end points."""
    count = levels.numel()
    if m == count:
        return levels.clone()
    logs = levels.log()
    pos = _ramp(m) * (count - 1)
    lo = pos.floor().long().clamp(max=count - 2)
    out = torch.lerp(logs[lo], logs[lo + 1], pos - lo.to(torch.float64)).exp()
    return _pin_ends(out, float(levels[0]), float(levels[-1]))


def _table_schedule(
    table: Sequence[float], m: int, sigma_min: float | None, sigma_max: float | None, append_zero: bool
) -> torch.Tensor:
    """``m`` levels resampled from a published table, optionally moved to another span, then finished."""
    levels = _loglinear_resample(torch.tensor(table, dtype=torch.float64), m)
    if sigma_min is not None or sigma_max is not None:
        top, bottom = float(table[0]), float(table[-1])
        new_top = top if sigma_max is None else float(sigma_max)
        new_bottom = bottom if sigma_min is None else float(sigma_min)
        _check_span(m, new_bottom, new_top)
        scale = math.log(new_top / new_bottom) / math.log(top / bottom)
        levels = _pin_ends(torch.exp(math.log(new_top) + (levels.log() - math.log(top)) * scale), new_top, new_bottom)
    if append_zero:
        levels[-1] = 0.0  # the published lists end at σ_min; the last step goes to 0 instead
    return validate(levels)


def align_your_steps(
    n: int,
    model: str = "sd15",
    *,
    source: str = "project_page",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    append_zero: bool = True,
) -> torch.Tensor:
    """The published Align-Your-Steps schedules (Sabour, Fidler & Kreis 2024, "Align Your Steps:
    Optimizing Sampling Schedules in Diffusion Models"): 10-step lists of 11 levels ``σ_max … σ_min``
    for ``model`` in ``"sd15"``, ``"sdxl"``, ``"svd"``.

    ``source="project_page"`` gives the 3-decimal lists of the AYS project page (also diffusers'
    ``AysSchedules``); ``source="howto"`` the 10-digit lists of the AYS "how to" page (used by ComfyUI),
    which are exactly SD's ``scaled_linear`` table at the published timesteps :data:`AYS_TIMESTEPS`
    and timestep 0. The two differ by up to 1.5% (SDXL's 0.113 vs 0.1114); SVD has one list.

    ``n`` follows this module's convention: with ``append_zero=True`` the list is resampled to
    ``n + 1`` levels and the last (σ_min) becomes 0, as diffusers and ComfyUI do, so ``n = 10`` gives
    the first 10 published values then 0; with ``append_zero=False`` it is resampled to ``n`` levels
    ending at σ_min, so ``n = 11`` is the published list. Other lengths use AYS's log-linear
    interpolation (:func:`_loglinear_resample`). ``sigma_min``/``sigma_max`` move the published shape
    to another span by the affine map of ``log σ`` that takes the list's ends there.
    """
    n = _check_n(n)
    tables = {"project_page": _AYS_PROJECT_PAGE, "howto": _AYS_HOWTO}
    if source not in tables:
        raise UnknownNameError("AYS source", source, list(tables))
    if model not in tables[source]:
        raise UnknownNameError("AYS model", model, list(tables[source]))
    return _table_schedule(tables[source][model], n + 1 if append_zero else n, sigma_min, sigma_max, append_zero)


def gits(
    n: int,
    model: str = "sd15",
    *,
    coeff: float = 1.20,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    append_zero: bool = True,
) -> torch.Tensor:
    """The published GITS schedules (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion
    Sampling"): for Stable Diffusion 1.5 and coefficient 1.20 (the authors' setting for SD), one list per
    step count 2–20, each a subset of a 301-point time-uniform grid on SD's table found by their
    dynamic programme (tables as distributed with ComfyUI's ``GITSScheduler``).

    Step counts as in :func:`align_your_steps`: ``m = n + 1`` levels with ``append_zero`` (last
    replaced by 0), else ``m = n``; ``m − 1`` steps between 2 and 20 use that list, more steps resample
    the 20-step list log-linearly (ComfyUI's rule), and 1 step resamples the 2-step list.
    """
    n = _check_n(n)
    key = (model, round(float(coeff), 2))
    if key not in _GITS:
        valid = [f"{m} coeff={c:.2f}" for m, c in _GITS]
        raise UnknownNameError("GITS table", f"{model} coeff={coeff}", valid)
    rows = _GITS[key]
    m = n + 1 if append_zero else n
    row = rows[min(max(m - 1, 2), 20) - 2]
    return _table_schedule(row, m, sigma_min, sigma_max, append_zero)


# ---------------------------------------------------------------------------------------------
# values and composition
# ---------------------------------------------------------------------------------------------


def from_array(values: torch.Tensor | Sequence[float], *, append_zero: bool = False) -> torch.Tensor:
    """Any decreasing array of noise levels as a validated float64 schedule; ``append_zero`` adds a final
    0 unless the array already ends in one."""
    v = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    if append_zero and v.dim() == 1 and (v.numel() == 0 or float(v[-1]) != 0.0):
        v = torch.cat([v, v.new_zeros(1)])
    return validate(v)


def truncate(
    sigmas: torch.Tensor | Sequence[float], sigma_max: float | None = None, sigma_min: float | None = None
) -> torch.Tensor:
    """The part of a schedule within ``[sigma_min, sigma_max]``, with the boundary levels inserted.

    ``sigma_max`` below the first level cuts the start and begins exactly at ``sigma_max`` (img2img
    strength, a second pass); ``sigma_min`` above the last level cuts the tail and ends exactly at
    ``sigma_min`` (no trailing 0: compose with :func:`from_array` ``(…, append_zero=True)``).
    A bound outside the schedule's range changes nothing.
    """
    s = validate(sigmas)
    if sigma_max is not None:
        sigma_max = _positive(sigma_max, "sigma_max")
        if sigma_max < float(s[0]):
            s = torch.cat([s.new_tensor([sigma_max]), s[s < sigma_max]])
    if sigma_min is not None:
        sigma_min = float(sigma_min)
        if not (math.isfinite(sigma_min) and sigma_min >= 0):
            raise SigmaError(f"sigma_min must be a finite number >= 0, got {sigma_min}")
        if sigma_min >= float(s[0]):
            raise SigmaError(f"sigma_min = {sigma_min} is not below the schedule's first level {float(s[0]):.6g}")
        if sigma_min > float(s[-1]):
            s = torch.cat([s[s > sigma_min], s.new_tensor([sigma_min])])
    return validate(s, name="truncated sigmas")


def shift(sigmas: torch.Tensor | Sequence[float], factor: float) -> torch.Tensor:
    """Multiply every level by ``factor`` (0 stays 0): SD3's resolution shift (Esser et al. 2024, eq. 23)
    in σ-space, where ``t' = factor·t/(1 + (factor − 1)t)`` is exactly ``σ' = factor·σ``."""
    return validate(validate(sigmas) * _positive(factor, "shift factor"))


def insert_sigma_min(sigmas: torch.Tensor | Sequence[float], sigma_min: float) -> torch.Tensor:
    """Insert ``sigma_min`` before the final 0 (a schedule that ends ``…, σ_min, 0``: diffusers'
    ``final_sigmas_type="sigma_min"`` followed by a last step to 0). Unchanged if already there."""
    s = validate(sigmas)
    sigma_min = _positive(sigma_min, "sigma_min")
    if float(s[-1]) != 0.0:
        raise SigmaError("insert_sigma_min needs a schedule that ends in 0")
    if float(s[-2]) == sigma_min:
        return s
    if float(s[-2]) < sigma_min:
        raise SigmaError(f"the last level before 0 is {float(s[-2]):.6g}, already below sigma_min = {sigma_min}")
    return validate(torch.cat([s[:-1], s.new_tensor([sigma_min, 0.0])]))


def to_timesteps(
    sigmas: torch.Tensor | Sequence[float], schedule: DiscreteVP, *, unique: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a σ schedule onto a DDPM table's integer timesteps: ``(timesteps, sigmas_on_table)``.

    Each positive level goes to the timestep nearest in ``log σ``. Naive nearest-timestep rounding
    repeats timesteps where levels are denser than the table (diffusers' ``use_karras_sigmas`` with
    100 steps on SD's table rounds 5 of them onto a neighbour's timestep). With ``unique=True`` the
    timesteps are instead the strictly decreasing assignment that minimises
    ``Σ_i (log σ_table[k_i] − log σ_i)²`` (dynamic programming over the table), which equals the nearest
    assignment wherever that is already free of repeats, so no step is lost. ``unique=False`` keeps
    the nearest timesteps and drops repeats (fewer steps, diffusers' old ``np.unique`` behaviour).

    ``timesteps`` is int64, decreasing, one per positive level; ``sigmas_on_table`` is the table's
    levels there, followed by 0 if ``sigmas`` ends in 0. A zero-terminal-SNR table's last timestep
    (σ = ∞) is not used.
    """
    if not isinstance(schedule, DiscreteVP):
        raise DiffsampleError(f"to_timesteps needs a DDPM table (DiscreteVP), got {type(schedule).__name__}")
    s = validate(sigmas)
    ends_in_zero = float(s[-1]) == 0.0
    positive = s[:-1] if ends_in_zero else s
    finite = schedule.num_train_timesteps - (1 if schedule.zero_terminal else 0)
    grid = schedule.log_sigmas[:finite]
    targets = positive.log().flip(0)
    idx = _assign_unique(targets, grid) if unique else torch.unique_consecutive(_nearest(targets, grid))
    timesteps = idx.flip(0)
    levels = schedule.sigmas[timesteps].clone()
    if ends_in_zero:
        levels = torch.cat([levels, levels.new_zeros(1)])
    return timesteps, validate(levels)


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------

StepSchedule = Callable[..., torch.Tensor]


def _span(
    name: str, sigma_min: float | None, sigma_max: float | None, schedule: NoiseSchedule | None
) -> tuple[float, float]:
    if (sigma_min is None or sigma_max is None) and schedule is None:
        raise SigmaError(f"step schedule {name!r} needs sigma_min and sigma_max (or schedule= to take them from)")
    lo = float(schedule.sigma_min if sigma_min is None else sigma_min)  # type: ignore[union-attr]
    hi = float(schedule.sigma_max if sigma_max is None else sigma_max)  # type: ignore[union-attr]
    return lo, hi


def _registry_entry(fn: Callable[..., Any], call: Callable[..., torch.Tensor], doc: str) -> StepSchedule:
    """Wrap ``fn`` in the registry's common signature ``(n, sigma_min, sigma_max, *, schedule, append_zero,
    **options)``; ``call(n, sigma_min, sigma_max, schedule, append_zero, options)`` does the work."""

    def entry(
        n: int,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        *,
        schedule: NoiseSchedule | None = None,
        append_zero: bool = True,
        **options: Any,
    ) -> torch.Tensor:
        return call(n, sigma_min, sigma_max, schedule, append_zero, options)

    entry.__name__ = entry.__qualname__ = fn.__name__
    entry.__doc__ = doc
    return entry


def _span_entry(fn: Callable[..., torch.Tensor], *, passes_schedule: bool = False) -> StepSchedule:
    def call(n: int, sigma_min: float | None, sigma_max: float | None, schedule: NoiseSchedule | None,
             append_zero: bool, options: dict[str, Any]) -> torch.Tensor:
        lo, hi = _span(fn.__name__, sigma_min, sigma_max, schedule)
        if passes_schedule:
            options["schedule"] = schedule
        return fn(n, lo, hi, append_zero=append_zero, **options)

    return _registry_entry(
        fn, call, f"Registry entry: :func:`{fn.__name__}` on ``[sigma_min, sigma_max]`` (default: the schedule's)."
    )


def _time_entry(fn: Callable[..., Any]) -> StepSchedule:
    def call(n: int, sigma_min: float | None, sigma_max: float | None, schedule: NoiseSchedule | None,
             append_zero: bool, options: dict[str, Any]) -> torch.Tensor:
        if schedule is None:
            raise SigmaError(f"step schedule {fn.__name__!r} needs schedule=<a NoiseSchedule>")
        t_min = None if sigma_min is None else _sampling_time_of_sigma(schedule, sigma_min)
        t_max = None if sigma_max is None else _sampling_time_of_sigma(schedule, sigma_max)
        return fn(n, schedule, t_min=t_min, t_max=t_max, append_zero=append_zero, **options)

    return _registry_entry(
        fn,
        call,
        f"Registry entry: :func:`{fn.__name__}` on ``schedule`` between the times of ``sigma_max`` and "
        "``sigma_min`` (default: the schedule's own span).",
    )


def _vp_continuous_entry(
    n: int,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    *,
    schedule: NoiseSchedule | None = None,
    append_zero: bool = True,
    eps_s: float = 1e-3,
) -> torch.Tensor:
    """Registry entry: :func:`vp_continuous` with ``β_d, β_min`` fitted so that ``σ(1) = σ_max`` and
    ``σ(eps_s) = σ_min``: with ``L(σ) = log(1 + σ²)``, ``β_d = 2(L(σ_max) − L(σ_min)/ε)/(1 − ε)`` and
    ``β_min = L(σ_max) − β_d/2``."""
    lo, hi = _span("vp_continuous", sigma_min, sigma_max, schedule)
    _check_span(n, lo, hi)
    l_max, l_min = math.log1p(hi * hi), math.log1p(lo * lo)
    beta_d = 2 * (l_max - l_min / eps_s) / (1 - eps_s)
    beta_min = l_max - beta_d / 2
    vp_continuous(2, beta_d, beta_min, eps_s)  # parameter checks
    return _finish(_pin_ends(_vp_levels(n, beta_d, beta_min, eps_s), hi, lo), append_zero)


def _linear_quadratic_entry(
    n: int,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    *,
    schedule: NoiseSchedule | None = None,
    append_zero: bool = True,
    **options: Any,
) -> torch.Tensor:
    """Registry entry: :func:`linear_quadratic` from ``sigma_max``; its lowest positive level is set by
    ``threshold_noise`` and ``n``, so ``sigma_min`` is not used."""
    if sigma_max is None:
        if schedule is None:
            raise SigmaError("step schedule 'linear_quadratic' needs sigma_max (or schedule= to take it from)")
        sigma_max = schedule.sigma_max
    return linear_quadratic(n, sigma_max, append_zero=append_zero, **options)


def _table_entry(fn: Callable[..., torch.Tensor]) -> StepSchedule:
    def entry(
        n: int,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        *,
        schedule: NoiseSchedule | None = None,
        append_zero: bool = True,
        **options: Any,
    ) -> torch.Tensor:
        return fn(n, sigma_min=sigma_min, sigma_max=sigma_max, append_zero=append_zero, **options)

    entry.__name__ = entry.__qualname__ = fn.__name__
    entry.__doc__ = (
        f"Registry entry: :func:`{fn.__name__}`; a given ``[sigma_min, sigma_max]`` receives the published "
        "shape by an affine map of log σ (``None``: the published levels). ``schedule`` is not used."
    )
    return entry


SCHEDULES: dict[str, StepSchedule] = {
    "karras": _span_entry(karras),
    "logsnr": _span_entry(logsnr),
    "exponential": _span_entry(exponential),
    "polyexponential": _span_entry(polyexponential),
    "kl_optimal": _span_entry(kl_optimal),
    "laplace": _span_entry(laplace),
    "beta": _span_entry(beta_schedule, passes_schedule=True),
    "vp_continuous": _vp_continuous_entry,
    "linear_quadratic": _linear_quadratic_entry,
    "time_uniform": _time_entry(time_uniform),
    "time_quadratic": _time_entry(time_quadratic),
    "align_your_steps": _table_entry(align_your_steps),
    "gits": _table_entry(gits),
}
"""Step schedules by name. Every entry is ``entry(n, sigma_min=None, sigma_max=None, *, schedule=None,
append_zero=True, **options)``: ``n`` levels from ``sigma_max`` to ``sigma_min`` (a missing bound is
taken from ``schedule``), then 0. ``time_uniform`` and ``time_quadratic`` need ``schedule`` (keyword);
``beta`` uses it when given; ``linear_quadratic`` uses only ``sigma_max``; ``align_your_steps`` and
``gits`` are published tables."""


def get(name: str) -> StepSchedule:
    """The registry entry named ``name`` (see :data:`SCHEDULES`)."""
    try:
        return SCHEDULES[name]
    except KeyError:
        raise UnknownNameError("step schedule", name, list(SCHEDULES)) from None
