import os

import pytest
import torch

# Two cores on the CI machine; keep tests deterministic and small.
torch.set_num_threads(int(os.environ.get('PVTFPN_TEST_THREADS', '2')))

#: The tests ./test.sh also runs on the oldest supported stack (.venv-oldest: torch 2.1,
#: timm 0.9, numpy 1.26, Python 3.10; `pytest -m oldest`), by file or test id: import and
#: registration, compatibility fallbacks, every config (names, index, build, parameters,
#: forward), backbone / neck parity with timm, mmdet and torchvision (and the backbone's
#: CPU fast path against its plain path, with the version-gated checks of pvtfpn_mm.compat
#: in use), weight formats and safe loading, install requirements met by the stack,
#: training with a real Runner and resuming, the quickstart data.
OLDEST_STACK_TESTS = (
    'tests/test_foundation.py',
    'tests/test_compat.py',
    'tests/test_config_index.py',
    'tests/test_configs.py',
    'tests/test_pvt_v2.py',
    'tests/test_mixffn_fused.py',
    'tests/test_pvt_v2_hooks.py',
    'tests/test_compile.py::test_compiled_backbone_equals_eager_on_every_stack',
    'tests/test_top_down_fpn.py',
    'tests/test_resnet_fpn.py',
    'tests/test_timm_features.py',
    'tests/test_weights.py',
    'tests/test_checkpoint.py',
    'tests/test_packaging.py::test_install_changes_nothing_in_this_stack',
    'tests/test_tools.py::test_train_and_test_mmdet',
    'tests/test_tools.py::test_train_and_test_mmseg',
    'tests/test_tools.py::test_resume_after_interruption',
    'tests/test_quickstart_data.py',
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(OLDEST_STACK_TESTS):
            item.add_marker(pytest.mark.oldest)


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
