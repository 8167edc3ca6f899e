import os

import pytest
import torch

# Two cores on the CI machine; keep tests deterministic and small.
torch.set_num_threads(int(os.environ.get('PVTFPN_TEST_THREADS', '2')))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
