"""``discrete.generate`` on a Hugging Face-shaped model whose logits are a chain bed's exact denoiser: the output
law is the enumerated law of the sampler it names (TV at the Monte-Carlo floor), with and without a prompt, in
the LLaDA and Dream conventions. No ``transformers`` needed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from diffsample import discrete
from diffsample.discrete.beds import chain as chains
from diffsample.discrete.beds.hf_chain import ChainLM
from diffsample.discrete.beds.laws import exact_law
from diffsample.discrete.beds.metrics import empirical_law, monte_carlo_tv, tv
from diffsample.discrete.hf_generate import dream_schedule

C = chains.chain3x6()
N = 6000
DRIFT = chains.MarkovChain(  # drifts into token 0: the last positions are the most predictable
    torch.tensor([0.2, 0.4, 0.4], dtype=torch.float64),
    torch.tensor([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.5, 0.2, 0.3]], dtype=torch.float64),
    6,
    "drift",
)


def _generate(model: ChainLM, prompt: torch.Tensor, **options) -> torch.Tensor:
    """Chain tokens ``(N, L)`` of ``generate`` (the prompt included)."""
    out = discrete.generate(model, prompt, seed=0, **options)
    return model.chain_ids(out.sequences)


def _no_prompt() -> torch.Tensor:
    return torch.empty(N, 0, dtype=torch.int64)


CASES = [
    # (generate options, the sampler whose exact law it must have, steps, exact_law options)
    ({"remasking": "low_confidence", "temperature": 1.0, "steps": 6}, "sampled_confidence", 6, {}),
    (
        {"remasking": "low_confidence", "temperature": 1.0, "steps": 4, "block_length": 3},
        "sampled_confidence",
        4,
        {"block_length": 3},
    ),
    ({"remasking": "random", "temperature": 1.0, "steps": 3}, "random", 3, {}),
    ({"alg": "maskgit_plus", "temperature": 1.0, "steps": 3}, "sampled_confidence", 3, {}),
    ({"alg": "topk_margin", "temperature": 1.0, "steps": 2}, "margin", 2, {}),
    ({"alg": "entropy", "temperature": 1.0, "steps": 6, "block_length": 2}, "entropy", 6, {"block_length": 2}),
    ({"alg": "origin", "temperature": 1.0, "steps": 3, "eps": 0.0}, "ancestral", 3, {}),
    ({"alg": "origin", "temperature": 1.0, "steps": 3, "eps": 0.2}, "ancestral", 3, {"schedule": dream_schedule(0.2)}),
]


@pytest.mark.parametrize(("options", "sampler", "steps", "law_options"), CASES)
def test_generate_output_law_is_the_named_samplers_exact_law(
    options: dict, sampler: str, steps: int, law_options: dict
) -> None:
    """LLaDA's and Dream's methods map onto diffsample's samplers (blocks, counts, orders, Dream's ε grid)
    exactly: the empirical law of N generations sits at the Monte-Carlo floor of the enumerated law (the laws
    of different samplers here differ by TV 0.05–0.7, far above the floor of ≈ 0.1 … 0.15)."""
    law = exact_law(C, sampler, steps, **law_options)
    x = _generate(ChainLM(C), _no_prompt(), gen_length=6, **options)
    assert tv(empirical_law(C, x), law) < 1.25 * monte_carlo_tv(law, N)


def test_blocks_after_no_prompt_are_the_ordered_samplers_blocks_bitwise() -> None:
    """generate fills LLaDA's blocks by one ``ordered`` run per block on a window of the sequence; with no prompt
    and the same uniform streams that is ``ordered(block_length=…)`` itself, token for token."""
    model = ChainLM(C)
    out = discrete.generate(model, torch.empty(64, 0, dtype=torch.int64), gen_length=6, steps=4, block_length=3,
                            temperature=1.0, seed=3)  # fmt: skip
    x = discrete.ordered(C.denoiser(), discrete.all_masked(64, 6, 3), 4, order="sampled_confidence", block_length=3,
                         seed=3)  # fmt: skip
    assert torch.equal(model.chain_ids(out.sequences), x)


def test_eps_grid_changes_the_law_it_is_tested_against() -> None:
    """The ε case above is not vacuous: Dream's ε grid moves the three-step ancestral law."""
    assert tv(exact_law(C, "ancestral", 3, schedule=dream_schedule(0.2)), exact_law(C, "ancestral", 3)) > 0.02


def _conditional_law(prefix: list[int]) -> torch.Tensor:
    """The chain's law of whole sequences given their first tokens."""
    seqs, law = C.sequences(), C.law()
    fits = (seqs[:, : len(prefix)] == torch.tensor(prefix)).all(-1)
    return torch.where(fits, law, torch.zeros_like(law)) / law[fits].sum()


@pytest.mark.parametrize(
    ("shift", "options"),
    [
        (False, {"remasking": "random", "temperature": 1.0, "block_length": 2}),
        (True, {"alg": "entropy", "temperature": 1.0, "convention": "dream"}),
    ],
)
def test_one_token_per_step_after_a_prompt_is_the_exact_conditional_law(shift: bool, options: dict) -> None:
    """Orders that depend only on visible tokens, one token per step, exact denoiser: generation after a prompt
    follows ``p(x_{P:} | x_{:P})`` exactly, in LLaDA's convention and in Dream's shifted one (a wrong shift
    would condition each token on the wrong neighbour and land far from it)."""
    prefix = [2, 0]
    model = ChainLM(C, mask_token_id=2, shift=shift)
    prompt = model.hf_ids(torch.tensor(prefix)).expand(N, -1)
    x = _generate(model, prompt, gen_length=4, steps=4, **options)
    law = _conditional_law(prefix)
    assert torch.equal(x[:, :2], torch.tensor(prefix).expand(N, -1))
    assert tv(empirical_law(C, x), law) < 1.25 * monte_carlo_tv(law, N)


def _llada_greedy_reference(steps: int) -> tuple[torch.Tensor, list[list[int]]]:
    """LLaDA's ``generate`` loop (temperature 0, ``low_confidence``, one block) written out directly: the chain
    tokens and the positions revealed at each step."""
    v = DRIFT.vocab_size
    z = torch.full((1, DRIFT.length), v)
    revealed = []
    for i in range(steps):
        p = DRIFT.denoiser()(z, 0.0)[0]
        conf, tok = p.max(-1)
        conf = torch.where(z[0] == v, conf, torch.full_like(conf, -torch.inf))
        k = -(-int((z == v).sum()) // (steps - i))
        chosen = torch.topk(conf, k).indices
        z[0, chosen] = tok[chosen]
        revealed.append(sorted(chosen.tolist()))
    return z, revealed


def _revealed(model: ChainLM, final: torch.Tensor) -> list[list[int]]:
    states = [model.chain_ids(ids)[0] for ids in model.inputs] + [final[0]]
    v = DRIFT.vocab_size
    return [torch.nonzero((a == v) & (b != v)).flatten().tolist() for a, b in zip(states[:-1], states[1:], strict=True)]


def test_greedy_low_confidence_reveals_the_most_confident_positions_first() -> None:
    """At temperature 0 the order follows the model's confidence (a one-hot draw distribution would score
    every position 1 and reveal left to right): tokens and reveal order equal LLaDA's loop written out."""
    model = ChainLM(DRIFT)
    out = discrete.generate(model, torch.empty(1, 0, dtype=torch.int64), gen_length=6, steps=3)
    tokens, revealed = _llada_greedy_reference(3)
    assert torch.equal(model.chain_ids(out.sequences), tokens)
    assert _revealed(model, model.chain_ids(out.sequences)) == revealed
    assert revealed[0] != [0, 1]  # not left to right


def test_calls_are_counted_and_guidance_doubles_them() -> None:
    model = ChainLM(C)
    prompt = model.hf_ids(torch.tensor([[0, 2]]))
    out = discrete.generate(model, prompt, gen_length=4, steps=4, block_length=2, temperature=1.0)
    assert out.nfe == 4 and model.calls == 4 and out.generated.shape == (1, 4)
    model.calls = 0
    guided = discrete.generate(model, prompt, gen_length=4, steps=4, cfg_scale=1.5, temperature=1.0)
    assert guided.nfe == 8 and model.calls == 8
    prompt_masked = [bool((ids[0, :2] == model.mask).all()) for ids in model.inputs[4:]]
    assert prompt_masked == [False, True] * 4  # LLaDA's unconditional branch: the prompt shown as masks
    assert not (guided.sequences == model.mask).any()


class _TimedChainLM(ChainLM):
    """ChainLM that also takes the time under ``timesteps`` and records it."""

    def __init__(self) -> None:
        super().__init__(C)
        self.times: list[torch.Tensor] = []

    def forward(self, input_ids: torch.Tensor, attention_mask=None, position_ids=None, timesteps=None):  # noqa: ANN001, ANN201
        self.times.append(timesteps)
        return super().forward(input_ids)


def test_a_time_conditioned_model_gets_the_time_and_is_not_cached() -> None:
    """With ``timestep_kwarg`` the model receives ``t = 1 − (masked fraction)`` (linear schedule) each step and is
    called every step; the mask id comes from a tokenizer when the config has none."""
    model = _TimedChainLM()
    del model.config.mask_token_id
    tokenizer = SimpleNamespace(mask_token_id=1)
    den = discrete.hf_masked_denoiser(model, tokenizer=tokenizer, timestep_kwarg="timesteps")
    assert not den.time_free and den.mask_token_id == 1
    out = discrete.generate(den, torch.empty(2, 0, dtype=torch.int64), gen_length=6, steps=3, remasking="random")
    expected = torch.tensor([[1.0, 1.0], [4 / 6, 4 / 6], [2 / 6, 2 / 6]], dtype=torch.float32)
    assert out.nfe == 3 and torch.equal(torch.stack(model.times), expected)
