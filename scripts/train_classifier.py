"""Train the digits classifier shipped in ``src/diffsample/models/weights/`` (features for the Fréchet distance).

Usage: ``python scripts/train_classifier.py [--epochs 60] [--seed 0] [--threads 1]``

Trains :class:`diffsample.models.classifier.DigitsClassifier` with AdamW on the training part of
:func:`diffsample.models.data.classifier_split` (1348 images; 449 held out), with random ±1-pixel
shifts as augmentation, and writes ``digits_classifier.safetensors`` + ``digits_classifier.json``
(held-out accuracy, split, seed, time).
"""

from __future__ import annotations

import json
import time

import torch
from _classifier_training import parse_arguments, seeded, shift, train_epochs
from torch.nn import functional as F

from diffsample.models._io import save_safetensors
from diffsample.models.classifier import WEIGHTS, DigitsClassifier
from diffsample.models.data import classifier_split, digits_data


def main() -> None:
    args = parse_arguments(__doc__.splitlines()[0], epochs=60, batch_size=64, lr=2e-3, out=WEIGHTS)
    gen = seeded(args)

    x, y = digits_data()
    train_idx, test_idx = classifier_split()
    xtr, ytr = x[train_idx], y[train_idx]
    xte, yte = x[test_idx], y[test_idx]
    net = DigitsClassifier()

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(shift(xtr[idx], gen)), ytr[idx], label_smoothing=0.05)

    def report(epoch: int, loss: float) -> None:
        with torch.no_grad():
            acc = float((net(xte).argmax(1) == yte).double().mean())
        print(f"epoch {epoch + 1:3d}  loss {loss:.4f}  held-out acc {acc:.4f}", flush=True)

    start = time.perf_counter()
    train_epochs(net, xtr.shape[0], args, gen, batch_loss, report, report_every=10)
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
