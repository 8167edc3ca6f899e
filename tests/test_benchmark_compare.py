"""tools/benchmark.py compare: ours vs timm / mmdet side by side (tiny sizes, one round:
the mechanics and the report, not the speed)."""

import os.path as osp
import sys

import pytest
import torch

from pvtfpn_tools.benchmark import MODES, compare

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def benchmark_main(argv):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import benchmark
    finally:
        sys.path.pop(0)
    return benchmark.main(argv)


def test_compare_is_a_mode_of_the_one_tool():
    assert 'compare' in MODES
    assert not osp.exists(osp.join(ROOT, 'tools', 'benchmark_backbone.py'))


def test_backbone_part(capsys):
    rows = benchmark_main(
        [
            'compare',
            '--parts',
            'backbone',
            '--archs',
            'b0',
            '--sizes',
            '64x96',
            '--batches',
            '2',
            '--rounds',
            '1',
            '--unfused',
            '--threads',
            '1',
            '--clock',
            'cpu',
        ]
    )
    assert [(r['mode'], r['batch'], r['size']) for r in rows] == [
        ('fwd', 2, '64x96'),
        ('fwd+bwd', 2, '64x96'),
    ]
    for row in rows:
        assert set(row['ms']) == {'ours', 'ours-unfused', 'timm', 'mmdet'}
        assert set(row['ratios']) == {'ours-unfused', 'timm', 'mmdet'}
        assert row['load'].startswith('load ')
    # the same weights: the features agree (mmdet: its eps differs, see test_pvt_v2)
    assert rows[0]['max_diff']['timm'] <= 1e-5
    assert rows[0]['max_diff']['ours-unfused'] <= 1e-5
    assert rows[0]['max_diff']['mmdet'] <= 1e-4
    out = capsys.readouterr().out
    assert (
        'b0 64x96 batch 2 fwd: ours' in out
        and 'timm/ours' in out
        and 'load ' in out
    )


@pytest.mark.slow
def test_train_and_infer_parts(capsys):
    rows = benchmark_main(
        [
            'compare',
            '--parts',
            'peak',
            'train',
            'infer',
            '--pairs',
            'retinanet-b0',
            '--train-size',
            '64x64',
            '--train-rounds',
            '1',
            '--rounds',
            '1',
            '--infer-size',
            '64x64',
            '--threads',
            '1',
        ]
    )
    _, train, infer = rows
    assert set(train['ms']) == {'ours', 'mmdet'} and 'mmdet' in train['ratios']
    # each model's own FLOPs: the same backbone and heads, FPN vs TopDownFPN
    assert set(train['roofline']) == {'ours', 'mmdet'}
    assert all(0 < f < 2 for f in train['roofline'].values())
    assert 0.8 < train['flops']['ours'] / train['flops']['mmdet'] < 1.25
    assert 'roofline' not in infer
    assert list(train['parts']['ours']) == [
        'backbone',
        'neck',
        'heads',
        'loss+assigner',
        'backward',
        'optimizer',
    ]
    assert list(infer['parts']['mmdet']) == [
        'backbone',
        'neck',
        'heads',
        'rest (preprocess, decode, NMS)',
    ]
    for row in (train, infer):
        for parts in row['parts'].values():
            assert all(
                v >= 0 for k, v in parts.items() if k != 'loss+assigner'
            )
    assert 'train retinanet-b0 64x64 batch 2' in capsys.readouterr().out


def test_part_timer_times_and_restores():
    model = torch.nn.Module()
    model.backbone = torch.nn.Linear(4, 4)
    model.neck = torch.nn.Identity()
    timer = compare.PartTimer(model, torch.device('cpu'))
    model.neck(model.backbone(torch.randn(2, 4)))
    # a direct forward call is timed too
    model.backbone.forward(torch.randn(2, 4))
    parts = timer.take()
    assert set(parts) == {'backbone', 'neck'} and timer.take() == {}
    timer.remove()
    assert 'forward' not in vars(model.backbone)


@pytest.mark.parametrize(
    'argv, match',
    [
        (['--rounds', '0'], '--rounds must be >= 1, got 0'),
        (['--train-batch', '0'], '--train-batch must be >= 1, got 0'),
        (['--sizes', '10x10'], 'at least 32x32'),
    ],
)
def test_bad_arguments(argv, match):
    with pytest.raises(ValueError, match=match):
        benchmark_main(
            ['compare', '--parts', 'backbone', '--archs', 'b0'] + argv
        )


def test_cpu_clock_refuses_cuda():
    with pytest.raises(ValueError, match='--clock cpu measures CPU work'):
        compare.rounds_of({'x': lambda: None}, 1, torch.device('cuda'), 'cpu')


def test_counted_flops_depthwise_conv_and_attention():
    """Forward + backward FLOPs: a depthwise convolution's two gradients are its
    forward's FLOPs each (torch's own formula leaves out groups); CPU attention is
    counted (forward: 2 products of 2 * B * H * N * M * d)."""
    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    forward = 2 * 9 * 2 * 8 * 5 * 6
    assert compare.counted_flops(lambda: conv(x)) == forward
    assert (
        compare.counted_flops(lambda: conv(x).sum().backward()) == 3 * forward
    )
    q = torch.randn(2, 3, 10, 4)
    k = torch.randn(2, 3, 7, 4)
    flops = compare.counted_flops(
        lambda: torch.nn.functional.scaled_dot_product_attention(q, k, k)
    )
    assert flops == 2 * (2 * 2 * 3 * 10 * 7 * 4)


def test_counted_flops_counts_our_mlp_op_by_op(monkeypatch):
    """The blocked MLP's backward recomputes fc1 and the convolution: not counted (the
    counter's global module hooks keep the blocked path off already; ``op_by_op`` makes
    sure); the module's own ``fused`` setting is back afterwards."""
    from pvtfpn_mm.models.backbones import pvt_v2
    from pvtfpn_mm.models.backbones.pvt_v2 import MixFFN

    monkeypatch.setattr(pvt_v2, 'FUSED_AUTOGRAD_MIN_BYTES', 0)
    mlp = MixFFN(4, 16)
    mlp.fused = True
    x = torch.randn(2, 5 * 6, 4, requires_grad=True)

    def step():
        mlp(x, (5, 6)).sum().backward()

    forward = 2 * 2 * 30 * (4 * 16 * 2 + 9 * 16)
    flops = compare.counted_flops(step, mlp)
    assert flops == 3 * forward
    assert vars(mlp)['fused'] is True
    plain = MixFFN(4, 16)
    compare.counted_flops(lambda: plain(x, (5, 6)), plain)
    assert 'fused' not in vars(plain)


def test_backbone_part_rooflines(capsys):
    rows = benchmark_main(
        [
            'compare',
            '--parts',
            'peak',
            'backbone',
            '--archs',
            'b0',
            '--sizes',
            '64x64',
            '--batches',
            '1',
            '--rounds',
            '1',
            '--no-mmdet',
            '--threads',
            '1',
        ]
    )
    peak, fwd, fwd_bwd = rows
    assert peak['gflops'] == max(peak['rates'].values()) > 0
    assert 'torch.mm' in peak['rates']
    for row in (fwd, fwd_bwd):
        assert set(row['roofline']) == {'ours', 'timm'}
        assert all(0 < f < 2 for f in row['roofline'].values())
    # forward + backward: about 3 x the forward (attention's backward: 2.5 x)
    assert 2.9 < fwd_bwd['flops'] / fwd['flops'] < 3.2
    assert 'fwd+bwd: ours' in capsys.readouterr().out
