"""The optimisation step the digits diffusion trainings share (``train_digits.py``, ``train_digits_flow.py``).

Adam with a linear warm-up over ``--warmup`` steps and a cosine decay to 10 % along the run's progress (the larger
of the step fraction and the time fraction of ``--max-minutes``, so a run cut by its time limit still ends its
schedule), and an exponential moving average of the weights whose decay ramps up as ``(1 + step) / (10 + step)``
to ``--ema-decay``.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn


def progress_and_lr(args: argparse.Namespace, step: int, start: float) -> tuple[float, float]:
    """The run's progress in ``[0, 1]`` and the learning rate at ``step`` (``start``: the run's perf_counter)."""
    progress = min(1.0, max(step / max(args.steps - 1, 1), (time.perf_counter() - start) / (60 * args.max_minutes)))
    lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
    return progress, lr


def optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    """One optimiser step on ``loss`` at learning rate ``lr``."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, step: int, ema_decay: float) -> None:
    """``ema ← decay · ema + (1 − decay) · net`` with the ramped decay ``min(ema_decay, (1 + step)/(10 + step))``."""
    decay = min(ema_decay, (1 + step) / (10 + step))
    for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
        p_ema.lerp_(p, 1 - decay)
