"""Several guidance branches of one network run as one call: their keywords stacked row-wise.

Classifier-free guidance (conditional + unconditional rows), PAG with CFG (three branches) and similar methods can
evaluate all branches in one network call of ``len(branches) · B`` rows. :func:`stack_branch_kwargs` builds that
call's keywords: values equal in every branch and not tensors (flags, options, ``None``) are passed once; the others
are made ``(B, …)`` (0-d and leading-dim-1 values repeated) and concatenated branch after branch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import DiffsampleError, ShapeError

__all__ = ["stack_branch_kwargs"]


def _rows(value: object, batch: int, key: str, device: torch.device) -> torch.Tensor:
    """A keyword value as ``(batch, …)`` rows (0-d and leading-dim-1 values are repeated)."""
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, device=device)
    except (TypeError, RuntimeError, ValueError):
        raise DiffsampleError(
            f"batched branches cannot stack keyword {key!r}: its values differ between branches and "
            f"{type(value).__name__} is not tensor-like; use batched=False"
        ) from None
    if t.dim() == 0:
        return t.expand(batch)
    if t.shape[0] in (batch, 1):
        return t.expand(batch, *t.shape[1:])
    raise ShapeError(f"batched branches: keyword {key!r} has leading dim {t.shape[0]}, expected {batch} or 1")


def _equal(a: object, b: object) -> bool:
    try:
        return a is b or bool(a == b)
    except (TypeError, ValueError, RuntimeError):
        return False


def stack_branch_kwargs(branches: Sequence[Mapping[str, Any]], batch: int, device: torch.device) -> dict[str, Any]:
    """The keywords of one network call on the branches' rows stacked in order (``len(branches) · batch`` rows).

    Raises:
        DiffsampleError: the branches have different keywords, or a differing value is not tensor-like.
        ShapeError: a value's leading dim is neither ``batch`` nor 1.
    """
    keys = set(branches[0])
    if any(set(b) != keys for b in branches):
        raise DiffsampleError(
            f"batched branches need the same keywords in every branch, got {[sorted(b) for b in branches]}; "
            f"pass the null condition as a value, or use batched=False"
        )
    out: dict[str, Any] = {}
    for key in branches[0]:
        values = [b[key] for b in branches]
        if not any(isinstance(v, torch.Tensor) for v in values) and all(_equal(values[0], v) for v in values):
            out[key] = values[0]
        else:
            out[key] = torch.cat([_rows(v, batch, key, device) for v in values])
    return out
