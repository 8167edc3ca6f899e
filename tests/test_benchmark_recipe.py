"""tools/benchmark.py recipe: the GPU training recipe and each lever against fp32 and mmdet
(tiny sizes, one round on the CPU: the mechanics and the report, not the speed). The GPU
run it prepares is in docs/training_recipe.md."""

import json
import os.path as osp
import sys

import pytest
import torch

from pvtfpn_mm.engine import recipe as engine_recipe

from pvtfpn_tools.benchmark import MODES
from pvtfpn_tools.benchmark import recipe as mode

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def benchmark_main(argv):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import benchmark
    finally:
        sys.path.pop(0)
    return benchmark.main(argv)


def test_recipe_is_a_mode_of_the_one_tool():
    assert 'recipe' in MODES
    for name, (ours, *_) in mode.MODELS.items():
        assert osp.isfile(osp.join(ROOT, ours)), name
        assert osp.isfile(osp.join(ROOT, mode.recipe_config(ours))), name


def test_candidates_on_cuda_and_on_the_cpu():
    names = [
        s['name']
        for s in mode.candidate_specs(
            'retinanet-b2', mode.LEVER_ORDER, torch.device('cuda')
        )
    ]
    assert names == [
        'recipe',
        'fp32',
        'mmdet fp32',
        'mmdet amp',
        'recipe amp=False',
        'recipe amp=float16',
        'recipe fused_optimizer=False',
        'recipe channels_last=True',
        'recipe cudnn_benchmark=True',
        'recipe with_cp=True',
        'recipe compile=True',
    ]
    on_cpu = mode.candidate_specs(
        'mask-rcnn-b0', ['amp', 'compile'], torch.device('cpu'), False
    )
    assert [(s['name'], 'skip' in s) for s in on_cpu] == [
        ('recipe', False),
        ('fp32', False),
        ('recipe amp=False', False),
        ('recipe amp=float16', True),
        ('recipe compile=True', True),
    ]
    assert on_cpu[-1]['skip'].startswith('applies on CUDA only')
    assert on_cpu[-1]['options'] == {'gpu_recipe.compile': True}


@pytest.mark.parametrize(
    'args, message',
    [
        (['--batch', '0'], '--batch must be >= 1, got 0'),
        (['--rounds', '0'], '--rounds must be >= 1, got 0'),
        (['--warmup', '-1'], '--warmup must be >= 0, got -1'),
        (['--size', '8x8'], 'at least 32x32'),
    ],
)
def test_bad_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        benchmark_main(['recipe', '--device', 'cpu', *args])


def test_recipe_config_needs_a_1x_config():
    with pytest.raises(ValueError, match='is no 1x config'):
        mode.recipe_config('configs/mask_rcnn/x_ms-3x_coco.py')


@pytest.mark.slow
def test_cuda_levers_build_as_on_cuda(monkeypatch):
    """channels-last and compile as they apply on CUDA (device checks mocked)."""
    calls = []

    def fake_compile(fn, **kwargs):
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(
        engine_recipe, 'channels_last_applies', lambda r, d: True
    )
    monkeypatch.setattr(engine_recipe, 'compile_applies', lambda r, d: True)
    monkeypatch.setattr(torch, 'compile', fake_compile)
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)
    cand = mode.RecipeCandidate(
        mode.recipe_config(mode.MODELS['retinanet-b0'][0]),
        torch.device('cpu'),
        (64, 64),
        1,
        {'gpu_recipe.compile': True, 'gpu_recipe.cudnn_benchmark': True},
    )
    assert cand.amp and cand.channels_last and cand.compiled
    assert calls == [dict(dynamic=True)]
    cl = torch.channels_last
    assert cand.model.neck.lateral_convs[0].conv.weight.is_contiguous(
        memory_format=cl
    )
    assert cand.model.bbox_head.retina_cls.weight.is_contiguous(
        memory_format=cl
    )
    cand.step()
    assert torch.backends.cudnn.benchmark is True


@pytest.mark.slow
def test_tiny_run_on_the_cpu(tmp_path, capsys):
    out_json, out_md = tmp_path / 'r.json', tmp_path / 'r.md'
    results = benchmark_main(
        [
            'recipe',
            '--models',
            'retinanet-b0',
            'mask-rcnn-b0',
            '--size',
            '64x64',
            '--batch',
            '1',
            '--rounds',
            '1',
            '--warmup',
            '1',
            '--profile-rounds',
            '1',
            '--device',
            'cpu',
            '--threads',
            '1',
            '--out-json',
            str(out_json),
            '--out-md',
            str(out_md),
        ]
    )
    assert [r['model'] for r in results] == ['retinanet-b0', 'mask-rcnn-b0']
    for result in results:
        rows = {r['candidate']: r for r in result['rows']}
        assert len(rows) == 11
        for name in (
            'recipe',
            'fp32',
            'mmdet fp32',
            'recipe amp=False',
            'recipe fused_optimizer=False',
            'recipe with_cp=True',
        ):
            assert rows[name]['ms'] > 0 and rows[name]['images_per_s'] > 0, (
                name
            )
        assert rows['recipe']['amp'] is True
        assert rows['recipe amp=False']['amp'] is False
        assert rows['fp32']['speedup_vs_fp32'] == 1.0
        for name in (
            'channels_last=True',
            'cudnn_benchmark=True',
            'compile=True',
        ):
            assert rows[f'recipe {name}']['note'].startswith(
                'applies on CUDA only'
            )
        assert set(result['recipe_parts']) >= {
            'backbone',
            'neck',
            'heads',
            'backward',
            'optimizer',
        }
        assert result['load'].startswith('load ')
    # mmdet's own AMP (no float32 RoI extraction): mmcv's NMS / RoIAlign refuse bfloat16
    mask = {r['candidate']: r for r in results[1]['rows']}
    assert 'BFloat16' in mask['mmdet amp']['error']
    assert {r['candidate']: r for r in results[0]['rows']}['mmdet amp'][
        'ms'
    ] > 0
    saved = json.loads(out_json.read_text())
    assert [r['model'] for r in saved['results']] == [
        'retinanet-b0',
        'mask-rcnn-b0',
    ]
    text = out_md.read_text()
    assert '| recipe with_cp=True |' in text and 'recipe per part:' in text
    assert 'recipe: ' in capsys.readouterr().out
