"""What the digits classifier training scripts share: arguments, seeded set-up, augmentation and the epoch loop.

Used by ``train_classifier.py`` (the clean classifier) and ``train_noisy_classifier.py`` (the noise-aware one):
AdamW (weight decay 1e-2) with a one-cycle learning rate on the training part of
:func:`diffsample.models.data.classifier_split`, a fresh permutation per epoch from one seeded generator.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by a random offset in {−1, 0, 1}² (vacated pixels become background −1)."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    off = torch.randint(0, 3, (x.shape[0], 2), generator=gen)
    return torch.stack([padded[i, :, a : a + 8, b : b + 8] for i, (a, b) in enumerate(off.tolist())])


def parse_arguments(description: str, *, epochs: int, batch_size: int, lr: float, out: Path) -> argparse.Namespace:
    """``--epochs --batch-size --lr --seed --threads --out`` with the script's defaults."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=out)
    return ap.parse_args()


def seeded(args: argparse.Namespace) -> torch.Generator:
    """Set the thread count and torch's seed (network initialisation); the generator for data order and noise."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return torch.Generator().manual_seed(args.seed)


def train_epochs(
    net: nn.Module,
    n_train: int,
    args: argparse.Namespace,
    gen: torch.Generator,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    report: Callable[[int, float], None],
    report_every: int,
) -> None:
    """The epoch loop: ``batch_loss(indices)`` per minibatch, ``report(epoch, mean loss)`` every ``report_every``."""
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-2)
    steps_per_epoch = -(-n_train // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch)
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(n_train, generator=gen)
        total = 0.0
        for i in range(0, n_train, args.batch_size):
            idx = perm[i : i + args.batch_size]
            loss = batch_loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.numel()
        if (epoch + 1) % report_every == 0 or epoch == args.epochs - 1:
            net.eval()
            report(epoch, total / n_train)
