"""TopDownFPN: the notes' equations, odd sizes, parity with mmdet/torchvision, errors."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import (
    LastLevelMaxPool,
    LastLevelP6P7,
)

import pvtfpn_mm  # noqa: F401  (registers the models)
from pvtfpn_mm.models.necks import TopDownFPN

MODES = ('nearest', 'bilinear')
# PVT-v2 feature sizes of a 67x93 image: ceil(67/4)=17, ceil(93/4)=24, then /2 ceil.
ODD_SIZES = [(17, 24), (9, 12), (5, 6), (3, 3)]
PVT_B2_CHANNELS = [64, 128, 320, 512]
SMALL_CHANNELS = [3, 5, 7, 9]


def make_feats(channels, sizes=ODD_SIZES, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, h, w, generator=gen)
        for c, (h, w) in zip(channels, sizes, strict=True)
    ]


def randomize_(module, seed=1):
    """Non-trivial weights and biases (Xavier init leaves biases at 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module


def max_abs_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def assert_same_outputs(ours, theirs, atol=1e-5):
    assert len(ours) == len(theirs)
    for i, (x, y) in enumerate(zip(ours, theirs, strict=True)):
        assert x.shape == y.shape, f'level {i}: {x.shape} vs {y.shape}'
        torch.testing.assert_close(x, y, rtol=0, atol=atol, msg=f'level {i}')


# --------------------------------------------------------------------------- equations
@pytest.mark.parametrize('mode', MODES)
def test_equations_of_the_notes(mode):
    """L_i = 1x1(C_i); P_top = L_top; P_i = L_i + up(P_{i+1}); out_i = 3x3(P_i)."""
    neck = randomize_(TopDownFPN(SMALL_CHANNELS, 4, upsample_mode=mode)).eval()
    feats = make_feats(SMALL_CHANNELS)
    outs = neck(feats)

    def conv(module, x, padding):
        return F.conv2d(
            x, module.conv.weight, module.conv.bias, padding=padding
        )

    lat = [
        conv(m, c, 0) for m, c in zip(neck.lateral_convs, feats, strict=True)
    ]
    p = [None] * 4
    p[3] = lat[3]
    for i in (2, 1, 0):
        up = F.interpolate(
            p[i + 1],
            size=lat[i].shape[2:],
            mode=mode,
            align_corners=False if mode == 'bilinear' else None,
        )
        p[i] = lat[i] + up
    expected = [conv(neck.fpn_convs[i], p[i], 1) for i in range(4)]
    assert len(outs) == 4
    assert_same_outputs(outs, expected, atol=1e-6)


def test_upsample_has_no_parameters_and_modes_differ():
    neck = TopDownFPN(SMALL_CHANNELS, 4)
    # Only the 4 laterals (1x1) and 4 smoothing convs (3x3) carry parameters.
    expected = sum(c * 4 + 4 for c in SMALL_CHANNELS) + 4 * (4 * 4 * 9 + 4)
    assert sum(p.numel() for p in neck.parameters()) == expected
    randomize_(neck)
    feats = make_feats(SMALL_CHANNELS)
    nearest = neck(feats)
    neck.upsample_mode = 'bilinear'
    bilinear = neck(feats)
    # The coarsest level has nothing upsampled into it; the others differ.
    torch.testing.assert_close(nearest[3], bilinear[3], rtol=0, atol=0)
    assert all(
        (n - b).abs().max() > 1e-3
        for n, b in zip(nearest[:3], bilinear[:3], strict=True)
    )


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize(
    'kwargs, expected_sizes',
    [
        (dict(), ODD_SIZES),
        # RetinaNet: from C3, 5 outputs, P6/P7 by stride-2 convs (ceil halving)
        (
            dict(start_level=1, num_outs=5, extra_source='input'),
            ODD_SIZES[1:] + [(2, 2), (1, 1)],
        ),
        # Mask R-CNN: from C2, 5 outputs, P6 by stride-2 max-pool
        (
            dict(start_level=0, num_outs=5, extra_source='pool'),
            ODD_SIZES + [(2, 2)],
        ),
        (
            dict(start_level=2, num_outs=4, extra_source='lateral'),
            ODD_SIZES[2:] + [(2, 2), (1, 1)],
        ),
        (
            dict(
                start_level=3,
                num_outs=3,
                extra_source='output',
                relu_before_extra_convs=True,
            ),
            [(3, 3), (2, 2), (1, 1)],
        ),
    ],
    ids=['plain', 'retinanet', 'mask_rcnn', 'lateral', 'output_relu'],
)
def test_shapes_at_odd_sizes(mode, kwargs, expected_sizes):
    neck = TopDownFPN(SMALL_CHANNELS, 6, upsample_mode=mode, **kwargs)
    neck.init_weights()
    feats = [f.requires_grad_() for f in make_feats(SMALL_CHANNELS)]
    outs = neck(tuple(feats))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [
        (2, 6, h, w) for h, w in expected_sizes
    ]
    sum(o.sum() for o in outs).backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in neck.parameters()
    )
    used = feats[kwargs.get('start_level', 0) :]
    assert all(f.grad is not None for f in used)


def test_norm_and_activation():
    neck = TopDownFPN(
        SMALL_CHANNELS,
        4,
        start_level=1,
        num_outs=5,
        extra_source='input',
        norm_cfg=dict(type='BN'),
        act_cfg=dict(type='ReLU'),
    ).eval()
    convs = list(neck.lateral_convs) + list(neck.fpn_convs)
    assert len(convs) == 3 + 5
    assert all(
        m.with_norm and m.with_activation and m.conv.bias is None
        for m in convs
    )
    assert all((o >= 0).all() for o in neck(make_feats(SMALL_CHANNELS)))


def test_init_cfg_is_mmdet_xavier():
    neck = randomize_(
        TopDownFPN(SMALL_CHANNELS, 4, num_outs=5, extra_source='output')
    )
    neck.init_weights()
    for m in list(neck.lateral_convs) + list(neck.fpn_convs):
        assert (m.conv.bias == 0).all()
        out_ch, in_ch, kh, kw = m.conv.weight.shape
        bound = (
            6.0 / (in_ch * kh * kw + out_ch * kh * kw)
        ) ** 0.5  # Xavier uniform
        assert m.conv.weight.abs().max() <= bound + 1e-6


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'pvtfpn_mm'])
def test_built_from_each_registry(scope):
    import importlib

    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        neck = registry.build(
            dict(
                type='TopDownFPN',
                in_channels=SMALL_CHANNELS,
                out_channels=4,
                start_level=1,
                num_outs=5,
                extra_source='input',
                upsample_mode='bilinear',
            )
        )
    assert type(neck) is TopDownFPN
    assert len(neck(make_feats(SMALL_CHANNELS))) == 5


# --------------------------------------------------------------------------- parity
def _mmdet_fpn(**kwargs):
    from mmdet.models.necks import FPN as MMDetFPN

    return MMDetFPN(**kwargs).eval()


PARITY_SETTINGS = {
    # name: (ours, mmdet's)
    'retinanet': (
        dict(start_level=1, num_outs=5, extra_source='input'),
        dict(start_level=1, num_outs=5, add_extra_convs='on_input'),
    ),
    'mask_rcnn': (
        dict(start_level=0, num_outs=5, extra_source='pool'),
        dict(start_level=0, num_outs=5, add_extra_convs=False),
    ),
    'on_lateral': (
        dict(start_level=1, num_outs=5, extra_source='lateral'),
        dict(start_level=1, num_outs=5, add_extra_convs='on_lateral'),
    ),
    'on_output_relu': (
        dict(
            start_level=1,
            num_outs=5,
            extra_source='output',
            relu_before_extra_convs=True,
        ),
        dict(
            start_level=1,
            num_outs=5,
            add_extra_convs='on_output',
            relu_before_extra_convs=True,
        ),
    ),
    'bn_relu': (
        dict(
            start_level=1,
            num_outs=5,
            extra_source='input',
            norm_cfg=dict(type='BN'),
            act_cfg=dict(type='ReLU'),
        ),
        dict(
            start_level=1,
            num_outs=5,
            add_extra_convs='on_input',
            norm_cfg=dict(type='BN'),
            act_cfg=dict(type='ReLU'),
        ),
    ),
}


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('setting', list(PARITY_SETTINGS))
def test_parity_with_mmdet_fpn(setting, mode):
    ours_kw, theirs_kw = PARITY_SETTINGS[setting]
    out_channels = 256 if setting in ('retinanet', 'mask_rcnn') else 16
    ours = TopDownFPN(
        PVT_B2_CHANNELS, out_channels, upsample_mode=mode, **ours_kw
    )
    randomize_(ours).eval()
    upsample_cfg = (
        dict(mode=mode)
        if mode == 'nearest'
        else dict(mode=mode, align_corners=False)
    )
    theirs = _mmdet_fpn(
        in_channels=PVT_B2_CHANNELS,
        out_channels=out_channels,
        upsample_cfg=upsample_cfg,
        **theirs_kw,
    )
    # Same module layout: the state dict loads strictly, key for key.
    theirs.load_state_dict(ours.state_dict(), strict=True)
    feats = make_feats(PVT_B2_CHANNELS)
    with torch.no_grad():
        a, b = ours(feats), theirs(tuple(feats))
    assert len(a) == 5
    assert_same_outputs(a, b, atol=1e-5)
    print(
        f'mmdet parity {setting}/{mode}: max abs diff {max_abs_diff(a, b):.3g}'
    )


def _copy_to_torchvision(ours, tv):
    with torch.no_grad():
        for i, m in enumerate(ours.lateral_convs):
            tv.inner_blocks[i][0].weight.copy_(m.conv.weight)
            tv.inner_blocks[i][0].bias.copy_(m.conv.bias)
        for i in range(len(ours.lateral_convs)):
            tv.layer_blocks[i][0].weight.copy_(ours.fpn_convs[i].conv.weight)
            tv.layer_blocks[i][0].bias.copy_(ours.fpn_convs[i].conv.bias)
        if isinstance(tv.extra_blocks, LastLevelP6P7):
            n = len(ours.lateral_convs)
            for name, j in (('p6', n), ('p7', n + 1)):
                getattr(tv.extra_blocks, name).weight.copy_(
                    ours.fpn_convs[j].conv.weight
                )
                getattr(tv.extra_blocks, name).bias.copy_(
                    ours.fpn_convs[j].conv.bias
                )


@pytest.mark.parametrize('extra', ['none', 'maxpool', 'p6p7'])
def test_parity_with_torchvision_fpn(extra):
    channels, out_channels = PVT_B2_CHANNELS, 64
    if extra == 'none':  # the plain 4-level FPN of the notes
        ours = TopDownFPN(channels, out_channels)
        tv = FeaturePyramidNetwork(channels, out_channels)
    elif extra == 'maxpool':
        ours = TopDownFPN(
            channels, out_channels, num_outs=5, extra_source='pool'
        )
        tv = FeaturePyramidNetwork(
            channels, out_channels, extra_blocks=LastLevelMaxPool()
        )
    else:  # torchvision RetinaNet: P6 from C5, ReLU, P7
        ours = TopDownFPN(
            channels,
            out_channels,
            num_outs=6,
            extra_source='input',
            relu_before_extra_convs=True,
        )
        tv = FeaturePyramidNetwork(
            channels,
            out_channels,
            extra_blocks=LastLevelP6P7(channels[-1], out_channels),
        )
    randomize_(ours).eval()
    _copy_to_torchvision(ours, tv.eval())
    feats = make_feats(channels)
    with torch.no_grad():
        a = ours(feats)
        b = list(
            tv(OrderedDict((f'c{i}', f) for i, f in enumerate(feats))).values()
        )
    assert_same_outputs(a, b, atol=1e-5)
    print(f'torchvision parity {extra}: max abs diff {max_abs_diff(a, b):.3g}')


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (
            dict(in_channels=64),
            TypeError,
            r'in_channels must be a list or tuple of positive ints, got 64',
        ),
        (dict(in_channels=[]), ValueError, r'in_channels must not be empty'),
        (
            dict(in_channels=[64, 128.0]),
            TypeError,
            r'in_channels\[1\] must be a positive int, got 128\.0',
        ),
        (
            dict(in_channels=[64, 0]),
            ValueError,
            r'in_channels\[1\] must be a positive int, got 0',
        ),
        (
            dict(out_channels='256'),
            TypeError,
            r"out_channels must be a positive int, got '256'",
        ),
        (
            dict(out_channels=0),
            ValueError,
            r'out_channels must be a positive int, got 0',
        ),
        (
            dict(start_level=1.0),
            TypeError,
            r'start_level must be an int index, got 1\.0',
        ),
        (
            dict(start_level=4),
            ValueError,
            r'start_level=4 is out of range for 4 entries',
        ),
        (
            dict(start_level=-5),
            ValueError,
            r'start_level=-5 is out of range for 4 entries',
        ),
        (
            dict(num_outs='5'),
            TypeError,
            r"num_outs must be an int or None, got '5'",
        ),
        (
            dict(start_level=1, num_outs=2),
            ValueError,
            r'num_outs must be at least the number of used inputs.*= 3\), got 2',
        ),
        (
            dict(extra_source='on_input'),
            ValueError,
            r"extra_source must be one of \('pool', 'input', 'lateral', 'output'\), "
            r"got 'on_input'",
        ),
        (
            dict(relu_before_extra_convs='yes'),
            TypeError,
            r"relu_before_extra_convs must be True or False \(or 1 / 0\), got 'yes'",
        ),
        (
            dict(upsample_mode='bicubic'),
            ValueError,
            r"upsample_mode must be one of \('nearest', 'bilinear'\), got 'bicubic'",
        ),
    ],
    ids=lambda v: None,
)
def test_bad_arguments(kwargs, error, match):
    args = dict(in_channels=PVT_B2_CHANNELS, out_channels=8)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        TopDownFPN(**args)


def test_bad_inputs_name_expected_and_received():
    neck = TopDownFPN(SMALL_CHANNELS, 4)
    feats = make_feats(SMALL_CHANNELS)
    with pytest.raises(
        ValueError, match=r'expected 4 input feature maps .*got 3'
    ):
        neck(feats[1:])
    with pytest.raises(
        ValueError, match=r'expected 4 input feature maps .*got 5'
    ):
        neck(feats + feats[-1:])
    bad = list(feats)
    bad[2] = torch.randn(2, 8, 5, 6)
    with pytest.raises(
        ValueError,
        match=r'input 2 has 8 channels, expected in_channels\[2\]=7 '
        r'\(in_channels=\[3, 5, 7, 9\], received channels=\[3, 5, 8, 9\]\)',
    ):
        neck(bad)
    with pytest.raises(
        TypeError, match=r'expects a sequence of 4 NCHW tensors, got Tensor'
    ):
        neck(feats[0])
    with pytest.raises(
        ValueError,
        match=r'input 0 must be a 4D NCHW tensor, got shape \(3, 17, 24\)',
    ):
        neck([feats[0][0]] + feats[1:])
    # An unused input (before start_level) is still checked: in_channels lists all.
    neck = TopDownFPN(SMALL_CHANNELS, 4, start_level=1)
    bad = list(feats)
    bad[0] = torch.randn(2, 4, 17, 24)
    with pytest.raises(
        ValueError,
        match=r'input 0 has 4 channels, expected in_channels\[0\]=3',
    ):
        neck(bad)
