"""Time-shift sampling (Li et al. 2024, "Alleviating Exposure Bias in Diffusion Models through Sampling with
Shifted Time Steps", ICLR; TS-DDIM / TS-DPM).

During sampling, ``x`` at the nominal level σ_i usually carries a different amount of noise than the
training inputs at σ_i. TS-DDIM estimates the noise level of the current sample from its variance and
feeds the network the time step, among the training steps within a window around the nominal one,
whose noise variance matches best; below a cutoff time it stops shifting. In σ-space, per call
``D(x, σ)`` of the wrapped solver:

1. **estimate** the noise variance of x: ``σ̂² = mean_j (x_j − m_j)² − v``, with ``m`` the data mean
   (per coordinate) and ``v`` the data's mean per-coordinate variance (``E‖x0 − m‖²/d``), both from
   calibration data (:func:`data_stats`); per sample (``pool="sample"``, the paper's per-image
   variance) or pooled over the batch (``pool="batch"``: a far less noisy estimate when a sample has
   few coordinates). Since ``x = x0 + σ ε``, ``E σ̂² = σ²`` when x has exactly the noise level σ.
2. **choose** among the nominal σ itself and the candidate ``levels`` (the model's training noise
   levels; e.g. :func:`training_levels` of its schedule) within ``window`` levels on each side of the
   level nearest σ (in log σ), the one minimising ``|σ̂² − σ_τ²|`` (the paper's variance match; the
   nominal σ wins ties, and keeps a walk below the table's range from being pulled into it); σ_s = σ
   also when ``window = 0`` or ``σ ≤ cutoff`` (the paper's cutoff time).
3. **evaluate** the network once, ``D_s = D(x, σ_s)`` (x as is: the σ-space/VE form of the rule; for
   a VP network the paper keeps the VP input ``x_t`` and only changes the time label), so NFE is unchanged.
4. **re-express** for the nominal σ. TS-DDIM's update is ``x' = D_s + σ' ε_s`` with
   ``ε_s = (x − D_s)/σ_s`` and σ' the next level of the step grid. With ``update="ddim"`` (default) the
   transform returns the ``D'`` for which the solver's own first-order step from the nominal σ,
   ``x' = D' + (σ'/σ)(x − D')``, is exactly that update:

       D' = [D_s (1 − ρ) + x (ρ − r)] / (1 − r),    r = σ'/σ,  ρ = σ'/σ_s

   (``D' = D_s`` when σ_s = σ or σ' = 0). This needs the step grid ``sigmas``: σ' is the grid level
   after σ. It is exact for Euler/DDIM; other solvers use ``D'`` as their model output (in multistep
   history, for instance). Calls at levels not on the grid (stages of multi-stage solvers) and
   ``update="x0"`` return ``D_s`` itself, the shifted evaluation's clean-data estimate.

With ``window = 0`` (or a cutoff above every level) the model's output is returned unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .. import contracts, steps
from .._deprecation import renamed_keyword
from ..denoisers import append_dims
from ..errors import DiffsampleError, ShapeError
from ..schedules import NoiseSchedule
from .base import Transform, to_work

__all__ = ["TimeShift", "data_stats", "time_shift", "training_levels"]

_F64 = torch.float64
_MATCH_RTOL = 1e-6  # σ reaches the model in x's dtype: a grid level is recognised to float32 round-off


def data_stats(samples: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Calibration statistics of data samples (N, …): the per-coordinate mean ``m`` (shape ``(…)``, float64)
    and the mean per-coordinate variance ``v = mean_j Var(x0_j)``."""
    if not isinstance(samples, torch.Tensor) or samples.dim() < 2 or samples.shape[0] < 2:
        raise ShapeError("data samples must be a tensor (N, …) with N >= 2")
    a = samples.detach().to("cpu", _F64)
    return a.mean(0), float(a.var(0, correction=1).mean())


@renamed_keyword("schedule", "noise_schedule")
def training_levels(noise_schedule: NoiseSchedule, n: int = 1000) -> torch.Tensor:
    """``n`` σ-space levels of ``noise_schedule`` at evenly spaced native times over its sampling span, ascending
    (for a 1000-step :class:`~diffsample.schedules.DiscreteVP`, its training timesteps 0 … 999)."""
    if int(n) < 2:
        raise DiffsampleError(f"need n >= 2 levels, got {n}")
    t0 = float(noise_schedule.t_of_sigma_space(noise_schedule.sigma_min))
    t1 = float(noise_schedule.t_of_sigma_space(noise_schedule.sigma_max))
    return noise_schedule.sigma_space(torch.linspace(t0, t1, int(n), dtype=_F64))


class TimeShift(Transform):
    """Time-shift sampling as a denoiser transform (module docstring); built by :func:`time_shift`."""

    def __init__(
        self,
        denoiser: contracts.Denoiser,
        sigmas: Sequence[float] | torch.Tensor,
        *,
        data_mean: torch.Tensor | float,
        data_var: float,
        window: int = 2,
        levels: torch.Tensor | None = None,
        cutoff: float = 0.0,
        pool: str = "sample",
        update: str = "ddim",
    ) -> None:
        super().__init__(denoiser)
        self.sigmas = steps.validate(sigmas)
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise DiffsampleError(f"window must be an integer >= 0 (levels on each side), got {window!r}")
        if pool not in ("sample", "batch"):
            raise DiffsampleError(f"pool must be 'sample' or 'batch', got {pool!r}")
        if update not in ("ddim", "x0"):
            raise DiffsampleError(f"update must be 'ddim' or 'x0', got {update!r}")
        self.cutoff = float(cutoff)
        if not (math.isfinite(self.cutoff) and self.cutoff >= 0):
            raise DiffsampleError(f"cutoff must be a finite sigma >= 0, got {cutoff}")
        self.data_var = float(data_var)
        if not (math.isfinite(self.data_var) and self.data_var >= 0):
            raise DiffsampleError(f"data_var must be finite and >= 0, got {data_var}")
        self.data_mean = torch.as_tensor(data_mean, dtype=_F64).detach().cpu()
        if not bool(torch.isfinite(self.data_mean).all()):
            raise DiffsampleError("data_mean must be finite")
        if levels is None:
            positive = self.sigmas[self.sigmas > 0]
            lo, hi = float(positive.min()), float(positive.max())
            levels = torch.logspace(math.log10(lo), math.log10(hi), 1000, dtype=_F64) if hi > lo else positive
        lv = torch.as_tensor(levels, dtype=_F64).detach().cpu().flatten()
        if lv.numel() < 1 or not bool(torch.isfinite(lv).all()) or bool((lv <= 0).any()):
            raise DiffsampleError("candidate levels must be finite and > 0")
        lv = lv.sort().values
        if lv.numel() > 1 and bool((lv[1:] <= lv[:-1]).any()):
            raise DiffsampleError("candidate levels must be distinct")
        self.levels = lv
        self.window, self.pool, self.update = window, pool, update

    def noise_variance(self, x: torch.Tensor) -> torch.Tensor:
        """``σ̂² = mean_j (x_j − m_j)² − v`` per sample, float64 ``(B,)`` (the batch mean for ``pool="batch"``)."""
        a = x.detach().to("cpu", _F64)
        if a.dim() < 2 or self.data_mean.numel() not in (1, a[0].numel()):
            raise ShapeError(
                f"x of shape {tuple(x.shape)} does not match data_mean of shape {tuple(self.data_mean.shape)}"
            )
        centred = a.reshape(a.shape[0], -1) - self.data_mean.reshape(1, -1)
        var = centred.square().mean(1) - self.data_var
        return var.mean().expand(a.shape[0]).clone() if self.pool == "batch" else var

    def shifted_sigma(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The level σ_s each sample is evaluated at, float64 ``(B,)`` (σ itself where nothing shifts)."""
        s = torch.as_tensor(sigma, dtype=_F64).detach().cpu().reshape(-1).expand(x.shape[0])
        if self.window == 0:
            return s.clone()
        lv, n = self.levels, self.levels.numel()
        nominal = (lv.log()[None, :] - s.clamp_min(1e-300).log()[:, None]).abs().argmin(1)  # (B,)
        offsets = torch.arange(-self.window, self.window + 1)
        cand = (nominal[:, None] + offsets[None, :]).clamp(0, n - 1)  # (B, 2w+1)
        var = self.noise_variance(x)
        gap = (var[:, None] - lv[cand].square()).abs()
        best = gap.argmin(1, keepdim=True)
        # the nominal σ itself is a candidate too (and wins ties): no shift when it matches best, also
        # where σ lies outside the table's range
        better = gap.gather(1, best)[:, 0] < (var - s.square()).abs()
        shift = better & (s > self.cutoff) & (s > 0)
        return torch.where(shift, lv[cand.gather(1, best)[:, 0]], s)

    def _next_level(self, sigma: float) -> float | None:
        """σ' after σ on the step grid, or None when σ is not a grid level."""
        grid = self.sigmas
        close = ((grid - sigma).abs() <= _MATCH_RTOL * max(sigma, 1e-300)).nonzero()
        if len(close) == 0 or int(close[0]) == len(grid) - 1:
            return None
        return float(grid[int(close[0]) + 1])

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.window == 0:
            return self.inner(x, sigma, **kwargs)
        s = sigma.detach().to("cpu", _F64)
        s_shift = self.shifted_sigma(x, s)
        moved = s_shift != s
        if not bool(moved.any()):
            return self.inner(x, sigma, **kwargs)
        d_s = self.inner(x, s_shift.to(sigma.device, sigma.dtype if sigma.is_floating_point() else _F64), **kwargs)
        if self.update == "x0":
            return d_s
        d_s = to_work(d_s)
        nxt = torch.full_like(s, math.nan)
        for value in torch.unique(s[moved]).tolist():
            level = self._next_level(value)
            nxt[s == value] = math.nan if level is None else level
        use = moved & (nxt > 0)  # NaN (off the grid) and σ' = 0 keep D_s
        if not bool(use.any()):
            return d_s
        r = torch.where(use, nxt / s, torch.zeros_like(s))
        rho = torch.where(use, nxt / s_shift, torch.zeros_like(s))
        a = append_dims(((1 - rho) / (1 - r)).to(d_s.device, d_s.dtype), x.dim())
        c = append_dims(((rho - r) / (1 - r)).to(d_s.device, d_s.dtype), x.dim())
        return d_s * a + x.to(d_s.dtype) * c

    def __repr__(self) -> str:
        return (
            f"TimeShift(window={self.window}, cutoff={self.cutoff:g}, pool={self.pool!r}, "
            f"update={self.update!r}, levels={self.levels.numel()}, steps={self.sigmas.numel() - 1})"
        )


def time_shift(
    denoiser: contracts.Denoiser,
    sigmas: Sequence[float] | torch.Tensor,
    *,
    data: torch.Tensor | None = None,
    data_mean: torch.Tensor | float | None = None,
    data_var: float | None = None,
    window: int = 2,
    levels: torch.Tensor | None = None,
    cutoff: float = 0.0,
    pool: str = "sample",
    update: str = "ddim",
) -> TimeShift:
    """Time-shift sampling of ``denoiser`` on the step grid ``sigmas``, as a new denoiser (module docstring).

    Args:
        denoiser: the model ``D(x, σ)``.
        sigmas: the step grid the solver will walk (the same tensor passed to :func:`diffsample.sample`).
        data: calibration data samples (N, …) giving ``data_mean`` and ``data_var`` (:func:`data_stats`);
            or pass ``data_mean`` (per-coordinate, or a scalar) and ``data_var`` directly.
        window: candidate levels on each side of the nominal one (0: no shift).
        levels: the candidate noise levels (default: 1000 log-spaced levels over the grid's range, a
            stand-in for a model's training steps; :func:`training_levels` gives a schedule's own).
        cutoff: no shift at nominal σ ≤ cutoff (the paper's cutoff time, as a noise level).
        pool: ``"sample"`` (per-sample variance, the paper's) or ``"batch"``.
        update: ``"ddim"`` (re-express for the solver's step, exact TS-DDIM for Euler/DDIM) or ``"x0"``.
    """
    if data is not None:
        if data_mean is not None or data_var is not None:
            raise DiffsampleError("give either data or data_mean and data_var, not both")
        data_mean, data_var = data_stats(data)
    if data_mean is None or data_var is None:
        raise DiffsampleError("time shift needs the data statistics: pass data=samples, or data_mean and data_var")
    return TimeShift(
        denoiser,
        sigmas,
        data_mean=data_mean,
        data_var=data_var,
        window=window,
        levels=levels,
        cutoff=cutoff,
        pool=pool,
        update=update,
    )
