"""Step schedules that span ``[σ_min, σ_max]`` by a closed form in σ (or, for Beta sampling, optionally in a
noise schedule's time): Karras, log-SNR (exponential), polyexponential, KL-optimal, Laplace, Beta and
Mochi's linear-quadratic."""

from __future__ import annotations

import math

import torch

from ..errors import DiffsampleError, SigmaError
from ..schedules import NoiseSchedule
from ._common import check_n, check_span, finish, pin_ends, positive, ramp
from ._deprecated import accepts_old_schedule_keyword
from ._noise_time import sampling_time_of_sigma, time_levels

__all__ = [
    "beta_schedule",
    "exponential",
    "karras",
    "kl_optimal",
    "laplace",
    "linear_quadratic",
    "logsnr",
    "polyexponential",
]


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *, append_zero: bool = True) -> torch.Tensor:
    """Karras et al. (2022, EDM, eq. 5): ``σ_i = (σ_max^{1/ρ} + i/(n-1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``.

    ``rho=7`` is EDM's choice; ``rho=1`` is uniform in σ and ``rho → ∞`` tends to :func:`logsnr`.
    """
    check_span(n, sigma_min, sigma_max)
    if rho <= 0:
        raise SigmaError(f"rho must be > 0, got {rho}")
    if n == 1:
        return finish(torch.tensor([sigma_max], dtype=torch.float64), append_zero)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    levels = (hi + ramp * (lo - hi)) ** rho
    levels[0], levels[-1] = sigma_max, sigma_min  # exact end points despite pow round-off
    return finish(levels, append_zero)


def logsnr(n: int, sigma_min: float, sigma_max: float, *, append_zero: bool = True) -> torch.Tensor:
    """Uniform in log-SNR ``λ = −log σ`` (DPM-Solver's "logSNR" spacing; k-diffusion's exponential)."""
    check_span(n, sigma_min, sigma_max)
    if n == 1:
        return finish(torch.tensor([sigma_max], dtype=torch.float64), append_zero)
    levels = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()
    levels[0], levels[-1] = sigma_max, sigma_min
    return finish(levels, append_zero)


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
    check_span(n, sigma_min, sigma_max)
    rho = positive(rho, "rho")
    r = (1 - ramp(n)) ** rho
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    levels = pin_ends(torch.exp(lo + r * (hi - lo)), sigma_max, sigma_min)
    return finish(levels, append_zero)


def kl_optimal(n: int, sigma_min: float, sigma_max: float, *, append_zero: bool = True) -> torch.Tensor:
    """The "KL-optimal" schedule of Sabour, Fidler & Kreis (2024, "Align Your Steps", appendix):
    uniform in ``arctan σ``, ``σ_i = tan((1 − i/(n−1)) atan σ_max + i/(n−1) atan σ_min)``.
    """
    check_span(n, sigma_min, sigma_max)
    r = ramp(n)
    levels = torch.tan((1 - r) * math.atan(sigma_max) + r * math.atan(sigma_min))
    return finish(pin_ends(levels, sigma_max, sigma_min), append_zero)


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
    check_span(n, sigma_min, sigma_max)
    beta = positive(beta, "beta (Laplace scale)")
    if not math.isfinite(mu):
        raise SigmaError(f"mu must be finite, got {mu}")
    p_hi, p_lo = _laplace_cdf(math.log(sigma_max), mu, beta), _laplace_cdf(math.log(sigma_min), mu, beta)
    p = p_hi + ramp(n) * (p_lo - p_hi)
    levels = torch.exp(_laplace_quantile(p, mu, beta))
    return finish(pin_ends(levels, sigma_max, sigma_min), append_zero)


def _beta_ppf(q: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    try:
        from scipy.special import betaincinv
    except ImportError as err:  # pragma: no cover - scipy is in every extra that runs this
        raise DiffsampleError("beta_schedule needs scipy (pip install scipy)") from err
    return torch.as_tensor(betaincinv(alpha, beta, q.numpy()), dtype=torch.float64)


@accepts_old_schedule_keyword
def beta_schedule(
    n: int,
    sigma_min: float,
    sigma_max: float,
    alpha: float = 0.6,
    beta: float = 0.6,
    *,
    noise_schedule: NoiseSchedule | None = None,
    append_zero: bool = True,
) -> torch.Tensor:
    """Lee et al. (2024), "Beta Sampling is All You Need": steps at the quantiles of a ``Beta(α, β)``
    distribution, which for ``α, β < 1`` crowds them at both ends of the walk.

    With ``q_i = 1 − i/(n−1)`` and ``P = F⁻¹_{Beta(α,β)}`` (scipy's ``betaincinv``):

    * without ``noise_schedule``, in σ (diffusers' ``use_beta_sigmas``): ``σ_i = σ_min + P(q_i)(σ_max − σ_min)``;
    * with ``noise_schedule``, in its time, as in the paper: ``u_i = u(σ_min) + P(q_i)(u(σ_max) − u(σ_min))``
      in sampling time ``u`` and ``σ_i = σ_space(sampling_time(u_i))``. On a
      :class:`~diffsample.schedules.DiscreteVP` table ``u`` is the timestep (σ interpolated log-linearly
      between entries), so with the table's own span this is ComfyUI's ``beta`` scheduler without its
      rounding: ComfyUI rounds ``P(q)·(N−1)`` to table indices, drops the repeats that creates (fewer
      steps) and uses ``q = 1 − k/n`` (k < n), so its
      last level is above σ_min. ``to_timesteps(beta_schedule(n + 1, …, append_zero=False)[:-1], table)``
      puts the same quantiles on table timesteps (nearest in log σ rather than rounded in t) without
      losing steps; :func:`from_array` ``(…, append_zero=True)`` then adds the final 0.

    Needs scipy.
    """
    check_span(n, sigma_min, sigma_max)
    alpha, beta = positive(alpha, "alpha"), positive(beta, "beta")
    q = _beta_ppf(1 - ramp(n), alpha, beta)
    if noise_schedule is None:
        levels = sigma_min + q * (sigma_max - sigma_min)
    else:
        lo = sampling_time_of_sigma(noise_schedule, sigma_min)
        hi = sampling_time_of_sigma(noise_schedule, sigma_max)
        _, levels = time_levels(noise_schedule, lo + q * (hi - lo))
    return finish(pin_ends(levels, sigma_max, sigma_min), append_zero)


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
    n = check_n(n)
    sigma_max = positive(sigma_max, "sigma_max")
    if not 0 < threshold_noise < 1:
        raise SigmaError(f"need 0 < threshold_noise < 1, got {threshold_noise}")
    if n == 1:
        return finish(torch.tensor([sigma_max], dtype=torch.float64), append_zero)
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
    return finish(levels, append_zero)
