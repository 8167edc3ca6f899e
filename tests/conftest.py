import os

import pytest
import torch

# Two cores on the CI machine; keep tests deterministic and small.
torch.set_num_threads(int(os.environ.get('PVTFPN_TEST_THREADS', '2')))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _keep_default_scope():
    """An mmengine runner makes its ``default_scope`` the current one for the whole
    process (e.g. 'mmengine' in tests/test_checkpoint.py); put the previous one back after
    each test, so later tests build mmdet / mmseg models by their bare names as before."""
    from mmengine.registry import DefaultScope
    before = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(before)
