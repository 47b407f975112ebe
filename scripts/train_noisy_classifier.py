"""Train the noise-aware digits classifier shipped in ``src/diffsample/models/weights/`` (for classifier guidance).

Usage: ``nice -n 5 python scripts/train_noisy_classifier.py [--epochs 150] [--seed 0] [--threads 1]``

Trains :class:`diffsample.models.noisy_classifier.NoisyDigitsClassifier` with AdamW on the training part of
:func:`diffsample.models.data.classifier_split` (1348 images; 449 held out), each batch noised afresh,
``x_σ = x0 + σ ε``, with ``log σ`` drawn from N(−0.5, 1.5²) (80 %) or uniformly over the digits models' span
[0.01, 160] (20 %), plus random ±1-pixel shifts. Writes ``digits_noisy_classifier.safetensors`` + ``.json``
(held-out accuracy per σ on fixed noise, split, seed, time).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from diffsample.models._io import save_safetensors
from diffsample.models.data import classifier_split, digits_data
from diffsample.models.noisy_classifier import WEIGHTS, NoisyDigitsClassifier

SPAN = (0.01, 160.0)
EVAL_SIGMAS = (0.01, 0.1, 0.3, 0.5, 1.0, 2.0, 5.0)


def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by a random offset in {−1, 0, 1}² (vacated pixels become background −1)."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    off = torch.randint(0, 3, (x.shape[0], 2), generator=gen)
    return torch.stack([padded[i, :, a : a + 8, b : b + 8] for i, (a, b) in enumerate(off.tolist())])


def draw_sigmas(n: int, gen: torch.Generator) -> torch.Tensor:
    lo, hi = math.log(SPAN[0]), math.log(SPAN[1])
    normal = (-0.5 + 1.5 * torch.randn(n, generator=gen)).clamp(lo, hi)
    uniform = lo + (hi - lo) * torch.rand(n, generator=gen)
    return torch.where(torch.rand(n, generator=gen) < 0.2, uniform, normal).exp()


@torch.no_grad()
def accuracy_per_sigma(net: NoisyDigitsClassifier, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    gen = torch.Generator().manual_seed(12345)
    out = {}
    for s in EVAL_SIGMAS:
        xs = x + s * torch.randn(x.shape, generator=gen)
        out[f"{s:g}"] = float((net(xs, s).argmax(1) == y).double().mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    x, y = digits_data()
    train_idx, test_idx = classifier_split()
    xtr, ytr = x[train_idx], y[train_idx]
    xte, yte = x[test_idx], y[test_idx]
    net = NoisyDigitsClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-2)
    steps_per_epoch = -(-xtr.shape[0] // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(xtr.shape[0], generator=gen)
        total = 0.0
        for i in range(0, xtr.shape[0], args.batch_size):
            idx = perm[i : i + args.batch_size]
            x0 = shift(xtr[idx], gen)
            sigma = draw_sigmas(idx.numel(), gen)
            xs = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=gen)
            loss = F.cross_entropy(net(xs, sigma), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.numel()
        if (epoch + 1) % 25 == 0 or epoch == args.epochs - 1:
            net.eval()
            acc = accuracy_per_sigma(net, xte, yte)
            print(f"epoch {epoch + 1:3d}  loss {total / xtr.shape[0]:.4f}  held-out acc per sigma {acc}", flush=True)
    elapsed = time.perf_counter() - start
    net.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    save_safetensors(net.state_dict(), args.out / "digits_noisy_classifier.safetensors", {"format": "pt"})
    info = {
        "architecture": {"width": 64, "features": 64, "sigma_data": net.sigma_data},
        "parameters": sum(p.numel() for p in net.parameters()),
        "input": "x_sigma = x0 + sigma * eps (sigma-space of the digits models), scaled by 1/sqrt(sigma^2 + 0.75^2); "
        "second channel log(sigma)/4",
        "data": "sklearn.datasets.load_digits, x = v/8 - 1",
        "split": "diffsample.models.data.classifier_split(n=1797, test_fraction=0.25, seed=0)",
        "n_train": int(xtr.shape[0]),
        "n_test": int(xte.shape[0]),
        "sigma_sampling": "log sigma ~ N(-0.5, 1.5^2) clipped to [0.01, 160] (80%), log-uniform on it (20%)",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "augmentation": "random ±1 pixel shifts, fresh noise per batch",
        "seed": args.seed,
        "threads": args.threads,
        "train_seconds": round(elapsed, 1),
        "test_accuracy_per_sigma": accuracy_per_sigma(net, xte, yte),
    }
    (args.out / "digits_noisy_classifier.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
