"""Our argument checks (pvtfpn_mm/models/_checks.py) held against the upstream classes.

For every argument that one of our models shares (same name, same meaning) with an
mmdet / mmseg / mmpretrain / timm class, each value below is given to both; a class
"takes" a value when it builds and runs a training forward + backward and an eval
forward on a small input. The expected upstream outcome is written down (so a change
upstream shows here), and ours must match it, except in the two documented ways:

* ``LENIENT``: ours takes a value upstream refuses (a tuple where mmdet asserts a list,
  ``num_outs=None``, an int ``out_indices`` on PVTv2);
* ``ACCIDENT``: upstream takes a value only by accident and ours refuses it naming it
  (``True`` as an index -- ``bool`` is an ``int``; a string as an on/off switch;
  a rate outside [0, 1], which mmcv's drop path computes with, meaninglessly).

Where ours refuses a value, the message names the argument.
"""

import warnings

import pytest
import timm
import torch
from packaging.version import Version

import pvtfpn_mm  # noqa: F401  (registers our models)
from pvtfpn_mm.models.backbones import PVTv2, TimmFeatures
from pvtfpn_mm.models.heads import FPNConcatHead, PyramidClsHead
from pvtfpn_mm.models.necks import TopDownFPN

SAME, LENIENT, ACCIDENT = 'same', 'lenient', 'accident'


def _outputs(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _outputs(o)]


def takes(make, inputs):
    """``(True, '')`` if ``make()`` builds a module that runs train forward + backward
    and an eval forward on ``inputs``; else ``(False, the error)``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            module = make()
            module.train()
            outs = _outputs(module(inputs))
            total = sum(o.float().sum() for o in outs)
            if isinstance(total, torch.Tensor) and total.requires_grad:
                total.backward()
            module.eval()
            with torch.no_grad():
                module(inputs)
        return True, ''
    except Exception as error:
        return False, f'{type(error).__name__}: {error}'


def check(case, ours, upstream, inputs, ours_inputs=None):
    """Runs one case: ``(arg, value, upstream takes it?, relation)``."""
    arg, value, upstream_expected, relation = case
    up_ok, up_error = takes(lambda: upstream(**{arg: value}), inputs)
    assert up_ok == upstream_expected, (
        f'upstream {arg}={value!r}: expected '
        f'{"to take" if upstream_expected else "to refuse"} it, got {up_error}'
    )
    our_ok, our_error = takes(
        lambda: ours(**{arg: value}),
        inputs if ours_inputs is None else ours_inputs,
    )
    if relation == SAME:
        assert our_ok == up_ok, f'ours {arg}={value!r}: {our_error}'
    elif relation == LENIENT:
        assert our_ok and not up_ok, f'ours {arg}={value!r}: {our_error}'
    else:
        assert up_ok and not our_ok, f'ours took {arg}={value!r}'
        # the message names the value (in a selection: the entry that is refused)
        bad = value
        if isinstance(value, (list, tuple)):
            bad = next(v for v in value if isinstance(v, bool))
        assert f'got {bad!r}' in our_error, our_error
    if not our_ok:
        assert arg in our_error, our_error
        assert our_error.startswith(('TypeError', 'ValueError')), our_error


# ------------------------------------------------- PVTv2 vs mmdet's PyramidVisionTransformerV2


def _mmdet_pvt(**kwargs):
    from mmdet.models.backbones.pvt import PyramidVisionTransformerV2

    return PyramidVisionTransformerV2(
        embed_dims=32, num_layers=[1, 1, 1, 1], **kwargs
    )


def _our_pvt(**kwargs):
    return PVTv2('b0', depths=(1, 1, 1, 1), **kwargs)


PVT_CASES = [
    ('out_indices', (0, 1, 2, 3), True, SAME),
    ('out_indices', (3, 0), True, SAME),  # any order: stage order out
    ('out_indices', (0, 0), True, SAME),  # repeats
    ('out_indices', [1, 3], True, SAME),
    ('out_indices', (-1,), True, SAME),  # mmdet: nothing out; ours: the last
    ('out_indices', (0, 5), False, SAME),
    ('out_indices', 2, False, LENIENT),  # ours: one stage
    ('out_indices', (True,), True, ACCIDENT),
    ('drop_rate', 0.0, True, SAME),
    ('drop_rate', 1.0, True, SAME),
    ('drop_rate', 1.5, False, SAME),
    ('drop_rate', -0.1, False, SAME),
    ('attn_drop_rate', 0.5, True, SAME),
    ('attn_drop_rate', 1.5, False, SAME),
    ('drop_path_rate', 0.3, True, SAME),
    ('drop_path_rate', 1.0, True, SAME),
    ('drop_path_rate', 1.5, True, ACCIDENT),
    ('drop_path_rate', -0.1, True, ACCIDENT),
    ('qkv_bias', True, True, SAME),
    ('qkv_bias', False, True, SAME),
    ('qkv_bias', 0, True, SAME),
    ('qkv_bias', 1, True, SAME),
    ('qkv_bias', 'yes', True, ACCIDENT),
    ('mlp_ratios', (4, 4, 4, 4), True, SAME),
    ('mlp_ratios', (8, 8, 4), False, SAME),
    ('mlp_ratios', 4, False, SAME),
    ('num_heads', (1, 2, 4, 8), True, SAME),
    ('num_heads', (1, 2, 5), False, SAME),
    ('sr_ratios', (4, 4, 2, 1), True, SAME),
    ('sr_ratios', 8, False, SAME),
]


@pytest.mark.parametrize('case', PVT_CASES, ids=repr)
def test_pvtv2_takes_what_mmdet_takes(case):
    check(case, _our_pvt, _mmdet_pvt, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize(
    'value, takes_it', [(3, True), (1, True), (0, False), (2.0, False)]
)
def test_pvtv2_in_channels_as_mmdet(value, takes_it):
    inputs = torch.randn(1, value if isinstance(value, int) else 3, 64, 64)
    check(('in_channels', value, takes_it, SAME), _our_pvt, _mmdet_pvt, inputs)


def _mmdet_swin(**kwargs):
    from mmdet.models.backbones import SwinTransformer

    return SwinTransformer(
        embed_dims=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), **kwargs
    )


@pytest.mark.parametrize('value', [-2, -1, 0, 3])
def test_frozen_stages_below_zero_freezes_nothing_as_mmdet(value):
    """mmdet's transformer backbones (Swin; its PVT has no frozen_stages) take any
    frozen_stages < 0 as "nothing"; so does ours (its stages count from 0)."""
    check(
        ('frozen_stages', value, True, SAME),
        _our_pvt,
        _mmdet_swin,
        torch.randn(1, 3, 64, 64),
    )
    model = _our_pvt(frozen_stages=value)
    frozen = [
        not any(p.requires_grad for p in stage.parameters())
        for stage in model.stages
    ]
    assert frozen == [i <= value for i in range(4)]


# -------------------------------------------------------- TopDownFPN vs mmdet / mmseg FPN

FPN_CHANNELS = [8, 16, 32, 64]


def _fpn_inputs():
    return [
        torch.randn(1, c, s, s)
        for c, s in zip(FPN_CHANNELS, (16, 8, 4, 2), strict=True)
    ]


def _fpn_args(kwargs):
    return {
        'in_channels': list(FPN_CHANNELS),
        'out_channels': 8,
        'num_outs': 5,
        **kwargs,
    }


FPN_CASES = [
    ('in_channels', [8, 16, 32, 64], True, SAME),
    ('in_channels', (8, 16, 32, 64), False, LENIENT),  # mmdet asserts a list
    ('in_channels', [8, 16, 32, 0], False, SAME),
    ('out_channels', 4, True, SAME),
    ('out_channels', 0, False, SAME),
    ('start_level', 0, True, SAME),
    ('start_level', 1, True, SAME),
    (
        'start_level',
        -1,
        True,
        SAME,
    ),  # mmdet: a lateral for in_channels[-1] too
    ('start_level', 4, False, SAME),
    ('start_level', -5, False, SAME),
    ('num_outs', 4, True, SAME),
    ('num_outs', 6, True, SAME),
    ('num_outs', 3, False, SAME),
    ('num_outs', None, False, LENIENT),  # ours: one output per used input
    (
        'relu_before_extra_convs',
        True,
        True,
        SAME,
    ),  # no effect with pooled extras
    ('relu_before_extra_convs', 1, True, SAME),
    ('relu_before_extra_convs', 'yes', True, ACCIDENT),
    ('norm_cfg', dict(type='BN'), True, SAME),
    ('act_cfg', dict(type='ReLU'), True, SAME),
]


@pytest.mark.parametrize('upstream', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('case', FPN_CASES, ids=repr)
def test_top_down_fpn_takes_what_fpn_takes(case, upstream):
    """mmdet's and mmseg's FPN with ``add_extra_convs=False`` (pooled extra levels)
    against ours with ``extra_source='pool'`` (its default)."""
    if upstream == 'mmdet':
        from mmdet.models.necks import FPN
    else:
        from mmseg.models.necks import FPN
    arg, value = case[0], case[1]
    check(
        case,
        lambda **kw: TopDownFPN(**_fpn_args(kw)),
        lambda **kw: FPN(**_fpn_args(kw)),
        _fpn_inputs(),
    )
    del arg, value


# ------------------------------------------------- FPNConcatHead vs mmseg's SegformerHead


def _head_inputs():
    return [torch.randn(2, 8, s, s) for s in (16, 8, 4, 2)]


def _head_args(kwargs):
    args = {
        'in_channels': [8, 8, 8, 8],
        'in_index': [0, 1, 2, 3],
        'channels': 8,
        'num_classes': 3,
        **kwargs,
    }
    if 'in_index' in kwargs and isinstance(kwargs['in_index'], (list, tuple)):
        args['in_channels'] = [8] * len(kwargs['in_index'])
    return args


HEAD_CASES = [
    ('in_index', [0, 1, 2, 3], True, SAME),
    ('in_index', (0, 1, 2, 3), True, SAME),
    ('in_index', [-2, -1], True, SAME),  # issue 18: refused before
    ('in_index', [3, 2, 1, 0], True, SAME),  # any order
    ('in_index', [0, 0], True, SAME),  # repeats
    ('in_index', [0, 1, 2, 4], False, SAME),  # past the inputs
    ('in_index', 0, False, SAME),
    ('in_index', [True, 2], True, ACCIDENT),
    ('in_channels', 8, False, SAME),
    ('channels', 4, True, SAME),
    ('channels', 0, False, SAME),
    ('interpolate_mode', 'bilinear', True, SAME),
    ('interpolate_mode', 'bicubic', True, SAME),
    # mmseg passes align_corners to every mode, which torch refuses for these
    ('interpolate_mode', 'nearest', False, LENIENT),
    ('interpolate_mode', 'area', False, LENIENT),
    ('interpolate_mode', 'trilinear', False, SAME),
    ('dropout_ratio', 0.0, True, SAME),
    ('dropout_ratio', 1.0, True, SAME),
    ('dropout_ratio', -1, True, SAME),  # mmseg: no dropout at <= 0
    ('num_classes', 1, True, SAME),
    ('num_classes', 0, False, SAME),
    ('align_corners', True, True, SAME),
]


@pytest.mark.parametrize('case', HEAD_CASES, ids=repr)
def test_concat_head_takes_what_mmseg_heads_take(case):
    """mmseg's multiple-select head with the same arguments: SegformerHead."""
    from mmseg.models.decode_heads import SegformerHead

    check(
        case,
        lambda **kw: FPNConcatHead(**_head_args(kw)),
        lambda **kw: SegformerHead(**_head_args(kw)),
        _head_inputs(),
    )


def test_concat_head_negative_in_index_selects_from_the_end():
    """in_index=[-2, -1] is levels 2 and 3 (issue 18: mmseg's heads index so)."""
    feats = _head_inputs()
    head = FPNConcatHead(**_head_args(dict(in_index=[-2, -1]))).eval()
    same = FPNConcatHead(**_head_args(dict(in_index=[2, 3]))).eval()
    same.load_state_dict(head.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(head(feats), same(feats))
    assert head(feats).shape[-2:] == feats[2].shape[-2:]


# ---------------------------------------------- PyramidClsHead vs mmpretrain's LinearClsHead


def _cls_inputs():
    return (torch.randn(2, 8, 4, 4),)


CLS_CASES = [
    ('num_classes', 3, True, SAME),
    ('num_classes', 0, False, SAME),
    ('num_classes', -1, False, SAME),
    ('in_channels', 8, True, SAME),
    ('in_channels', 0, False, SAME),
]


@pytest.mark.parametrize('case', CLS_CASES, ids=repr)
def test_cls_head_takes_what_mmpretrain_takes(case):
    from mmpretrain.models.heads import LinearClsHead

    def args(kwargs):
        return {'num_classes': 3, 'in_channels': 8, **kwargs}

    # LinearClsHead classifies the last of its inputs, pooled by the neck before it
    check(
        case,
        lambda **kw: PyramidClsHead(**args(kw)),
        lambda **kw: LinearClsHead(**args(kw)),
        (torch.randn(2, 8),),
        ours_inputs=_cls_inputs(),
    )


# ----------------------------------------------- TimmFeatures vs mmseg's TIMMBackbone (timm)


#: timm 1.0 takes an int out_indices (the last n levels); timm 0.9 (the oldest stack)
#: refuses it, where ours still takes it.
TIMM_TAKES_INT = Version(timm.__version__) >= Version('1.0')

TIMM_CASES = [
    ('out_indices', (0, 1, 2, 3), True, SAME),
    ('out_indices', (3, 1), True, SAME),  # any order: model order out
    ('out_indices', (1, 1), True, SAME),
    ('out_indices', (-1,), True, SAME),
    ('out_indices', (-1, -2), True, SAME),
    (
        'out_indices',
        2,  # timm: the last 2 levels
        TIMM_TAKES_INT,
        SAME if TIMM_TAKES_INT else LENIENT,
    ),
    ('out_indices', (0, 5), False, SAME),
    ('out_indices', 6, False, SAME),
    ('out_indices', (True, 2), True, ACCIDENT),
]


@pytest.mark.parametrize('case', TIMM_CASES, ids=repr)
def test_timm_features_takes_what_timm_takes(case):
    """mmseg's TIMMBackbone passes out_indices on to timm's features_only model."""
    from mmseg.models.backbones import TIMMBackbone

    check(
        case,
        lambda **kw: TimmFeatures('resnet18', **kw),
        lambda **kw: TIMMBackbone(
            'resnet18', features_only=True, pretrained=False, **kw
        ),
        torch.randn(1, 3, 64, 64),
    )


@pytest.mark.parametrize('out_indices', [(3, 1), (1, 1, 3), (-1, -3), 2])
def test_timm_features_levels_are_timms(out_indices):
    """The same levels, channels and order as timm's own features_only model."""
    if isinstance(out_indices, int) and not TIMM_TAKES_INT:
        pytest.skip(f'timm {timm.__version__} takes no int out_indices')
    ours = TimmFeatures('resnet18', out_indices=out_indices).eval()
    theirs = timm.create_model(
        'resnet18', features_only=True, out_indices=out_indices
    ).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert [f.shape for f in ours(x)] == [f.shape for f in theirs(x)]
