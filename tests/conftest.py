"""Test-session settings: tiny tensors run fastest single-threaded on the 2-core CI machines."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def k_sampling():
    """k-diffusion's sampling module loaded without its heavy imports (peer tests skip without it)."""
    pytest.importorskip("scipy")
    try:
        from benchmarks.peers import load_k_sampling

        return load_k_sampling()
    except ImportError as exc:
        pytest.skip(f"k-diffusion unavailable: {exc}")
