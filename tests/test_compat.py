"""pvtfpn_mm.compat: the fallbacks for the oldest supported stack behave as the newest.

Runs on both stacks (./test.sh): on the newest the fallbacks are compared with timm's and
torch's own functions, on the oldest they are the ones in use.
"""

import ast
import glob
import os
import os.path as osp

import pytest
import torch
from timm.layers import DropPath

from pvtfpn_mm import compat
from pvtfpn_mm.models.backbones import PVTv2

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CASES = [
    (0.1, [2, 2, 2, 2], True),
    (0.3, [3, 4, 6, 3], True),
    (0.0, [1, 1], True),
    (0.2, [2, 3], False),
    (0.1, 7, False),
    (0.5, 1, False),
]


@pytest.mark.parametrize('rate, depths, stagewise', CASES)
def test_drop_path_rates_equal_timms(rate, depths, stagewise):
    timm_layers = pytest.importorskip('timm.layers')
    if not hasattr(timm_layers, 'calculate_drop_path_rates'):
        pytest.skip(
            'this timm has no calculate_drop_path_rates (the fallback is in use)'
        )
    assert compat._drop_path_rates(
        rate, depths, stagewise
    ) == timm_layers.calculate_drop_path_rates(rate, depths, stagewise)


def test_drop_path_rates_values():
    # timm 0.9's pvt_v2: [x.tolist() for x in torch.linspace(0, rate, sum(depths)).split(depths)]
    rates = compat._drop_path_rates(0.3, [1, 2, 1], stagewise=True)
    expected = [[0.0], [0.1, 0.2], [0.3]]
    assert len(rates) == 3
    for got, want in zip(rates, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-7)
    assert compat._drop_path_rates(0.2, [1, 2]) == pytest.approx(
        [0.0, 0.1, 0.2], abs=1e-7
    )
    with pytest.raises(
        ValueError, match='stagewise=True requires depths to be a list'
    ):
        compat._drop_path_rates(0.1, 4, stagewise=True)


def test_pvtv2_uses_the_schedule():
    model = PVTv2(arch='b0', drop_path_rate=0.3)
    probs = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    rates = [
        x
        for stage in compat._drop_path_rates(0.3, [2, 2, 2, 2], True)
        for x in stage
    ]
    assert len(probs) == 7  # the first block's rate is 0: no DropPath there
    assert probs == pytest.approx([r for r in rates if r > 0], abs=1e-7)
    assert probs[-1] == pytest.approx(0.3, abs=1e-7)


def test_safe_globals_gate_follows_torch():
    has = hasattr(
        torch.serialization, 'add_safe_globals'
    ) and compat.TORCH_VERSION >= compat.Version('2.5')
    assert compat.HAS_SAFE_GLOBALS == has
    from pvtfpn_mm.weights import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()  # a no-op where torch lacks it, idempotent elsewhere
    allow_mmengine_checkpoints()


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f.attr
                if isinstance(f, ast.Attribute)
                else getattr(f, 'id', '')
            )
            yield name, node


def test_every_torch_load_of_ours_is_safe():
    """torch < 2.6 loads with weights_only=False by default: every load of ours says True."""
    loads = 0
    for path in glob.glob(
        osp.join(ROOT, 'pvtfpn_mm', '**', '*.py'), recursive=True
    ):
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for name, call in _calls(tree):
            if name not in (
                'load',
                'load_state_dict_from_url',
                'load_state_dict',
            ):
                continue
            base = (
                call.func.value
                if isinstance(call.func, ast.Attribute)
                else None
            )
            base_name = getattr(base, 'id', getattr(base, 'attr', ''))
            if name == 'load' and base_name != 'torch':
                continue
            if name == 'load_state_dict' and not any(
                k.arg == 'weights_only' for k in call.keywords
            ):
                continue  # nn.Module.load_state_dict; timm's gets weights_only when it has it
            loads += 1
            flags = {k.arg: k.value for k in call.keywords}
            assert 'weights_only' in flags, (
                f'{path}:{call.lineno} {name} without weights_only'
            )
            value = flags['weights_only']
            assert isinstance(value, ast.Constant) and value.value is True, (
                f'{path}:{call.lineno} {name}(weights_only=...) must be True'
            )
    assert loads >= 2


def test_read_state_dict(tmp_path):
    from pvtfpn_mm.weights import read_state_dict, timm_load_state_dict

    state = {'module.a.weight': torch.ones(2), 'module.b': torch.zeros(1)}
    path = tmp_path / 'sd.pth'
    torch.save({'state_dict': state, 'epoch': 3}, path)
    got = read_state_dict(str(path))
    assert sorted(got) == ['a.weight', 'b']
    assert torch.equal(got['a.weight'], torch.ones(2))
    via_timm = timm_load_state_dict(str(path))
    assert sorted(via_timm) == ['a.weight', 'b']


def test_safe_load_refuses_arbitrary_pickles(tmp_path):
    from pvtfpn_mm.weights import CheckpointReadError, read_state_dict

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'obj': _Custom()}, path)
    with pytest.raises(CheckpointReadError, match='evil.pth'):
        read_state_dict(str(path))


class _Custom:
    pass


def test_is_compiling():
    assert compat.is_compiling() is False

    def f(x):
        return x + (1.0 if compat.is_compiling() else 0.0)

    torch._dynamo.reset()
    assert torch.compile(f, backend='eager')(torch.zeros(1)).item() == 1.0
    assert f(torch.zeros(1)).item() == 0.0


def test_is_autocast_enabled():
    assert compat.is_autocast_enabled('cpu') is False
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert compat.is_autocast_enabled('cpu') is True
        assert compat.is_autocast_enabled('cuda') is False
    assert compat.is_autocast_enabled('cpu') is False


def _sdpa_backward_node(q, k):
    return type(
        torch.nn.functional.scaled_dot_product_attention(q, k, k).grad_fn
    ).__name__


def test_math_sdpa_leaves_the_flash_kernel():
    """CPU bfloat16 flash attention's backward corrupts memory on torch 2.1 (2 threads);
    the math backend is plain matmul / softmax ops."""
    q = torch.randn(1, 2, 16, 8).bfloat16().requires_grad_()
    k = torch.randn(1, 2, 4, 8).bfloat16().requires_grad_()
    assert 'Flash' in _sdpa_backward_node(q, k)
    with compat.math_sdpa():
        assert 'Flash' not in _sdpa_backward_node(q, k)
    assert 'Flash' in _sdpa_backward_node(q, k)  # restored
    assert compat.CPU_BF16_FLASH_SDPA_SAFE is (
        compat.TORCH_VERSION >= compat.Version('2.14')
    )


@pytest.mark.parametrize('safe', [True, False])
def test_cpu_amp_attention_backend(monkeypatch, safe):
    from pvtfpn_mm.engine import CPUAmpOptimWrapper
    from pvtfpn_mm.engine import amp as amp_module

    monkeypatch.setattr(amp_module, 'CPU_BF16_FLASH_SDPA_SAFE', safe)
    model = torch.nn.Linear(8, 8)
    wrapper = CPUAmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1)
    )
    x = torch.randn(1, 2, 16, 8)
    with wrapper.optim_context(model):
        q = model(x)  # bfloat16 under autocast
        node = _sdpa_backward_node(q, model(x[:, :, :4]))
    assert q.dtype == torch.bfloat16
    assert ('Flash' in node) is safe


# ------------------------------------------- mmpretrain 1.2 under transformers >= 4.52

#: A stand-in for transformers 5: every top-level name there, but its ``modeling_utils``
#: lacks ``apply_chunking_to_forward`` & co., so mmpretrain's BLIP (which imports them in
#: a bare ``try``/``except``) subclasses None: ``TypeError: NoneType takes no arguments``.
FAKE_TRANSFORMERS = {
    'transformers-5.0.0.dist-info/METADATA': (
        'Metadata-Version: 2.1\nName: transformers\nVersion: 5.0.0\n'
    ),
    'transformers/__init__.py': (
        "__version__ = '5.0.0'\n"
        'from . import configuration_utils\n'  # torch 2.1's dynamo patches its class
        'from .modeling_utils import PreTrainedModel\n'
        'from .models.auto.auto_factory import _BaseAutoModelClass\n\n\n'
        'def __getattr__(name):\n'
        "    bases = (_BaseAutoModelClass,) if name.startswith('AutoModel') else ()\n"
        "    cls = type(name, bases, {'from_pretrained': classmethod(lambda c: None)})\n"
        '    globals()[name] = cls\n'
        '    return cls\n'
    ),
    'transformers/activations.py': 'ACT2FN = {}\n',
    'transformers/configuration_utils.py': 'class PretrainedConfig: pass\n',
    'transformers/modeling_outputs.py': ''.join(
        f'class {name}: pass\n'
        for name in (
            'BaseModelOutputWithPastAndCrossAttentions',
            'BaseModelOutputWithPoolingAndCrossAttentions',
            'CausalLMOutputWithCrossAttentions',
        )
    ),
    'transformers/modeling_utils.py': 'class PreTrainedModel: pass\n',
    'transformers/models/__init__.py': '',
    'transformers/models/auto/__init__.py': '',
    'transformers/models/auto/auto_factory.py': (
        'class _BaseAutoModelClass:\n'
        '    @classmethod\n'
        '    def from_config(cls, *args, **kwargs):\n'
        '        raise NotImplementedError\n'
    ),
    'transformers/models/bert/__init__.py': '',
    'transformers/models/bert/configuration_bert.py': 'class BertConfig: pass\n',
}


def _raise_in(filename, code):
    """Runs ``code`` as if it were the module ``filename``; returns what it raises."""
    try:
        exec(compile(code, filename, 'exec'), {})
    except Exception as err:
        return err
    raise AssertionError(f'{code!r} raised nothing')


def test_transformers_error_is_recognized(monkeypatch):
    """BLIP's TypeError (transformers >= 4.56) and OFA's ImportError (4.52-4.55), raised
    in mmpretrain's multimodal models, become one error naming both versions and the fix;
    anything else is left to the caller."""
    versions = {'transformers': '5.0.0', 'mmpretrain': '1.2.0'}
    monkeypatch.setattr(compat, '_version', versions.get)
    blip = osp.join(
        'site-packages', 'mmpretrain', 'models', 'multimodal', 'blip', 'lm.py'
    )
    errors = [
        _raise_in(blip, 'class BertPreTrainedModel(None): pass'),
        _raise_in(
            blip.replace('blip', 'ofa'),
            'from os import GenerationMixin',
        ),
    ]
    for err in errors:
        with pytest.raises(compat.IncompatibleTransformersError) as info:
            compat.check_transformers_import(err)
        message = str(info.value)
        assert 'mmpretrain 1.2.0' in message
        assert 'transformers 5.0.0' in message
        assert (
            f'pip install "transformers=={compat.TRANSFORMERS_PIN}"' in message
        )
        assert type(err).__name__ in message
        assert info.value.__suppress_context__  # BLIP's traceback left out
    # elsewhere, or without transformers: not ours to explain
    other = _raise_in(osp.join('mmdet', 'models', 'x.py'), 'import nothing_x')
    assert compat.check_transformers_import(other) is None
    versions['transformers'] = 'not installed'
    assert compat.check_transformers_import(errors[0]) is None


@pytest.mark.slow
def test_import_with_transformers_5_says_what_to_do(tmp_path):
    """``import pvtfpn_mm`` in a fresh process with a transformers 5 stand-in first on the
    path: mmpretrain's real BLIP fails as under transformers 5, and the error is ours."""
    import subprocess
    import sys

    for name, text in FAKE_TRANSFORMERS.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}{ROOT}')
    proc = subprocess.run(
        [sys.executable, '-W', 'ignore', '-c', 'import pvtfpn_mm'],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('pvtfpn_mm.compat.IncompatibleTransformersError: ')
    assert 'with transformers 5.0.0' in last
    assert 'mmpretrain 1.2.0' in last
    assert 'NoneType takes no arguments' in last
    assert f'transformers=={compat.TRANSFORMERS_PIN}' in last
    assert 'language_model.py' not in proc.stderr  # no BLIP traceback
