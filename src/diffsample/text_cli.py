"""``diffsample sample-text``: generate text from the shipped masked diffusion language model.

Draws ``--batch`` sequences of ``--length`` characters from :func:`diffsample.models.text.load_text_model` with a
masked sampler (:mod:`diffsample.discrete.registry`), shows a progress bar (share of revealed characters) on
stderr, prints the texts, then the NFE, the wall time, the mean entropy of each text's own characters
(:func:`~diffsample.discrete.ngram.sequence_entropy`) and the NLL per character under the reference 5-gram
Kneser–Ney model of the training corpus (:func:`reference_ngram`). Writes nothing unless ``--out`` (a JSON with
the texts and figures, written atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import torch

from .progress import ProgressBar

if TYPE_CHECKING:
    from .discrete.denoiser import CountingMaskedDenoiser
    from .discrete.ngram import KneserNey

ProbabilityTransform = Callable[[torch.Tensor], torch.Tensor]
"""``probs -> probs`` over the last axis (float64), as the discrete samplers' ``transform=`` takes it."""

__all__ = [
    "DEFAULT_SAMPLER",
    "TextSample",
    "add_sample_text_parser",
    "generate_text",
    "reference_ngram",
    "sampling_transform",
]

DEFAULT_SAMPLER = "confidence"
"""The default ``--sampler``: most confident position first. At the default 64 steps (one per character) the
confidence-type orders (confidence, margin, entropy) have the lowest reference-n-gram NLL on the shipped model, at
the entropy of real text (``python -m benchmarks text``); at 16 steps or fewer ``ancestral`` and ``random`` do
better."""


@lru_cache(maxsize=2)
def reference_ngram(order: int = 5) -> KneserNey:
    """The reference Kneser–Ney model of the shipped corpus's training split (fitted once per process, ≈ 1 s)."""
    from .discrete.corpus import VOCAB_SIZE, load_corpus
    from .discrete.ngram import fit_kneser_ney

    return fit_kneser_ney(load_corpus().train, VOCAB_SIZE, order)


def sampling_transform(
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, min_p: float | None = None
) -> ProbabilityTransform | None:
    """``probs -> probs`` applying temperature, then top-k, top-p and min-p (those given); ``None`` if none is."""
    from .discrete import categorical

    steps: list[Any] = []
    if temperature != 1.0:
        steps.append(lambda p: categorical.temperature(p, temperature))
    if top_k is not None:
        steps.append(lambda p: categorical.top_k(p, top_k))
    if top_p is not None:
        steps.append(lambda p: categorical.top_p(p, top_p))
    if min_p is not None:
        steps.append(lambda p: categorical.min_p(p, min_p))
    if not steps:
        return None

    def transform(p: torch.Tensor) -> torch.Tensor:
        for step in steps:
            p = step(p)
        return p

    return transform


class TextSample:
    """Generated tokens with their texts and figures: ``nfe``, ``rows``, ``seconds``, per-text ``entropy`` and
    ``nll`` (nats/char under the reference n-gram)."""

    def __init__(self, tokens: torch.Tensor, nfe: int, rows: int, seconds: float, ngram_order: int) -> None:
        from .discrete.corpus import VOCAB_SIZE, decode
        from .discrete.ngram import sequence_entropy

        self.tokens, self.nfe, self.rows, self.seconds = tokens, nfe, rows, seconds
        self.texts = [decode(row) for row in tokens]
        self.entropy = sequence_entropy(tokens, VOCAB_SIZE)
        self.nll = reference_ngram(ngram_order).nll(tokens)

    def summary(self) -> dict[str, float]:
        nll = float(self.nll.mean())
        return {
            "nfe": self.nfe,
            "rows": self.rows,
            "seconds": self.seconds,
            "entropy": float(self.entropy.mean()),
            "nll_nats_per_char": nll,
            "nll_bits_per_char": nll / math.log(2),
        }


def generate_text(
    model: CountingMaskedDenoiser,
    sampler: str,
    *,
    batch: int,
    length: int,
    steps: int,
    seed: int,
    transform: ProbabilityTransform | None = None,
    cache: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    ngram_order: int = 5,
    **options: Any,
) -> TextSample:
    """Run ``sampler`` on ``model`` from all masks; ``steps`` is passed unless the sampler chooses its own."""
    from .discrete import all_masked, registry

    spec = registry.spec(sampler)
    if not spec.own_steps:
        options["steps"] = steps
    model.reset_counter()
    start = time.perf_counter()
    tokens = spec(
        model,
        all_masked(batch, length, model.vocab_size),
        seed=seed,
        transform=transform,
        cache=cache,
        callback=callback,
        **options,
    )
    return TextSample(tokens, model.nfe, model.rows, time.perf_counter() - start, ngram_order)


class _RevealBar:
    """Progress (:class:`~diffsample.progress.ProgressBar`): the share of revealed characters after each step."""

    def __init__(self, mask: int, enabled: bool) -> None:
        self.mask, self.steps, self.bar = mask, 0, ProgressBar(enabled)

    def __call__(self, info: dict[str, Any]) -> None:
        self.steps += 1
        if self.bar.enabled:
            done = float((info["z"] != self.mask).double().mean())
            self.bar.draw(done, 1, f"{100 * done:5.1f}% revealed, step {self.steps}")

    def close(self) -> None:
        self.bar.close()


def _run_sample_text(args: argparse.Namespace) -> int:
    from .files import atomic_write_text
    from .models.text import load_text_model

    model = load_text_model()
    if not 1 <= args.length <= model.length:
        raise ValueError(f"--length must lie in [1, {model.length}], got {args.length}")
    if args.threads:
        torch.set_num_threads(args.threads)
    bar = _RevealBar(model.vocab_size, not args.quiet)
    transform = sampling_transform(args.temperature, args.top_k, args.top_p, args.min_p)
    out = generate_text(
        model,
        args.sampler,
        batch=args.batch,
        length=args.length,
        steps=args.steps,
        seed=args.seed,
        transform=transform,
        cache=not args.no_cache,
        callback=bar,
    )
    bar.close()
    for text in out.texts:
        print(text)
    s = out.summary()
    print(
        f"\nsampler {args.sampler}, {args.batch} × {args.length} characters, seed {args.seed}: NFE {s['nfe']} "
        f"({s['rows']} sequence evaluations), {s['seconds']:.2f}s"
    )
    print(
        f"entropy {s['entropy']:.3f} nats (per text, of its own characters); "
        f"NLL under the reference 5-gram {s['nll_nats_per_char']:.3f} nats/char "
        f"({s['nll_bits_per_char']:.3f} bits/char)"
    )
    if args.out:
        record = {
            "sampler": args.sampler,
            "steps": args.steps,
            "length": args.length,
            "batch": args.batch,
            "seed": args.seed,
            "temperature": args.temperature,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "min_p": args.min_p,
            "cache": not args.no_cache,
            **s,
            "texts": out.texts,
        }
        atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
        print(f"-> {args.out}")
    return 0


def add_sample_text_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sample-text`` on the ``diffsample`` subparsers."""
    from .discrete import registry

    p = sub.add_parser("sample-text", help="generate text from the shipped masked diffusion language model")
    p.add_argument(
        "--sampler",
        default=DEFAULT_SAMPLER,
        choices=registry.available(),
        help=f"masked sampler (default {DEFAULT_SAMPLER})",
    )
    p.add_argument(
        "--steps",
        "--nfe",
        dest="steps",
        type=int,
        default=64,
        help="sampler steps, the NFE budget (a time-free model with caching may use fewer; "
        "first_hitting and entropy_bounded choose their own)",
    )
    p.add_argument("--length", type=int, default=64, help="characters per text (at most the model's 64)")
    p.add_argument("--batch", type=int, default=4, help="number of texts")
    p.add_argument("--seed", type=int, default=0, help="seed (text i is the same whatever --batch)")
    p.add_argument("--temperature", type=float, default=1.0, help="token temperature (0: argmax)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely characters")
    p.add_argument("--top-p", type=float, default=None, help="nucleus: smallest set of this probability mass")
    p.add_argument("--min-p", type=float, default=None, help="keep characters with p ≥ min_p · max p")
    p.add_argument("--no-cache", action="store_true", help="call the model at every step (no reuse)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    p.add_argument("--out", default=None, help="write texts and figures to this JSON (nothing written otherwise)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_sample_text)
