"""The shipped text model: corpus provenance and split, the masked-denoiser contract, sampling conventions
(shape, batch invariance bitwise, caching), the held-out bound against the unigram entropy, and the CLI."""

from __future__ import annotations

import hashlib
import json
import lzma
import math

import pytest
import torch

from diffsample import discrete
from diffsample.cli import main
from diffsample.discrete.categorical import entropy
from diffsample.discrete.contracts import MaskedDenoiser
from diffsample.discrete.corpus import CORPUS_FILE, SYMBOLS, VOCAB_SIZE, decode, encode, is_heldout, load_corpus
from diffsample.models.text import load_text_model, text_model_info
from diffsample.models.text.elbo import heldout_nll


@pytest.fixture(scope="module")
def model():
    return load_text_model()


def test_shipped_corpus_matches_its_provenance_and_splits_by_file() -> None:
    info = json.loads(CORPUS_FILE.with_name("stdlib_text.json").read_text())
    assert hashlib.sha256(CORPUS_FILE.read_bytes()).hexdigest() == info["sha256"]
    assert CORPUS_FILE.stat().st_size <= 2_000_000 and info["symbols"] == SYMBOLS
    corpus = load_corpus()
    # one space joins the files of a split, so counts add up to the characters plus the separators
    assert corpus.train.numel() + corpus.heldout.numel() == info["characters"] + info["files"] - 2
    assert corpus.heldout.numel() == info["heldout_characters"] + info["heldout_files"] - 1
    assert int(corpus.train.max()) < VOCAB_SIZE and 0.05 < info["heldout_files"] / info["files"] < 0.2
    assert info["heldout_files"] == sum(
        is_heldout(line.split(b"\t", 1)[0].decode()) for line in lzma.decompress(CORPUS_FILE.read_bytes()).splitlines()
    )


def test_encode_decode_round_trip_and_other_symbol() -> None:
    text = "def f(x): return x**2 - [ok?]"
    assert decode(encode(text)) == text
    assert decode(encode("été")) == "~t~"


def test_loader_follows_the_masked_denoiser_contract(model) -> None:
    assert isinstance(model, MaskedDenoiser) and model.time_free and model.vocab_size == VOCAB_SIZE
    z = torch.full((2, 64), VOCAB_SIZE)
    z[0, :5] = encode("hello")
    p = model(z, 0.3)
    assert p.dtype == torch.float64 and p.shape == (2, 64, VOCAB_SIZE)
    assert torch.allclose(p.sum(-1), torch.ones(2, 64, dtype=torch.float64))
    assert torch.equal(p[0, :5].argmax(-1), z[0, :5]) and p[0, :5].max(-1).values.eq(1).all()  # carry-over
    assert torch.equal(model(z, 0.9), p) and model.nfe == 2  # time-free


def test_heldout_bound_beats_the_unigram_entropy(model) -> None:
    """The MDLM bound on held-out windows lies far below the entropy of the character frequencies (what a model
    ignoring context gets), and agrees with the figure recorded at training time."""
    corpus = load_corpus()
    freq = torch.bincount(corpus.train, minlength=VOCAB_SIZE).double()
    windows = corpus.heldout[: 64 * 128].reshape(128, 64)
    nats, se = heldout_nll(model.net, windows, VOCAB_SIZE, draws=2, seed=0)
    assert nats + 4 * se < float(entropy(freq / freq.sum())) - 0.5
    recorded = text_model_info()["evaluation"]["heldout_nats_per_char"]
    assert abs(nats - recorded) < 6 * se + 0.1


@pytest.mark.parametrize("name", ["ancestral", "first_hitting", "confidence", "remdm"])
def test_samples_have_the_shape_no_masks_and_do_not_depend_on_the_batch(model, name: str) -> None:
    steps = None if discrete.spec(name).own_steps else 8
    run = discrete.get(name)
    big = run(model, discrete.all_masked(3, 32, VOCAB_SIZE), steps, seed=[5, 6, 7])
    assert big.shape == (3, 32) and (big < VOCAB_SIZE).all()
    for i, s in enumerate([5, 6, 7]):
        assert torch.equal(run(model, discrete.all_masked(1, 32, VOCAB_SIZE), steps, seed=[s]), big[i : i + 1])


def test_caching_saves_calls_and_changes_nothing(model) -> None:
    z = discrete.all_masked(2, 64, VOCAB_SIZE)
    model.reset_counter()
    cached = discrete.ancestral(model, z, 256, seed=1)
    nfe_cached, rows_cached = model.nfe, model.rows
    model.reset_counter()
    plain = discrete.ancestral(model, z, 256, seed=1, cache=False)
    assert torch.equal(cached, plain) and model.nfe == 256 and nfe_cached < 128 and rows_cached < model.rows


def test_cli_sample_text_prints_figures_and_writes_only_with_out(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sample-text", "--batch", "2", "--steps", "8", "--length", "48", "--top-p", "0.9"]) == 0
    out = capsys.readouterr()
    assert "NFE" in out.out and "NLL under the reference 5-gram" in out.out and "revealed" in out.err
    assert list(tmp_path.iterdir()) == []
    assert main(["sample-text", "--batch", "2", "--steps", "8", "--quiet", "--out", "t.json"]) == 0
    record = json.loads((tmp_path / "t.json").read_text())
    assert [len(t) for t in record["texts"]] == [64, 64] and record["nfe"] <= 8
    assert math.isfinite(record["nll_nats_per_char"]) and 0 < record["entropy"] < math.log(VOCAB_SIZE)
