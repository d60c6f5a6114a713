import os

import pytest
import torch

# Tests share two cores with each other: keep torch and numba from oversubscribing.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
