"""``import pvtfpn_mm`` does what its docstring lists and nothing else (issue 18).

A fresh process imports what pvtfpn_mm builds on -- torch, numpy, timm, mmcv's layers
and the model packages of mmdet, mmseg and mmpretrain (our heads subclass theirs; their
own imports register their datasets, set environment variables and warning filters) --
records the global state an import could change, imports pvtfpn_mm and records it
again. The
listed effects are: our types in the registries, mmengine's checkpoint globals in
torch's safe-load allowlist, the attention FLOP handle in mmengine's analyzer tables.
Then, in that same process, an mmdet model's own checkpoint (with mmengine's message
hub, as a Runner saves it) still saves and loads through mmengine's own functions.
"""

import json
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    r'''
    import json, logging, os, random, sys, warnings

    import numpy as np
    import torch
    import mmengine.registry as mm_registry
    import mmdet.registry
    import mmseg.registry
    import mmpretrain.registry
    import mmcv.cnn, mmdet.models, mmseg.models, mmpretrain.models, timm
    from mmengine.analysis import complexity_analysis as ca
    from mmengine.registry import Registry
    from mmengine.runner.checkpoint import CheckpointLoader

    def registries():
        out, seen = {}, set()
        for package in (mm_registry, mmdet.registry, mmseg.registry,
                        mmpretrain.registry):
            for name, value in vars(package).items():
                if isinstance(value, Registry) and id(value) not in seen:
                    seen.add(id(value))  # mmdet re-exports mmengine's as MMENGINE_*
                    key = f'{package.__name__}.{name}'
                    out[key] = sorted(value.module_dict)
        return out

    def safe_globals():
        if not hasattr(torch.serialization, 'get_safe_globals'):
            return []
        return sorted(repr(g) for g in torch.serialization.get_safe_globals())

    def state():
        return dict(
            registries=registries(),
            loader_schemes={k: f'{v.__module__}.{v.__qualname__}'
                            for k, v in CheckpointLoader._schemes.items()},
            flop_ops=sorted(ca._DEFAULT_SUPPORTED_FLOP_OPS),
            act_ops=sorted(ca._DEFAULT_SUPPORTED_ACT_OPS),
            safe_globals=safe_globals(),
            threads=torch.get_num_threads(),
            interop_threads=torch.get_num_interop_threads(),
            default_dtype=str(torch.get_default_dtype()),
            grad=torch.is_grad_enabled(),
            matmul_precision=torch.get_float32_matmul_precision(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            torch_rng=torch.get_rng_state().sum().item(),
            numpy_rng=int(np.random.get_state()[1].sum()),
            python_rng=hash(random.getstate()),
            environ=dict(os.environ),
            sys_path=list(sys.path),
            warning_filters=[repr(f) for f in warnings.filters],
            root_logger=[logging.getLogger().level,
                         [repr(h) for h in logging.getLogger().handlers]],
            default_scope=repr(mm_registry.DefaultScope.get_current_instance()),
        )

    before = state()
    before_modules = set(sys.modules)
    import pvtfpn_mm  # noqa: E402
    after = state()
    added_modules = sorted(set(sys.modules) - before_modules)
    # what the import added: torch 2.1's torch.onnx (imported by mmengine through
    # torch.distributed.optim) itself imports onnx and onnxruntime where installed
    heavy = sorted(m for m in added_modules
                   if m.split('.')[0] in ('pvtfpn_tools', 'onnx', 'onnxruntime',
                                          'onnxscript')
                   or m.startswith('pvtfpn_mm.deploy'))

    # an mmdet model's own checkpoint, saved and loaded by mmengine as a Runner does
    from mmdet.models.necks import FPN
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
    src = FPN([8, 16], 8, num_outs=2)
    path = sys.argv[1]
    hub = dict(log_scalars={'loss': HistoryBuffer([1.0, 0.5], [1, 1])},
               runtime_info={'iter': 2})
    save_checkpoint({'state_dict': src.state_dict(), 'message_hub': hub,
                     'meta': {'iter': 2}}, path)
    dst = FPN([8, 16], 8, num_outs=2)
    loaded = load_checkpoint(dst, path, map_location='cpu', strict=True)
    same = all(torch.equal(a, b) for a, b in
               zip(src.state_dict().values(), dst.state_dict().values()))
    print('RESULT ' + json.dumps(dict(
        before=before, after=after, heavy=heavy, added_modules=added_modules,
        loaded_same=same,
        hub_loss=loaded['message_hub']['log_scalars']['loss'].current())))
    '''
)

#: The types import pvtfpn_mm registers, per registry (the package docstring's 1.):
#: backbones and neck in every codebase, each head in the one it is a head of.
OUR_MODELS = ['PVTv2', 'TimmFeatures', 'TopDownFPN']
OUR_SEG_HEADS = ['FPNConcatHead', 'FPNDepthHead']
OUR_CLS_HEADS = ['PyramidClsHead']
OUR_ENGINE = {
    'mmengine.registry.HOOKS': [
        'AtomicCheckpointHook',
        'ChannelsLastHook',
        'StrictLoadHook',
    ],
    'mmengine.registry.RUNNERS': ['SafeRunner'],
    'mmengine.registry.OPTIM_WRAPPERS': ['CPUAmpOptimWrapper'],
}


@pytest.fixture(scope='module')
def effects(tmp_path_factory):
    path = tmp_path_factory.mktemp('effects') / 'fpn.pth'
    out = subprocess.run(
        [sys.executable, '-c', CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith('RESULT '))
    return json.loads(line[len('RESULT ') :])


def test_registries_gain_our_types_only(effects):
    before, after = effects['before'], effects['after']
    expected_added = {name: [] for name in before['registries']}
    for name, added in OUR_ENGINE.items():
        expected_added[name] = added
    # registered by bare name in the downstream codebases' MODELS (registry.py)
    expected_added['mmdet.registry.MODELS'] = OUR_MODELS
    expected_added['mmseg.registry.MODELS'] = OUR_MODELS + OUR_SEG_HEADS
    expected_added['mmpretrain.registry.MODELS'] = OUR_MODELS + OUR_CLS_HEADS
    for name, names in before['registries'].items():
        added = sorted(set(after['registries'][name]) - set(names))
        removed = sorted(set(names) - set(after['registries'][name]))
        assert removed == [], (name, removed)
        assert added == sorted(expected_added[name]), (name, added)


def test_only_the_listed_globals_change(effects):
    before, after = effects['before'], effects['after']
    changed = sorted(
        key
        for key in before
        if key != 'registries' and before[key] != after[key]
    )
    # 2. the safe-load allowlist (torch >= 2.5) and 3. the FLOP handle
    assert set(changed) <= {'safe_globals', 'flop_ops', 'act_ops'}, changed
    assert before['loader_schemes'] == after['loader_schemes']
    for table in ('flop_ops', 'act_ops'):
        added = sorted(set(after[table]) - set(before[table]))
        assert added in ([], ['aten::scaled_dot_product_attention']), added
        assert set(before[table]) <= set(after[table])
    added_globals = sorted(
        set(after['safe_globals']) - set(before['safe_globals'])
    )
    assert set(before['safe_globals']) <= set(after['safe_globals'])
    for entry in added_globals:
        assert any(
            word in entry
            for word in ('HistoryBuffer', 'numpy', 'getattr', 'dtype')
        ), entry


def test_nothing_heavy_is_imported(effects):
    """Neither the tools' helpers (benchmark) nor the optional ONNX export; besides our
    own modules only mmengine's analysis (for the FLOP handle)."""
    assert effects['heavy'] == []
    others = [
        m
        for m in effects['added_modules']
        if m.split('.')[0] != 'pvtfpn_mm'
        and not m.startswith('mmengine.analysis')
    ]
    assert others == []


def test_an_mmdet_checkpoint_still_loads_in_the_same_process(effects):
    assert effects['loaded_same'] is True
    assert effects['hub_loss'] == 0.5
