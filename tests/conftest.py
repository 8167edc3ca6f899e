import os
import re
import sys

import pytest
import torch

#: The scripts' helpers (tools/pvtfpn_tools: toy data, quickstart, launcher, benchmark)
#: are imported as the scripts import them: from the tools folder.
TOOLS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'tools')
if TOOLS_DIR not in sys.path:
    sys.path.insert(0, TOOLS_DIR)

# Two cores on the CI machine; keep tests deterministic and small.
torch.set_num_threads(int(os.environ.get('PVTFPN_TEST_THREADS', '2')))

#: The tests ./test.sh also runs on the oldest supported stack (.venv-oldest: torch 2.1,
#: timm 0.9, numpy 1.26, Python 3.10; `pytest -m oldest`), by file or test id: import and
#: registration, compatibility fallbacks, every config (names, index, build, parameters,
#: forward), backbone / neck parity with timm, mmdet and torchvision (and the backbone's
#: CPU fast path against its plain path, with the version-gated checks of pvtfpn_mm.compat
#: in use), weight formats (transformers' PvtV2 too) and safe loading, `.safetensors` files
#: read by runs (below torch 2.5 mmengine's loader reads the other files), install
#: requirements met by the stack,
#: training with a real Runner and resuming, the quickstart data, the argument checks
#: against the upstream classes (timm 0.9's features_only), the import's effects, the GPU
#: recipe's levers on the CPU (torch 2.1 has no fused CPU AdamW: the fallback).
OLDEST_STACK_TESTS = (
    'tests/test_foundation.py',
    'tests/test_compat.py',
    'tests/test_config_index.py',
    'tests/test_configs.py',
    'tests/test_pvt_v2.py',
    'tests/test_mixffn_fused.py',
    'tests/test_mmdeploy.py',
    'tests/test_onednn_ops.py',
    'tests/test_pvt_v2_hooks.py',
    'tests/test_compile.py::test_compiled_backbone_equals_eager_on_every_stack',
    'tests/test_top_down_fpn.py',
    'tests/test_resnet_fpn.py',
    'tests/test_timm_features.py',
    'tests/test_weights.py',
    'tests/test_hf_weights.py',
    'tests/test_reliability.py::test_safetensors_whole_checkpoints_load_on_every_torch',
    'tests/test_checkpoint.py',
    'tests/test_packaging.py::test_install_changes_nothing_in_this_stack',
    'tests/test_tools.py::test_train_and_test_mmdet',
    'tests/test_tools.py::test_train_and_test_mmseg',
    'tests/test_tools.py::test_resume_after_interruption',
    'tests/test_quickstart_data.py',
    'tests/test_model_checks.py',
    'tests/test_import_effects.py',
    'tests/test_training_recipe.py::test_every_lever_leaves_a_cpu_run_working',
    'tests/test_training_recipe.py::test_fused_fallback_run_on_the_cpu',
    'tests/test_training_recipe.py::test_fp32_islands_let_mmdet_parts_run_under_bfloat16',
)


#: Every-variant sweeps: in the fast loop (``-m "not slow"``) only the cases whose test id
#: names b0 or the linear-SRA b2-li, names no PVT-v2 variant (the timm / ResNet / example
#: configs), or is the one variant of its config folder (depth, fpn_concat) run; the
#: other variants are marked ``slow``.
VARIANT_SWEEPS = (
    'tests/test_configs.py::test_config_builds_counts_and_runs',
    'tests/test_pvt_v2.py::test_parity_with_timm_and_mmdet',
    'tests/test_pvt_v2.py::test_param_count_equals_timm',
    'tests/test_release_recipes.py::test_detection_1x_matches_the_release',
    'tests/test_release_recipes.py::test_semantic_fpn_matches_the_release',
    'tests/test_release_recipes.py::test_upernet_follows_mmsegs_swin_upernet_recipe',
    'tests/test_release_recipes.py::test_mask_rcnn_3x',
)
_VARIANT = r'(?<![A-Za-z0-9])b[0-5](?![A-Za-z0-9])'
ANY_VARIANT = re.compile(_VARIANT)
FAST_VARIANTS = re.compile(r'(?<![A-Za-z0-9])b0(?![A-Za-z0-9])|b2[-_]li')
SINGLE_VARIANT_FOLDERS = ('configs/depth/', 'configs/fpn_concat/')


def _slow_variant(nodeid: str) -> bool:
    case = nodeid.partition('[')[2]
    return (
        ANY_VARIANT.search(case) is not None
        and FAST_VARIANTS.search(case) is None
        and not case.startswith(SINGLE_VARIANT_FOLDERS)
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(OLDEST_STACK_TESTS):
            item.add_marker(pytest.mark.oldest)
        if item.nodeid.startswith(VARIANT_SWEEPS):
            if _slow_variant(item.nodeid):
                item.add_marker(pytest.mark.slow)


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


@pytest.fixture
def one_thread():
    """One intra-op thread: on the shared 2-core machine two threads that wait on each
    other made an iteration 5x slower (3 s -> 15-20 s measured under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='session')
def learning_toy(tmp_path_factory):
    """``learning_toy(size, num_train)``: the COCO folder of a toy dataset of ``size``-px
    images (tests/_toy_learning.py ``DATA_ARGS``), written once a session."""
    from _toy_learning import DATA_ARGS

    from pvtfpn_tools.toy_data import write_toy_data

    made: dict = {}

    def get(size: int, num_train: int) -> str:
        if (size, num_train) not in made:
            root = str(tmp_path_factory.mktemp(f'learn{size}_{num_train}'))
            made[size, num_train] = write_toy_data(
                root, img_size=size, **dict(DATA_ARGS, num_train=num_train)
            )['coco']
        return made[size, num_train]

    return get
