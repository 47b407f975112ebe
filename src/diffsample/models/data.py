"""scikit-learn's 8×8 digits as diffusion training data: 1797 images, pixel values 0…16, scaled to [−1, 1].

Scaling: ``x = v/8 − 1`` (0 → −1, 16 → 1), shape ``(1, 8, 8)`` per image. scikit-learn ships the data
set inside the package (no download); it is imported lazily, only here.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DiffsampleError

__all__ = ["DIGITS16_OFFSETS", "classifier_split", "digits16_data", "digits_data", "real_halves", "training_data"]


def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as ``(x, labels)``: x float32 ``(1797, 1, 8, 8)`` in [−1, 1], labels int64 ``(1797,)``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DiffsampleError("the digits data set needs scikit-learn: pip install 'diffsample[beds]'") from None
    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 8.0 - 1.0
    return x, torch.as_tensor(d.target, dtype=torch.int64)


DIGITS16_OFFSETS: tuple[int, ...] = (0, 2, 4)
"""Row and column offsets of the 12×12 digit on the 16×16 canvas (9 placements per digit)."""


def digits16_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits on a 16×16 canvas: every digit bilinearly upsampled to 12×12 and placed at the 9 offsets
    :data:`DIGITS16_OFFSETS` × :data:`DIGITS16_OFFSETS` on a background of −1, as ``(x, labels)``: x float32
    ``(16173, 1, 16, 16)`` in [−1, 1] (placement-major: rows ``k·1797 … (k+1)·1797 − 1`` hold placement ``k``).

    Upsampling alone is a linear map, so the data would lie in a 64-dimensional subspace of the 256 pixels; the
    shifted copies fill the image space, as a 16×16 image model's data do."""
    x8, labels = digits_data()
    x12 = torch.nn.functional.interpolate(x8, size=(12, 12), mode="bilinear", align_corners=False).clamp(-1.0, 1.0)
    out = []
    for dy in DIGITS16_OFFSETS:
        for dx in DIGITS16_OFFSETS:
            canvas = torch.full((x8.shape[0], 1, 16, 16), -1.0)
            canvas[:, :, dy : dy + 12, dx : dx + 12] = x12
            out.append(canvas)
    return torch.cat(out), labels.repeat(len(DIGITS16_OFFSETS) ** 2)


TRAINING_DATA = {"digits": digits_data, "digits16": digits16_data}
"""The training data sets by name (the training scripts' ``--data``)."""

DATA_SOURCES = {
    "digits": "sklearn.datasets.load_digits",
    "digits16": "sklearn.datasets.load_digits, upsampled to 12x12 at 9 offsets on a 16x16 canvas (digits16_data)",
}
"""How each training data set is made, as the training scripts record it in a model's config."""


def training_data(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The data set ``name`` (``"digits"``: 8×8, ``"digits16"``: 16×16, :func:`digits16_data`) as ``(x, labels)``."""
    if name not in TRAINING_DATA:
        raise DiffsampleError(f"unknown training data {name!r}; valid: {', '.join(TRAINING_DATA)}")
    return TRAINING_DATA[name]()


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
