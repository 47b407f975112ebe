"""Reliability: a call's NFE is its own, so threads may share one denoiser (issue #11)."""

from __future__ import annotations

import threading
import time

import torch

import diffsample as ds
from diffsample.denoisers import CallCounter
from diffsample.testbeds import get_bed


class SlowShared(ds.Denoiser):
    """A test bed that yields the GIL on every call, so concurrent walks interleave their evaluations."""

    def __init__(self) -> None:
        super().__init__()
        self.bed = get_bed("ring2d")

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        time.sleep(0.002)
        return self.bed(x, sigma)


def _inputs(n: int) -> list[torch.Tensor]:
    return [ds.noise.seeded(i).initial((4, 2), 80.0, dtype=torch.float64) for i in range(n)]


def test_generate_threads_share_one_denoiser():
    shared = SlowShared()
    xs = _inputs(8)
    expected = [ds.generate(shared, x, nfe=6, sigma_min=0.002, sigma_max=80.0) for x in xs]
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = ds.generate(shared, xs[i], nfe=6, sigma_min=0.002, sigma_max=80.0)
        except BaseException as err:  # noqa: BLE001 - collected and reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(8):
        assert torch.equal(results[i], expected[i])
    assert shared.nfe == 2 * 8 * 6  # the model still counts every evaluation of both rounds


def test_call_counter_counts_only_its_own_calls():
    shared = get_bed("ring2d")
    shared(torch.zeros(2, 2), 1.0)
    own = CallCounter(shared)
    out = own(torch.zeros(2, 2), 1.0)
    assert own.nfe == 1 and shared.nfe == 2
    assert torch.equal(out, shared(torch.zeros(2, 2), 1.0))


def test_tune_counts_its_own_evaluations():
    calibration = ds.noise.seeded(3).initial((8, 2), 80.0, dtype=torch.float64)
    settings = dict(
        nfe=3,
        sigma_min=0.002,
        sigma_max=80.0,
        calibration=calibration,
        teacher_levels=12,
        refine=1,
        max_evals=4,
        kicks=0,
    )
    quiet = ds.tune(get_bed("ring2d"), **settings).provenance
    shared = SlowShared()
    stop = threading.Event()

    def other_user() -> None:
        while not stop.is_set():
            shared(torch.zeros(2, 2), 1.0)

    thread = threading.Thread(target=other_user)
    thread.start()
    try:
        busy = ds.tune(shared, **settings).provenance
    finally:
        stop.set()
        thread.join()
    assert busy["teacher_nfe"] == quiet["teacher_nfe"]
    assert busy["tuning_nfe"] == quiet["tuning_nfe"]
