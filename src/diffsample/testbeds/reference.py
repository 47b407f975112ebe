"""Exact probability-flow ODE solutions on a test bed, from a high-accuracy integrator (cached on disk).

The σ-space PF-ODE (Karras et al. 2022, eq. 4 with s(t) = 1, σ(t) = t) is

    dx/dσ = (x − D(x, σ)) / σ = σ Σ_k r_k(x, σ) (x − μ_k) / (s_k² + σ²)        (Gaussian mixture bed),

integrated here with scipy's DOP853 (Dormand–Prince 8(5,3), Hairer, Nørsett & Wanner 1993) in
float64, directly in the σ variable, with the whole batch as one flattened system.

Behaviour at σ → 0
------------------
The second form never divides by σ. Without point masses (all ``s_k > 0``) the right-hand side is
smooth (a function of σ² times σ) and equals 0 at σ = 0, so the integrator simply runs to σ = 0.
With point masses (``s_k = 0``, e.g. an empirical data set) it is singular at σ = 0 off the
trajectories — ``(x − μ_k)/σ`` — while along a trajectory ``x(σ) − μ_k = O(σ)`` and the slope has a
finite limit. There the integrator stops at ``σ_ε = 1e-6`` and the last interval is finished in
closed form: each component's own PF-ODE is linear, ``x(σ') = μ_k + sqrt((s_k² + σ'²)/(s_k² + σ²))
(x(σ) − μ_k)`` (for a point mass ``μ_k + (σ'/σ)(x − μ_k)``, which lands exactly on the atom), and at
σ_ε one component holds all but ``~exp(−Δ²/(2σ_ε²))`` of the responsibility (Δ the distance to the
next component), so the responsibility-weighted closed form is exact to far below 1e-12. In that
last interval continuous components move by ``O(σ_ε²)`` only.

Evaluations call the bed's own float64 methods, never ``__call__``, so the bed's NFE counter is
left untouched and later benchmarks count only their own calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .. import cache as disk_cache
from ..denoisers import Denoiser
from ..errors import DiffsampleError
from ..files import atomic_write_bytes

__all__ = ["SIGMA_FINISH", "default_cache_dir", "reference_solution"]

SIGMA_FINISH = 1e-6
_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$DIFFSAMPLE_CACHE/reference`` if that variable is set, else ``~/.cache/diffsample/reference``
    (:func:`diffsample.cache.cache_dir`)."""
    return disk_cache.cache_dir("reference")


def _cache_file(
    directory: Path, key: str, x: np.ndarray, sigma_start: float, sigma_end: float, rtol: float, atol: float
) -> Path:
    settings = {
        "v": _CACHE_VERSION,
        "bed": key,
        "shape": list(x.shape),
        "sigma_start": sigma_start.hex(),
        "sigma_end": sigma_end.hex(),
        "rtol": rtol.hex(),
        "atol": atol.hex(),
        "finish": SIGMA_FINISH.hex(),
    }
    return directory / f"{disk_cache.key_digest(settings, np.ascontiguousarray(x).tobytes())}.npy"


def _drift_fn(denoiser: Denoiser, shape: tuple[int, ...]) -> Callable[[float, np.ndarray], np.ndarray]:
    """The flattened right-hand side ``f(σ, y)`` for scipy, evaluated in float64 without touching the NFE counter."""
    exact = getattr(denoiser, "pf_ode_drift", None)
    batch = shape[0]

    def f(sigma: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(y).reshape(shape)
        s = torch.full((batch,), sigma, dtype=torch.float64)
        out = exact(x, s) if exact is not None else (x - denoiser.denoise(x, s).to(torch.float64)) / sigma
        return out.reshape(-1).numpy()

    return f


def _integrate(
    denoiser: Denoiser, x: np.ndarray, sigma_start: float, sigma_end: float, rtol: float, atol: float
) -> np.ndarray:
    try:
        from scipy.integrate import solve_ivp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reference_solution needs scipy; install it with: pip install diffsample[beds]") from exc
    sol = solve_ivp(
        _drift_fn(denoiser, x.shape),
        (sigma_start, sigma_end),
        x.reshape(-1),
        method="DOP853",
        rtol=rtol,
        atol=atol,
        t_eval=[sigma_end],
    )
    if not sol.success:
        raise DiffsampleError(f"the reference integrator failed: {sol.message}")
    return sol.y[:, -1].reshape(x.shape)


def reference_solution(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """The exact PF-ODE solution from state ``x`` at ``sigma_start`` to ``sigma_end``, float64, x's shape.

    ``sigma_start > 0``; ``sigma_end ≥ 0`` (0 included, see the module docstring); either direction.
    The denoiser is usually a :class:`~diffsample.testbeds.GaussianMixture` bed (exact, stable drift,
    σ = 0 reachable); any other :class:`~diffsample.denoisers.Denoiser` is integrated through its
    ``denoise`` method and needs ``sigma_end > 0``. With ``cache`` and a bed that has ``cache_key()``,
    the result is stored under ``cache_dir`` (default :func:`default_cache_dir`), keyed by a hash of
    the bed, the bytes of ``x``, both sigmas and both tolerances, and loaded from there next time.
    ``rtol``/``atol`` are DOP853's local tolerances; on the beds the defaults give about 1e-10 or better.
    """
    sigma_start, sigma_end, rtol, atol = float(sigma_start), float(sigma_end), float(rtol), float(atol)
    if not sigma_start > 0 or not sigma_end >= 0:
        raise DiffsampleError(f"need sigma_start > 0 and sigma_end >= 0, got {sigma_start} and {sigma_end}")
    if x.dim() < 1:
        raise DiffsampleError("x must have a batch dimension")
    x64 = x.detach().to("cpu", torch.float64).contiguous().numpy()
    key_fn = getattr(denoiser, "cache_key", None)
    path = None
    if cache and key_fn is not None:
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = _cache_file(directory, key_fn(), x64, sigma_start, sigma_end, rtol, atol)
        if path.exists():
            return torch.from_numpy(np.load(path, allow_pickle=False)).reshape(x.shape)
    is_bed = hasattr(denoiser, "componentwise_flow")
    if sigma_end == 0 and not is_bed:
        raise DiffsampleError("sigma_end = 0 needs a GaussianMixture bed; pass a positive sigma_end")
    # point masses: finish the last interval below SIGMA_FINISH in closed form (module docstring)
    point_masses = bool(getattr(denoiser, "has_point_masses", False))
    finish = is_bed and point_masses and sigma_end < min(sigma_start, SIGMA_FINISH)
    sigma_stop = min(sigma_start, SIGMA_FINISH) if finish else sigma_end
    out = x64.copy() if sigma_stop == sigma_start else _integrate(denoiser, x64, sigma_start, sigma_stop, rtol, atol)
    if finish:
        out = denoiser.componentwise_flow(torch.from_numpy(out), sigma_stop, sigma_end).numpy()  # type: ignore[attr-defined]
    if path is not None:
        atomic_write_bytes(path, lambda handle: np.save(handle, out, allow_pickle=False))
    return torch.from_numpy(np.ascontiguousarray(out)).reshape(x.shape)
