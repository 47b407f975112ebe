"""``discrete.generate`` for Hugging Face masked diffusion LMs: exact laws of LLaDA's and Dream's methods on a
chain bed dressed as an HF model, and agreement and overhead against LLaDA's loop on a tiny random transformer.

``python -m benchmarks hf_generate [--samples 20000] [--sections exact,llada]``.

* ``exact``: ``chain3x6`` (V = 3, L = 6) behind :class:`~diffsample.discrete.beds.hf_chain.ChainLM`; for each
  method and step count, the TV of its enumerated law to the target (:func:`~diffsample.discrete.beds.laws.
  exact_law` of the sampler the method maps to), and the TV of ``--samples`` generations to that enumerated law
  next to the Monte-Carlo floor (``MC/floor`` ≈ 1 means generate samples exactly that law).
* ``dream-counts``: Dream's tokens-per-step rule ``⌊m (1 − s/t)⌋`` on ``linspace(1, eps, N + 1)`` (float32, as
  Dream computes it) against the ``⌈m / steps_left⌉`` split that ``generate`` uses: steps that reveal nothing, the
  largest reveal, and the exact TV to the chain3x6 target of the entropy and margin orders under each rule
  (enumerated with the exact-law kernels of :mod:`diffsample.discrete.beds.laws`).
* ``llada``: a random ``BertForMaskedLM`` (needs ``transformers``); greedy ``low_confidence`` generation with
  blocks, with and without CFG, against LLaDA's ``generate`` loop written out here (the same algorithm, not its
  code): the share of identical sequences and tokens, the forward calls and the wall time of both.
"""

from __future__ import annotations

import argparse
import time

import torch

from diffsample import discrete
from diffsample.cli import str_list
from diffsample.discrete.beds import chain as chains
from diffsample.discrete.beds import laws
from diffsample.discrete.beds.hf_chain import ChainLM
from diffsample.discrete.beds.laws import exact_law
from diffsample.discrete.beds.metrics import empirical_law, monte_carlo_tv, tv
from diffsample.discrete.hf_generate import dream_schedule

from ..report import Column, text_table

__all__ = ["add_arguments", "run"]

SECTIONS = ("exact", "dream-counts", "llada")
EPS = 1e-3

# method label, generate options, the exact sampler it maps to
METHODS: list[tuple[str, dict, str]] = [
    ("llada low_confidence", {"remasking": "low_confidence"}, "sampled_confidence"),
    ("llada random", {"remasking": "random"}, "random"),
    ("dream origin", {"alg": "origin", "eps": EPS}, "ancestral"),
    ("dream maskgit_plus", {"alg": "maskgit_plus"}, "sampled_confidence"),
    ("dream topk_margin", {"alg": "topk_margin"}, "margin"),
    ("dream entropy", {"alg": "entropy"}, "entropy"),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=int, default=20000, help="generations per configuration on chain3x6")
    p.add_argument("--sections", type=str_list, default=list(SECTIONS), help=f"of {', '.join(SECTIONS)}")
    p.add_argument("--llada-batch", type=int, default=16, help="prompts in the llada section")
    p.add_argument("--seed", type=int, default=0)


def exact_table(n: int, seed: int) -> str:
    c = chains.chain3x6()
    target = c.law()
    rows = []
    for label, options, sampler in METHODS:
        for steps, block in ((6, None), (6, 3), (3, None), (2, None)):
            if sampler == "ancestral" and block is not None:
                continue  # exact_law has no block-wise ancestral sampler
            schedule = {"schedule": dream_schedule(EPS)} if sampler == "ancestral" else {}
            law = exact_law(c, sampler, steps, block_length=block, **schedule)
            model = ChainLM(c)
            out = discrete.generate(
                model,
                torch.empty(n, 0, dtype=torch.int64),
                gen_length=c.length,
                steps=steps,
                block_length=block,
                temperature=1.0,
                seed=seed,
                **options,
            )
            q = empirical_law(c, model.chain_ids(out.sequences))
            floor = monte_carlo_tv(law, n)
            rows.append([label, steps, block or c.length, out.nfe, tv(law, target), tv(q, law) / floor])
    cols = [
        Column("method (temperature 1)", "<22"),
        Column("steps", ">5"),
        Column("block", ">5"),
        Column("NFE", ">4"),
        Column("TV(law, target)", ">15.4f"),
        Column("MC/floor", ">8.2f"),
    ]
    return f"{n} generations per row; the exact chain rule has TV 0\n" + text_table(cols, rows)


def dream_counts(gen_length: int, steps: int, eps: float = EPS) -> list[int]:
    """Dream's tokens per step for ``gen_length`` masks in ``steps`` steps (``generation_utils.py``: ``int(m *
    (1 - s / t))``, the rest on the last step, ``t, s`` from a float32 ``linspace(1, eps, steps + 1)``)."""
    times = torch.linspace(1.0, eps, steps + 1, dtype=torch.float32)
    left, counts = gen_length, []
    for i in range(steps):
        k = int(left * (1 - times[i + 1] / times[i])) if i < steps - 1 else left
        counts.append(k)
        left -= k
    return counts


def split_counts(gen_length: int, steps: int) -> list[int]:
    """The ``⌈m / steps_left⌉`` split (LLaDA's ``get_num_transfer_tokens``) that ``generate`` uses."""
    left, counts = gen_length, []
    for i in range(steps):
        k = -(-left // (steps - i))
        counts.append(k)
        left -= k
    return counts


def law_with_counts(chain: chains.MarkovChain, order: str, counts: list[int]) -> torch.Tensor:
    """The exact law of a one-block ``order`` sampler revealing ``counts[i]`` positions at step ``i``."""
    vocab, length = chain.vocab_size, chain.length
    z = torch.full((1, length), vocab, dtype=torch.int64)
    w = torch.ones(1, dtype=torch.float64)
    denoiser = chain.denoiser()
    for k in counts:
        p = denoiser(z, 0.0)
        z, w = laws._ordered_step(z, w, p, order, z == vocab, torch.full((len(z),), k))
        z, w = laws._merge(z, w, vocab)
    return torch.zeros(vocab**length, dtype=torch.float64).index_add_(0, chains.encode(z, vocab), w)


def dream_counts_table() -> str:
    rows = []
    for gen_length, steps in ((64, 64), (256, 256), (256, 128), (512, 512), (128, 32)):
        dream, ours = dream_counts(gen_length, steps), split_counts(gen_length, steps)
        rows.append([gen_length, steps, dream.count(0), max(dream), dream[-1], ours.count(0), max(ours)])
    cols = [
        Column("gen", ">4"),
        Column("steps", ">5"),
        Column("Dream: 0-token steps", ">20"),
        Column("max/step", ">8"),
        Column("last", ">4"),
        Column("split: 0-token steps", ">20"),
        Column("max/step", ">8"),
    ]
    c = chains.chain3x6()
    exact_rows = []
    for order in ("entropy", "margin"):
        for steps in (6, 3):
            dream, ours = dream_counts(c.length, steps), split_counts(c.length, steps)
            exact_rows.append(
                [order, steps, str(dream), tv(law_with_counts(c, order, dream), c.law()), str(ours),
                 tv(law_with_counts(c, order, ours), c.law())]
            )  # fmt: skip
    exact_cols = [
        Column("order", "<8"),
        Column("steps", ">5"),
        Column("Dream counts", ">20"),
        Column("TV", ">7.4f"),
        Column("split counts", ">20"),
        Column("TV", ">7.4f"),
    ]
    return (
        f"eps = {EPS}\n"
        + text_table(cols, rows)
        + "\n\nexact TV to the chain3x6 target (temperature 1)\n"
        + text_table(exact_cols, exact_rows)
    )


def _tiny_bert(seed: int, vocab: int, mask: int) -> torch.nn.Module:
    import transformers

    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=128,
    )
    config.mask_token_id = mask
    model = transformers.AutoModelForMaskedLM.from_config(config).eval()
    with torch.no_grad():  # LLaDA's argmax runs over the mask column too; a trained LLaDA never picks it
        model.cls.predictions.decoder.bias[mask] = -1e4
    return model


@torch.no_grad()
def llada_loop(
    model: torch.nn.Module, prompt: torch.Tensor, steps: int, gen_length: int, block_length: int, cfg: float, mask: int
) -> tuple[torch.Tensor, int]:
    """LLaDA's greedy ``low_confidence`` generation (Nie et al. 2025), written out: blocks, the per-block
    ``m // n`` + remainder split, confidence ``softmax(logits)[argmax]``; returns the tokens and the calls."""
    batch, plen = prompt.shape
    x = torch.full((batch, plen + gen_length), mask, dtype=torch.int64)
    x[:, :plen] = prompt
    blocks = gen_length // block_length
    per_block = steps // blocks
    calls = 0
    for b in range(blocks):
        lo, hi = plen + b * block_length, plen + (b + 1) * block_length
        m = (x[:, lo:hi] == mask).sum(1, keepdim=True)
        counts = m // per_block + (torch.arange(per_block)[None] < m % per_block).to(torch.int64)
        for i in range(per_block):
            masked = x == mask
            if cfg > 0:
                unconditional = x.clone()
                unconditional[:, :plen] = mask
                both = model(torch.cat([x, unconditional])).logits
                logits, un_logits = both.chunk(2)
                logits = un_logits + (cfg + 1) * (logits - un_logits)
                calls += 2
            else:
                logits = model(x).logits
                calls += 1
            x0 = logits.argmax(-1)
            confidence = torch.softmax(logits, -1).gather(-1, x0[..., None])[..., 0]
            confidence[:, hi:] = -torch.inf
            confidence = torch.where(masked, confidence, torch.full_like(confidence, -torch.inf))
            for row in range(batch):
                chosen = torch.topk(confidence[row], int(counts[row, i])).indices
                x[row, chosen] = x0[row, chosen]
    return x, calls


def llada_table(batch: int, seed: int) -> str:
    vocab, mask, plen = 512, 7, 16
    model = _tiny_bert(seed, vocab, mask)
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (batch, plen), generator=g)
    prompt = torch.where(prompt == mask, prompt + 1, prompt)
    rows = []
    for gen_length, steps, block, cfg in ((32, 32, 8, 0.0), (64, 32, 16, 0.0), (32, 16, 32, 1.0)):
        start = time.perf_counter()
        ref, calls = llada_loop(model, prompt, steps, gen_length, block, cfg, mask)
        t_ref = time.perf_counter() - start
        start = time.perf_counter()
        out = discrete.generate(
            model, prompt, gen_length=gen_length, steps=steps, block_length=block, cfg_scale=cfg, temperature=0.0
        )
        t_ours = time.perf_counter() - start
        same_seq = (out.sequences == ref).all(-1).double().mean().item()
        same_tok = (out.generated == ref[:, plen:]).double().mean().item()
        rows.append([gen_length, steps, block, cfg, same_seq, same_tok, calls, out.nfe, t_ref, t_ours])
    cols = [
        Column("gen", ">4"),
        Column("steps", ">5"),
        Column("block", ">5"),
        Column("cfg", ">4.1f"),
        Column("same seq", ">8.3f"),
        Column("same tok", ">8.4f"),
        Column("NFE LLaDA", ">9"),
        Column("NFE ours", ">8"),
        Column("s LLaDA", ">8.3f"),
        Column("s ours", ">7.3f"),
    ]
    head = f"random BertForMaskedLM (V = {vocab}, 2 layers, width 128), {batch} prompts of {plen} tokens, greedy\n"
    return head + text_table(cols, rows)


def run(args: argparse.Namespace) -> int:
    sections = set(args.sections)
    unknown = sections - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    torch.set_num_threads(1)
    if "exact" in sections:
        print("== LLaDA/Dream methods through generate on chain3x6 (exact denoiser as an HF model) ==")
        print(exact_table(args.samples, args.seed))
    if "dream-counts" in sections:
        print("\n== Dream's tokens-per-step rule vs the ceil split (generate) ==")
        print(dream_counts_table())
    if "llada" in sections:
        print("\n== greedy generate vs LLaDA's loop on a tiny random transformer ==")
        try:
            import transformers  # noqa: F401
        except ImportError:
            print("skipped: transformers is not installed (pip install --no-deps -r requirements-peers.txt)")
        else:
            print(llada_table(args.llada_batch, args.seed))
    return 0
