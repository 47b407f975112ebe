"""Train the digits classifier shipped in ``src/diffsample/models/weights/`` (features for the Fréchet distance).

Usage: ``python scripts/train_classifier.py [--epochs 60] [--seed 0] [--threads 1]``

Trains :class:`diffsample.models.classifier.DigitsClassifier` with AdamW on the training part of
:func:`diffsample.models.data.classifier_split` (1348 images; 449 held out), with random ±1-pixel
shifts as augmentation, and writes ``digits_classifier.safetensors`` + ``digits_classifier.json``
(held-out accuracy, split, seed, time).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from diffsample.models._io import save_safetensors
from diffsample.models.classifier import WEIGHTS, DigitsClassifier
from diffsample.models.data import classifier_split, digits_data


def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by a random offset in {−1, 0, 1}² (vacated pixels become background −1)."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    off = torch.randint(0, 3, (x.shape[0], 2), generator=gen)
    return torch.stack([padded[i, :, a : a + 8, b : b + 8] for i, (a, b) in enumerate(off.tolist())])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
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
    net = DigitsClassifier()
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
            loss = F.cross_entropy(net(shift(xtr[idx], gen)), ytr[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.numel()
        if (epoch + 1) % 10 == 0 or epoch == args.epochs - 1:
            net.eval()
            with torch.no_grad():
                acc = float((net(xte).argmax(1) == yte).double().mean())
            print(f"epoch {epoch + 1:3d}  loss {total / xtr.shape[0]:.4f}  held-out acc {acc:.4f}", flush=True)
    elapsed = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        test_acc = float((net(xte).argmax(1) == yte).double().mean())
        train_acc = float((net(xtr).argmax(1) == ytr).double().mean())
    args.out.mkdir(parents=True, exist_ok=True)
    save_safetensors(net.state_dict(), args.out / "digits_classifier.safetensors", {"format": "pt"})
    info = {
        "architecture": "DigitsClassifier (3 conv + 2 linear, 64-d penultimate features)",
        "parameters": sum(p.numel() for p in net.parameters()),
        "data": "sklearn.datasets.load_digits, x = v/8 - 1",
        "split": "diffsample.models.data.classifier_split(n=1797, test_fraction=0.25, seed=0)",
        "n_train": int(xtr.shape[0]),
        "n_test": int(xte.shape[0]),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "augmentation": "random ±1 pixel shifts",
        "seed": args.seed,
        "train_seconds": round(elapsed, 1),
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "test_correct": int(round(test_acc * xte.shape[0])),
    }
    (args.out / "digits_classifier.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
