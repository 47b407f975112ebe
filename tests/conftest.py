"""Test-session settings: tiny tensors run fastest single-threaded on the 2-core CI machines."""

import torch

torch.set_num_threads(1)
