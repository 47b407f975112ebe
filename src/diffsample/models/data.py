"""scikit-learn's 8×8 digits as diffusion training data: 1797 images, pixel values 0…16, scaled to [−1, 1].

Scaling: ``x = v/8 − 1`` (0 → −1, 16 → 1), shape ``(1, 8, 8)`` per image. scikit-learn ships the data
set inside the package (no download); it is imported lazily, only here.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DiffsampleError

__all__ = ["classifier_split", "digits_data", "real_halves"]


def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as ``(x, labels)``: x float32 ``(1797, 1, 8, 8)`` in [−1, 1], labels int64 ``(1797,)``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DiffsampleError("the digits data set needs scikit-learn: pip install 'diffsample[beds]'") from None
    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 8.0 - 1.0
    return x, torch.as_tensor(d.target, dtype=torch.int64)


def classifier_split(n: int = 1797, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The fixed ``(train, test)`` index split the shipped classifier was trained/evaluated on.

    A ``numpy.random.RandomState(seed)`` permutation (its stream is frozen by numpy's stability
    policy); the first ``round(test_fraction·n)`` indices are the test set.
    """
    perm = np.random.RandomState(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def real_halves(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint random halves (898 and 899 images) of the real digits: the Fréchet-distance floor."""
    x, _ = digits_data()
    perm = torch.as_tensor(np.random.RandomState(seed).permutation(x.shape[0]))
    half = x.shape[0] // 2
    return x[perm[:half]], x[perm[half:]]
