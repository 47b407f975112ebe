"""The shipped noise-aware digits classifier: accurate on noised held-out digits, and it guides towards a class."""

from __future__ import annotations

import pytest
import torch

import diffsample
from diffsample.errors import DiffsampleError
from diffsample.models import class_accuracy, class_log_prob_potential, load_digits_model, load_noisy_classifier
from diffsample.models.data import classifier_split, digits_data
from diffsample.transforms import classifier_guidance


def test_held_out_accuracy_on_noised_digits() -> None:
    pytest.importorskip("sklearn")
    net = load_noisy_classifier()
    x, y = digits_data()
    _, test = classifier_split()
    gen = torch.Generator().manual_seed(0)
    for sigma, floor in ((0.05, 0.97), (0.3, 0.95), (1.0, 0.6)):
        noisy = x[test] + sigma * torch.randn(x[test].shape, generator=gen)
        with torch.no_grad():
            acc = float((net(noisy, sigma).argmax(1) == y[test]).double().mean())
        assert acc >= floor, (sigma, acc)


def test_classifier_guidance_of_the_unconditional_model_reaches_the_class() -> None:
    model = load_digits_model()
    sigmas = diffsample.steps.karras(8, model.noise_schedule.sigma_min, model.noise_schedule.sigma_max)
    z = diffsample.noise.seeded(0).initial((48, 1, 8, 8), float(sigmas[0]))
    plain = diffsample.sample(model, z, sigmas, "dpmpp_2m")
    guided = classifier_guidance(model, class_log_prob_potential(7), 4.0)
    x = diffsample.sample(guided, z, sigmas, "dpmpp_2m")
    assert class_accuracy(x, 7) >= 0.7 > 0.3 >= class_accuracy(plain, 7)
    assert guided.backward_passes == guided.auxiliary_calls == 8


def test_bad_targets_are_refused() -> None:
    with pytest.raises(DiffsampleError, match="0…9"):
        class_log_prob_potential(10)
