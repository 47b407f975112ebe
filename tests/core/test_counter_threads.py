"""Counters lose no increment when many threads call one denoiser at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from diffsample.denoisers import as_denoiser


def test_concurrent_calls_are_all_counted() -> None:
    den = as_denoiser(lambda x, s: x * 0.5)
    x = torch.zeros(2, 3)

    def work(_: int) -> None:
        for _ in range(2000):
            den(x, 1.0)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert den.nfe == 16000 and den.calls == 16000
