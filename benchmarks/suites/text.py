"""The shipped text model: reference-n-gram NLL and entropy vs NFE per sampler, caching, batch invariance.

``python -m benchmarks text [--batch 64] [--steps 8,16,32,64] [--samplers ...]``. Every sampler draws ``--batch``
texts of 64 characters from all masks (:func:`diffsample.models.text.load_text_model`); the table gives the NFE
(batch evaluations), the rows the model evaluated, the wall time, the mean entropy of each text's own characters
and the NLL per character under the reference 5-gram Kneser–Ney model of the training split
(:func:`diffsample.text_cli.reference_ngram`). Held-out windows of real text give the reference line: a sampler
close to it in both columns writes text like the corpus; a lower NLL with a lower entropy is repetitive text.
Then ancestral with and without caching (same tokens, fewer calls), and batch-vs-solo output compared bitwise.
"""

from __future__ import annotations

import argparse

import torch

from diffsample import discrete
from diffsample.cli import int_list, str_list
from diffsample.discrete.corpus import VOCAB_SIZE, load_corpus
from diffsample.discrete.ngram import sequence_entropy
from diffsample.models.text import load_text_model
from diffsample.text_cli import generate_text, reference_ngram

from ..report import Column, text_table

__all__ = ["add_arguments", "run"]

SAMPLERS = [
    "ancestral",
    "first_hitting",
    "random",
    "confidence",
    "margin",
    "entropy",
    "remdm",
    "remdm_rescale",
    "remdm_confidence",
    "remdm_loop",
    "entropy_bounded",
]
LENGTH = 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samplers", type=str_list, default=SAMPLERS, help="masked samplers (comma-separated)")
    p.add_argument("--steps", type=int_list, default=[8, 16, 32, 64], help="step counts")
    p.add_argument("--batch", type=int, default=64, help="texts per configuration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-steps", type=int_list, default=[64, 256], help="ancestral steps, caching table")


def reference_row(batch: int) -> list:
    """Entropy and n-gram NLL of ``batch`` evenly spaced held-out windows (real text)."""
    held = load_corpus().heldout
    starts = torch.arange(batch) * ((held.numel() - LENGTH) // batch)
    x = held[starts[:, None] + torch.arange(LENGTH)]
    nll = reference_ngram().nll(x)
    return [
        "held-out text",
        "",
        "",
        "",
        "",
        float(sequence_entropy(x, VOCAB_SIZE).mean()),
        float(nll.mean()),
        float(nll.std() / batch**0.5),
    ]


def sampler_table(model, samplers: list[str], steps_list: list[int], batch: int, seed: int) -> str:
    rows = [reference_row(batch)]
    for name in samplers:
        own = discrete.spec(name).own_steps
        for steps in [None] if own else steps_list:
            out = generate_text(model, name, batch=batch, length=LENGTH, steps=steps or LENGTH, seed=seed)
            s = out.summary()
            rows.append(
                [
                    name,
                    "own" if own else steps,
                    s["nfe"],
                    s["rows"],
                    s["seconds"],
                    s["entropy"],
                    s["nll_nats_per_char"],
                    float(out.nll.std() / batch**0.5),
                ]
            )
    cols = [
        Column("sampler", "<16"),
        Column("steps", ">5"),
        Column("NFE", ">5"),
        Column("rows", ">6"),
        Column("s", ">6.2f"),
        Column("entropy", ">7.3f"),
        Column("NLL 5-gram", ">10.3f"),
        Column("±SE", ">6.3f"),
    ]
    return text_table(cols, rows)


def caching_table(model, steps_list: list[int], batches: list[int], seed: int) -> str:
    rows = []
    for batch in batches:
        for steps in steps_list:
            runs = {
                cache: generate_text(
                    model, "ancestral", batch=batch, length=LENGTH, steps=steps, seed=seed, cache=cache
                )
                for cache in (False, True)
            }
            plain, cached = runs[False], runs[True]
            same = torch.equal(cached.tokens, plain.tokens)
            rows.append(
                [
                    batch,
                    steps,
                    plain.nfe,
                    cached.nfe,
                    cached.rows,
                    plain.seconds,
                    cached.seconds,
                    plain.seconds / cached.seconds,
                    "yes" if same else "NO",
                ]
            )
    cols = [
        Column("batch", ">5"),
        Column("steps", ">5"),
        Column("NFE plain", ">9"),
        Column("NFE cached", ">10"),
        Column("rows cached", ">11"),
        Column("s plain", ">8.2f"),
        Column("s cached", ">8.2f"),
        Column("speed-up", ">8.2f"),
        Column("same tokens", ">11"),
    ]
    return text_table(cols, rows)


def batch_invariance(model, samplers: list[str], batch: int, seed: int) -> str:
    rows = []
    seeds = list(range(seed, seed + batch))
    for name in samplers:
        steps = None if discrete.spec(name).own_steps else 16
        run = discrete.get(name)
        big = run(model, discrete.all_masked(batch, LENGTH, VOCAB_SIZE), steps, seed=seeds)
        solo = torch.cat([run(model, discrete.all_masked(1, LENGTH, VOCAB_SIZE), steps, seed=[s]) for s in seeds])
        rows.append([name, batch, "yes" if torch.equal(big, solo) else "NO"])
    return text_table([Column("sampler", "<16"), Column("batch", ">5"), Column("bitwise equal", ">13")], rows)


def run(args: argparse.Namespace) -> int:
    model = load_text_model()
    print(f"== NLL under the reference 5-gram (nats/char) and entropy vs NFE, {args.batch} texts of {LENGTH} ==")
    print(sampler_table(model, args.samplers, args.steps, args.batch, args.seed))
    print("\n== caching (time-free model): ancestral, plain vs cached (rows plain = batch × steps) ==")
    print(caching_table(model, args.cache_steps, [1, args.batch], args.seed))
    print("\n== batch of 8 vs one at a time (16 steps) ==")
    print(batch_invariance(model, args.samplers, 8, args.seed))
    return 0
