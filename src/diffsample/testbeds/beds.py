"""Ready-made test beds: exact denoisers whose data live roughly in [-1, 1].

========== ======================================================= ===============
name       data                                                    per-sample shape
========== ======================================================= ===============
ring2d     8 Gaussians (std 0.05) evenly on the unit circle         (2,)
mixture64  8 diagonal Gaussians in 64-D, fixed seeded construction  (64,)
digits     the 1797 scikit-learn 8×8 digits as point masses         (64,)
========== ======================================================= ===============

Each call builds a fresh bed (its own NFE counter). ``BEDS`` maps names to these constructors and
:func:`get_bed` looks one up.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..denoisers import Denoiser
from ..errors import UnknownNameError
from .mixture import EmpiricalDenoiser, GaussianMixture

__all__ = ["BEDS", "digits", "get_bed", "mixture64", "ring2d"]

MIXTURE64_SEED = 20240064


def ring2d() -> GaussianMixture:
    """The 2-D ring: 8 equal-weight isotropic Gaussians of std 0.05 with means ``(cos 2πk/8, sin 2πk/8)``."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture(means, torch.full((8,), 0.05, dtype=torch.float64), name="ring2d")


def mixture64() -> GaussianMixture:
    """A 64-D mixture of K = 8 diagonal Gaussians with unequal weights, from a fixed seeded generator.

    Construction (``torch.Generator().manual_seed(MIXTURE64_SEED)``, float64, drawn in this order):

    * means ``μ_k = 0.5 · n_k`` with ``n_k ~ N(0, I_64)``: per-coordinate magnitude ≈ 0.5, ``|μ_k| ≈ 4``,
      pairwise distances ≈ 5.7;
    * stds ``s_kj = 0.05 · 10^{u_kj}`` with ``u_kj ~ U(0, 1)``: log-uniform in [0.05, 0.5], so every
      component is strongly anisotropic;
    * weights ``w_k ∝ 1 + u_k`` with ``u_k ~ U(0, 1)``.

    Components are well separated at σ = 0 (distance ≈ 20 within-component stds) and merge around
    σ ≈ 3, so the PF-ODE both splits modes and contracts strongly anisotropic clusters.
    """
    g = torch.Generator().manual_seed(MIXTURE64_SEED)
    means = 0.5 * torch.randn(8, 64, generator=g, dtype=torch.float64)
    stds = 0.05 * 10.0 ** torch.rand(8, 64, generator=g, dtype=torch.float64)
    weights = 1.0 + torch.rand(8, generator=g, dtype=torch.float64)
    return GaussianMixture(means, stds, weights, name="mixture64")


def digits() -> EmpiricalDenoiser:
    """The empirical (optimal) denoiser of scikit-learn's bundled 8×8 digits, 1797 images scaled to [-1, 1].

    Pixel values 0…16 become ``x/8 − 1``; samples are flat, shape ``(64,)``. Needs scikit-learn
    (``pip install diffsample[beds]``); the data ship with it, nothing is downloaded.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'digits' test bed needs scikit-learn; install it with: pip install diffsample[beds]"
        ) from exc
    images = torch.as_tensor(load_digits().data, dtype=torch.float64)
    return EmpiricalDenoiser(images / 8.0 - 1.0, name="digits")


BEDS: dict[str, Callable[[], Denoiser]] = {"ring2d": ring2d, "mixture64": mixture64, "digits": digits}


def get_bed(name: str) -> Denoiser:
    """Build the bed registered as ``name``; :class:`~diffsample.errors.UnknownNameError` lists the valid ones."""
    try:
        factory = BEDS[name]
    except KeyError:
        raise UnknownNameError("bed", name, list(BEDS)) from None
    return factory()
