""" "schedule" means one thing per keyword: ``noise_schedule`` (α/σ(t)) and ``step_schedule`` (the σ array).

The old spellings still work: each gives the same result as the new one, warns with a DeprecationWarning
pointing at the caller, and refuses to be given together with the new one.
"""

from __future__ import annotations

import pytest
import torch

import diffsample as ds
from diffsample.generate import configure, default_choice
from diffsample.parameterization import ModelDenoiser
from diffsample.schedules import DiscreteVP, get_schedule
from diffsample.testbeds import ring2d
from diffsample.transforms import epsilon_scaling
from diffsample.transforms.time_shift import training_levels

TABLE = get_schedule("scaled_linear")


def _eps_network(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.1 * x + 1e-4 * t.reshape(-1, *([1] * (x.dim() - 1)))


def _deprecated(match: str = "deprecated"):
    return pytest.warns(DeprecationWarning, match=match)


def test_model_denoiser_takes_and_exposes_the_old_schedule_spelling():
    new = ModelDenoiser(_eps_network, noise_schedule=TABLE)
    with _deprecated("keyword schedule= is deprecated; use noise_schedule=") as record:
        old = ModelDenoiser(_eps_network, schedule=TABLE)
    assert [w.filename for w in record] == [__file__]
    x, sigma = torch.randn(3, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0.5, 2.0, 9.0])
    assert torch.equal(new(x, sigma), old(x, sigma))
    with _deprecated("attribute schedule is deprecated; use noise_schedule") as record:
        assert new.schedule is new.noise_schedule is TABLE
    assert [w.filename for w in record] == [__file__]
    with pytest.raises(TypeError, match="both noise_schedule= and its deprecated spelling schedule="):
        ModelDenoiser(_eps_network, noise_schedule=TABLE, schedule=TABLE)


def test_the_digits_network_and_the_diffusers_parameterization_keep_the_old_attribute():
    from diffsample.integrations.diffusers_model import DiffusersParameterization
    from diffsample.models import load_digits_model

    model = load_digits_model()
    with _deprecated():
        assert model.schedule is model.noise_schedule
    with _deprecated():
        assert model.network.schedule is model.network.noise_schedule
    param = DiffusersParameterization(TABLE, "eps")
    with _deprecated():
        assert param.schedule is param.noise_schedule is TABLE


def test_epsilon_scaling_and_training_levels_accept_the_old_keyword():
    vp = ds.schedules.ContinuousVPLinear()
    bed, x, sigma = ring2d(), torch.randn(4, 2, generator=torch.Generator().manual_seed(1)), torch.full((4,), 3.0)
    new = epsilon_scaling(bed, -0.1, 1.1, noise_schedule=vp)
    with _deprecated():
        old = epsilon_scaling(bed, -0.1, 1.1, schedule=vp)
    assert torch.equal(new(x, sigma), old(x, sigma))
    with _deprecated():
        assert old.schedule is vp
    with _deprecated():
        assert torch.equal(training_levels(schedule=TABLE, n=50), training_levels(TABLE, 50))


def test_configure_accepts_the_old_schedule_keyword_and_attributes():
    new = configure(8, 0.002, 80.0, step_schedule="karras")
    with _deprecated("keyword schedule= is deprecated; use step_schedule="):
        old = configure(8, 0.002, 80.0, schedule="karras")
    assert torch.equal(new.sigmas, old.sigmas)
    assert [getattr(new, k) for k in ("solver", "options", "step_schedule", "nfe")] == [
        getattr(old, k) for k in ("solver", "options", "step_schedule", "nfe")
    ]
    with _deprecated():
        assert old.schedule == old.step_schedule == "karras"
    choice = default_choice(8)
    with _deprecated():
        assert choice.schedule == choice.step_schedule
    with _deprecated():
        assert choice.schedule_options == choice.step_schedule_options


def test_the_diffusers_scheduler_keeps_its_old_table_attribute():
    pytest.importorskip("diffusers")
    from diffsample.integrations import DiffsampleScheduler

    scheduler = DiffsampleScheduler()
    assert isinstance(scheduler.noise_schedule, DiscreteVP)
    with _deprecated():
        assert scheduler.schedule is scheduler.noise_schedule
