"""The shipped digits minority classifier and the embedding-conditioned digits model (minority guidance, CADS)."""

from __future__ import annotations

import pytest
import torch

from diffsample import sample, steps
from diffsample.errors import ShapeError
from diffsample.models import (
    MINORITY_INFO,
    NULL_LABEL,
    classifier_split,
    load_digits_embedding_model,
    load_digits_model,
    load_minority_classifier,
)
from diffsample.noise import seeded
from diffsample.transforms import assign_levels, minority_guidance, minority_score


def test_embedding_model_is_the_label_model() -> None:
    emb_model, label_model = load_digits_embedding_model(), load_digits_model(conditional=True)
    x = 2 * seeded(0).standard_normal((11, 1, 8, 8))
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, NULL_LABEL])
    for sigma in (0.02, 0.8, 60.0):
        s = torch.full((11,), sigma, dtype=torch.float64)
        want = label_model(x, s, class_labels=labels)
        torch.testing.assert_close(emb_model(x, s, class_embedding=emb_model.label_embedding(labels)), want)
        torch.testing.assert_close(emb_model(x, s)[-1], want[-1])  # no embedding: the null label
    with pytest.raises(ShapeError, match="class_embedding"):
        emb_model(x, torch.ones(11), class_embedding=torch.zeros(3, 128))


def test_minority_classifier_predicts_held_out_levels_above_chance() -> None:
    pytest.importorskip("sklearn")
    from diffsample.models import digits_data

    x, _ = digits_data()
    _, test_idx = classifier_split()
    held_out = x[test_idx]
    scores = minority_score(load_digits_model(), held_out, MINORITY_INFO["score_sigma"], seeds=0, draws=16)
    levels = assign_levels(scores, torch.tensor(MINORITY_INFO["thresholds"]))
    net = load_minority_classifier()
    with torch.no_grad():
        logits = net(held_out + 0.05 * seeded(1).standard_normal(held_out.shape), 0.05)
    assert float((logits.argmax(1) == levels).double().mean()) > 0.35  # 4 levels: chance 0.25
    # ranking the held-out digits by p(top level | x): the minority quarter comes first (AUC well above 1/2)
    p_top = logits.softmax(1)[:, -1]
    top = levels == MINORITY_INFO["levels"] - 1
    auc = float((p_top[top][:, None] > p_top[~top][None, :]).double().mean())
    assert auc > 0.75


def test_minority_guidance_on_digits_counts_its_costs() -> None:
    den = minority_guidance(load_digits_model(), load_minority_classifier(), MINORITY_INFO["target_level"], 2.0)
    sigmas = steps.karras(4, 0.05, 20.0)
    out = sample(den, sigmas[0] * seeded(2).standard_normal((8, 1, 8, 8)), sigmas, solver="dpmpp_2m")
    assert torch.isfinite(out).all()
    assert (den.cost().nfe, den.cost().backward_passes, den.cost().auxiliary_calls) == (4, 4, 4)
