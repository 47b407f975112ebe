"""Empirical model statistics (EMS) for DPM-Solver-v3: ``l_λ, s_λ, b_λ`` from a denoiser on calibration data.

Zheng, Lu, Chen & Zhu 2023, "DPM-Solver-v3", §3.2 and Appendix C, in σ-space with ``λ = −log σ``
(notation of :mod:`diffsample.solvers.dpm_v3`). With ``f = (1 − l) x − D`` (``= σ ε̂ − l x``):

* ``l_λ = argmin_l E‖∇_x(σ ε̂) − diag(l)‖²_F = E diag(I − ∂D/∂x)`` per coordinate (eq. 7). The diagonal
  comes from Rademacher probes ``v ∈ {±1}^d``: ``E[v ⊙ (J v)] = diag J`` exactly for diagonal ``J`` and
  unbiased otherwise (Hutchinson's diagonal estimator, one Jacobian-vector product per sample).
* ``s_λ, b_λ = argmin E‖f' − s f − b‖²`` per coordinate (eq. 10), ``f' = df/dλ`` along the PF-ODE
  (``dx/dλ = D − x``, ``dσ/dλ = −σ``): ``f' = −l' x + (1 − l)(D − x) − dD/dλ`` with
  ``dD/dλ = ∂_x D·(D − x) − σ ∂_σ D`` (one JVP along the trajectory) and ``l'`` from the grid
  (``numpy.gradient``: central differences inside, one-sided at the ends, i.e. the slopes of the linear
  interpolant the solver integrates). Least squares gives
  ``s = Cov(f', f)/Var(f)``, ``b = E f' − s E f``; where ``Var(f) ≤ 1e-12 E f²`` (``f`` does not vary over
  the data, e.g. a Gaussian, where ``f = −l μ``) ``s = 0`` and ``b = E f'``.

The samples at each level are the calibration data noised, ``x = x0 + σ ε`` (the marginal at σ of a
perfect model, one ε per sample for all levels), or, given ``noise``, PF-ODE trajectories from
``σ_max·noise`` solved by DPM-Solver++(3M) with ``ode_substeps`` steps per grid interval (closer to
the paper, which uses the model's own trajectories, and costs ``ode_substeps`` calls per interval).
Jacobian-vector products use ``torch.func.jvp`` through the denoiser; ``jacobian="fd"`` uses central
differences with step ``fd_step`` (in x for the probe, in λ along the trajectory) for models
autograd cannot go through. Cost per sample and level: 2 JVPs (each about 2–3 forward passes), or 5
model calls with finite differences; reported in ``info``.

Statistics are float64 arrays on a λ-grid uniform in ``[−log σ_max, −log σ_min]``, saved as one small
``.npz`` (``save``/``load``), and interpolated linearly in λ (:meth:`EMS.at`); the solver integrates
them exactly (:class:`diffsample.solvers.dpm_v3.Quadrature`, :func:`cumulative_integrals`).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import torch

from ..contracts import Denoiser
from ..errors import DiffsampleError, ShapeError
from ..files import atomic_write_bytes
from ..solvers.dpm_v3 import Quadrature, check_statistics

__all__ = ["EMS", "compute_statistics", "cumulative_integrals"]

_FLAT_VAR = 1e-12


@dataclass(frozen=True)
class EMS:
    """Empirical model statistics on a λ-grid: ``lam (K,)`` increasing, ``l, s, b`` of shape ``(K, *shape)``."""

    lam: np.ndarray
    l: np.ndarray  # noqa: E741
    s: np.ndarray
    b: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("lam", "l", "s", "b"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if self.l.ndim < 2:
            raise ShapeError(f"EMS: l, s, b need shape (K, *shape), got {self.l.shape}")
        check_statistics(self, self.l.shape[1:], self.sigma_max, self.sigma_min)

    @property
    def shape(self) -> tuple[int, ...]:
        """The per-sample shape of the statistics."""
        return tuple(self.l.shape[1:])

    @property
    def sigma_min(self) -> float:
        return math.exp(-float(self.lam[-1]))

    @property
    def sigma_max(self) -> float:
        return math.exp(-float(self.lam[0]))

    def at(self, lam: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(l, s, b)`` linearly interpolated at ``lam`` (scalar or 1-D) inside the grid; shape ``(*lam, *shape)``."""
        q = np.asarray(lam, dtype=np.float64)
        if np.any(q < self.lam[0] - 1e-9) or np.any(q > self.lam[-1] + 1e-9):
            raise DiffsampleError(f"EMS.at: lambda outside the statistics' range [{self.lam[0]}, {self.lam[-1]}]")
        flat = q.reshape(-1)
        out = []
        for arr in (self.l, self.s, self.b):
            cols = arr.reshape(len(self.lam), -1)
            vals = np.stack([np.interp(flat, self.lam, cols[:, m]) for m in range(cols.shape[1])], axis=-1)
            out.append(vals.reshape(q.shape + self.shape))
        return out[0], out[1], out[2]

    def write(self, handle: IO[bytes]) -> None:
        """Write ``lam, l, s, b`` (float64) and ``info`` (JSON) as one ``.npz`` archive to a binary file object."""
        np.savez(handle, lam=self.lam, l=self.l, s=self.s, b=self.b, info=np.array(json.dumps(self.info)))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the statistics (:meth:`write`) to ``path`` atomically: a failure leaves an existing file as it was."""
        atomic_write_bytes(path, self.write)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EMS:
        """Read statistics written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            missing = {"lam", "l", "s", "b"} - set(data.files)
            if missing:
                raise DiffsampleError(f"{path}: not an EMS file, missing {sorted(missing)}")
            info = json.loads(str(data["info"])) if "info" in data.files else {}
            return cls(data["lam"], data["l"], data["s"], data["b"], info)

    @classmethod
    def degenerate(cls, sigma_min: float, sigma_max: float, shape: tuple[int, ...] = (1,)) -> EMS:
        """``l = 1, s = b = 0``: the statistics under which DPM-Solver-v3 is DPM-Solver++."""
        lam = np.array([-math.log(sigma_max), -math.log(sigma_min)])
        return cls(lam, np.ones((2, *shape)), np.zeros((2, *shape)), np.zeros((2, *shape)), {"kind": "degenerate"})


def _grid(sigma_min: float, sigma_max: float, n_levels: int) -> np.ndarray:
    if not 0 < sigma_min < sigma_max or not math.isfinite(sigma_max):
        raise DiffsampleError(f"compute_statistics needs 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
    if int(n_levels) != n_levels or n_levels < 3:
        raise DiffsampleError(f"compute_statistics needs n_levels >= 3, got {n_levels!r}")
    return np.linspace(-math.log(sigma_max), -math.log(sigma_min), int(n_levels))


def _trajectories(denoiser: Denoiser, noise: torch.Tensor, sigmas: np.ndarray, substeps: int) -> list[torch.Tensor]:
    """States at each ``sigmas`` (decreasing) along the PF-ODE from ``sigmas[0]·noise``, DPM-Solver++(3M)."""
    from ..solvers import get

    lam = -np.log(sigmas)
    fine = np.exp(
        -np.concatenate(
            [lam[:-1, None] + np.diff(lam)[:, None] * np.arange(substeps) / substeps, lam[-1:, None]], axis=None
        ).ravel()
    )
    states: list[torch.Tensor] = []

    def keep(info: dict) -> None:
        if info["i"] % substeps == 0:
            states.append(info["x"])

    last = get("dpmpp_3m")(
        denoiser, noise * float(sigmas[0]), torch.as_tensor(fine), callback=keep, lower_order_final=False
    )
    return [*states, last]


def compute_statistics(
    denoiser: Denoiser,
    x0: torch.Tensor | None = None,
    *,
    noise: torch.Tensor | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    n_levels: int = 121,
    jacobian: str = "jvp",
    fd_step: float = 1e-3,
    seed: int = 0,
    batch_size: int = 1024,
    ode_substeps: int = 4,
) -> EMS:
    """Estimate ``l, s, b`` on ``n_levels`` λ-points from calibration data ``x0`` or starting ``noise`` (module doc).

    Args:
        denoiser: ``D(x, σ)`` (σ a ``(B,)`` tensor); differentiable by ``torch.func.jvp`` unless ``jacobian="fd"``.
        x0: calibration samples ``(N, *shape)``, noised to each level; or ``noise``: standard normal
            ``(N, *shape)`` whose PF-ODE trajectories from ``σ_max`` are followed (exactly one of the two).
        sigma_min, sigma_max: the range the solver may then walk.
        n_levels: grid points, uniform in λ.
        jacobian: ``"jvp"`` or ``"fd"`` (central differences with ``fd_step``).
        seed: seeds the noise ε and the Rademacher probes.
        batch_size: samples per model call.
        ode_substeps: DPM-Solver++(3M) steps per grid interval for the ``noise`` trajectories.
    """
    if (x0 is None) == (noise is None):
        raise DiffsampleError("compute_statistics needs exactly one of x0 (calibration data) or noise")
    if jacobian not in ("jvp", "fd"):
        raise DiffsampleError(f"compute_statistics: jacobian must be 'jvp' or 'fd', got {jacobian!r}")
    data = (x0 if x0 is not None else noise).detach()
    if data.dim() < 2 or data.shape[0] < 2:
        raise ShapeError(f"calibration tensor must have shape (N >= 2, *shape), got {tuple(data.shape)}")
    lam = _grid(float(sigma_min), float(sigma_max), n_levels)
    sig = np.exp(-lam)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    eps = torch.randn(data.shape, generator=gen, dtype=data.dtype).to(data.device)
    probe = (torch.randint(0, 2, data.shape, generator=gen) * 2 - 1).to(data.dtype).to(data.device)
    calls = {"model": 0, "jvp": 0}

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls["model"] += 1
        return denoiser(x, sigma)

    started = time.perf_counter()
    states = None
    if noise is not None:
        with torch.no_grad():
            states = _trajectories(model, data, sig, int(ode_substeps))
    traj_calls = calls["model"]
    keys = ("l", "mean_f", "var_f", "mean_g", "cov_gf", "mean_x", "cov_xf")
    acc = {k: np.zeros((len(lam), math.prod(data.shape[1:]))) for k in keys}
    for k, sigma in enumerate(sig):
        parts = []
        for lo in range(0, data.shape[0], batch_size):
            part = slice(lo, lo + batch_size)
            x = data[part] + float(sigma) * eps[part] if states is None else states[k][part]
            sb = torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)
            v = probe[part]
            if jacobian == "jvp":
                calls["jvp"] += 2
                d, jv = torch.func.jvp(denoiser, (x, sb), (v, torch.zeros_like(sb)))
                _, dd = torch.func.jvp(denoiser, (x, sb), (d - x, -sb))
            else:
                h = float(fd_step)
                with torch.no_grad():
                    d = model(x, sb)
                    jv = (model(x + h * v, sb) - model(x - h * v, sb)) / (2 * h)
                    step = h * (d - x)
                    dd = (model(x + step, sb * math.exp(-h)) - model(x - step, sb * math.exp(h))) / (2 * h)
            parts.append(
                [t.detach().reshape(t.shape[0], -1).to("cpu", torch.float64).numpy() for t in (x, d, jv, dd, v)]
            )
        xs, ds, jvs, dds, vs = (np.concatenate(c) for c in zip(*parts, strict=True))
        ell = (1.0 - vs * jvs).mean(0)
        a = xs - ds
        f = a - ell * xs  # f = (1 − l) x − D
        g = (ds - xs - dds) + ell * a  # f' + l' x
        fc = f - f.mean(0)
        acc["l"][k], acc["mean_f"][k], acc["var_f"][k] = ell, f.mean(0), (fc * fc).mean(0)
        acc["mean_g"][k], acc["cov_gf"][k] = g.mean(0), ((g - g.mean(0)) * fc).mean(0)
        acc["mean_x"][k], acc["cov_xf"][k] = xs.mean(0), ((xs - xs.mean(0)) * fc).mean(0)
    n = data.shape[0]
    ell = acc["l"]
    dl = np.gradient(ell, lam, axis=0, edge_order=1)
    cov_ff = acc["cov_gf"] - dl * acc["cov_xf"]  # Cov(f', f)
    mean_df = acc["mean_g"] - dl * acc["mean_x"]
    var_f, mean_f = acc["var_f"], acc["mean_f"]
    flat_f = var_f <= _FLAT_VAR * (mean_f**2 + var_f) + 1e-300
    s = np.where(flat_f, 0.0, cov_ff / np.where(flat_f, 1.0, var_f))
    b = mean_df - s * mean_f
    shape = (len(lam), *data.shape[1:])
    info = {
        "n_samples": int(n),
        "n_levels": int(len(lam)),
        "source": "x0" if x0 is not None else "noise",
        "jacobian": jacobian,
        "fd_step": float(fd_step) if jacobian == "fd" else None,
        "seed": int(seed),
        "jvp_per_sample": 2 * len(lam) if jacobian == "jvp" else 0,
        "calls_per_sample": (5 * len(lam) if jacobian == "fd" else 0)
        + (int(ode_substeps) * (len(lam) - 1) if noise is not None else 0),
        "batched_calls": calls["model"] + calls["jvp"],
        "trajectory_batched_calls": traj_calls,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return EMS(lam, ell.reshape(shape), s.reshape(shape), b.reshape(shape), info)


def cumulative_integrals(ems: EMS) -> dict[str, np.ndarray]:
    """``L, S, B, I, C`` from the grid's first point at every grid point (the paper's precomputed arrays).

    ``L = ∫ l``, ``S = ∫ s``, ``B = ∫ e^{−S} b``, ``I = ∫ e^{L+S}``, ``C = ∫ e^{L+S} B``, each ``(K, *shape)``,
    exact for the piecewise-linear statistics up to rounding (the paper uses the trapezoid rule).
    """
    quad = Quadrature(ems, list(ems.lam))
    idx = [quad.index(v) for v in ems.lam]
    ln, lb = quad.cumint(quad.l_nodes)
    sn, sb = quad.cumint(quad.s_nodes)
    bn, bb = quad.cumint(np.exp(-sn) * quad.b_nodes)
    ib = quad.cumint(np.exp(ln + sn))[1]
    cb = quad.cumint(np.exp(ln + sn) * bn)[1]
    shape = (len(ems.lam), *ems.shape)
    return {k: v[idx].reshape(shape) for k, v in (("L", lb), ("S", sb), ("B", bb), ("I", ib), ("C", cb))}
