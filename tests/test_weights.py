"""Checkpoint formats: detection, conversion, strict loading, safe reading, the CLI.

Every checkpoint is made here from a randomly initialized model (nothing is
downloaded). The official whai362/PVT format is checked against timm's own remapping
of it (``timm.models.pvt_v2.checkpoint_filter_fn``) and mmdet's (``pvt_convert``).
"""

import os.path as osp
import subprocess
import sys
from collections import OrderedDict

import pytest
import timm
import torch

try:
    from timm.models.pvt_v2 import checkpoint_filter_fn
except ImportError:  # timm 0.9 (the oldest stack): the same function, private
    from timm.models.pvt_v2 import (
        _checkpoint_filter_fn as checkpoint_filter_fn,
    )

from pvtfpn_mm import weights
from pvtfpn_mm.models.backbones.pvt_v2 import PVTv2
from pvtfpn_mm.weights import (
    FORMATS,
    CheckpointFormatError,
    CheckpointReadError,
    StateDictMismatchError,
    convert,
    detect_format,
    from_ours,
    load_pretrained,
    load_state_dict_strict,
    to_ours,
)

from _helpers import random_params_

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ATOL = 1e-5  # fp32 rounding; see tests/test_pvt_v2.py


@pytest.fixture(scope='module')
def timm_b0():
    """timm's plain pvt_v2_b0 (with its classifier head), random weights."""
    return random_params_(timm.create_model('pvt_v2_b0'), seed=0)


@pytest.fixture(scope='module')
def ours_b0(timm_b0):
    model = PVTv2('b0').eval()
    load_pretrained(model, timm_b0.state_dict())
    return model


@pytest.fixture(scope='module')
def image():
    return torch.randn(
        1, 3, 64, 64, generator=torch.Generator().manual_seed(0)
    )


def features(model, x):
    with torch.no_grad():
        if hasattr(model, 'forward_intermediates'):  # timm's plain model
            return model.forward_intermediates(x, intermediates_only=True)
        # the same in timm 0.9
        if hasattr(model, 'stages') and hasattr(model, 'head'):
            x, maps = model.patch_embed(x), []
            for stage in model.stages:
                x = stage(x)
                maps.append(x)
            return maps
        return model(x)


def assert_same_features(a, b, atol=ATOL):
    assert len(a) == len(b) == 4
    for fa, fb in zip(a, b, strict=True):
        assert fa.shape == fb.shape
        assert float((fa - fb).abs().max()) <= atol


def mmdet_b0():
    from mmdet.models.backbones.pvt import PyramidVisionTransformerV2

    return PyramidVisionTransformerV2(
        embed_dims=32, num_layers=[2, 2, 2, 2]
    ).eval()


def save(obj, path):
    torch.save(obj, path)
    return str(path)


# ----------------------------------------------------------------- format round trips


def test_detect_every_format(ours_b0, timm_b0):
    ours = ours_b0.state_dict()
    assert detect_format(ours) == 'ours'
    assert detect_format(timm_b0.state_dict()) == 'timm'
    for fmt in FORMATS:
        assert detect_format(from_ours(ours, fmt)) == fmt


@pytest.mark.parametrize('src', FORMATS)
@pytest.mark.parametrize('dst', FORMATS)
def test_convert_round_trip(ours_b0, src, dst):
    ours = ours_b0.state_dict()
    back = to_ours(convert(from_ours(ours, src), dst))
    assert set(back) == set(ours)
    assert all(torch.equal(back[k], v) for k, v in ours.items())


def test_official_format_matches_timm_and_mmdet_remapping(ours_b0, timm_b0):
    official = from_ours(ours_b0.state_dict(), 'official')
    # the release has a classifier
    official['head.weight'] = timm_b0.head.weight
    official['head.bias'] = timm_b0.head.bias
    # timm's own official -> timm key remapping gives timm's state dict back
    remapped = checkpoint_filter_fn(official, timm_b0)
    reference = timm_b0.state_dict()
    assert set(remapped) == set(reference)
    assert all(torch.equal(remapped[k], reference[k]) for k in reference)
    # mmdet's own official -> mmdet conversion gives our mmdet conversion
    from mmdet.models.backbones.pvt import pvt_convert

    ours_mmdet = from_ours(ours_b0.state_dict(), 'mmdet')
    mmdet_converted = pvt_convert(official)
    assert set(mmdet_converted) == set(ours_mmdet)
    assert all(
        torch.equal(mmdet_converted[k], ours_mmdet[k]) for k in ours_mmdet
    )


# ------------------------------------------------------ loading every format from files


def test_load_timm_plain_file(tmp_path, timm_b0, image):
    path = save(timm_b0.state_dict(), tmp_path / 'pvt_v2_b0_timm.pth')
    model = PVTv2('b0', init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    assert model.is_init
    assert_same_features(
        features(model.eval(), image), features(timm_b0, image)
    )


def test_load_timm_features_only_file(tmp_path, timm_b0, image):
    feats = timm.create_model('pvt_v2_b0', features_only=True).eval()
    feats.load_state_dict(
        from_ours(to_ours(timm_b0.state_dict()), 'timm_features')
    )
    path = save({'state_dict': feats.state_dict()}, tmp_path / 'features.pth')
    model = PVTv2('b0').eval()
    assert load_pretrained(model, path) == 'timm_features'
    assert_same_features(features(model, image), feats(image))


@pytest.mark.parametrize('wrap', ['bare', 'model'])
def test_load_official_file(tmp_path, ours_b0, timm_b0, image, wrap):
    official = from_ours(ours_b0.state_dict(), 'official')
    official.update(
        {'head.weight': timm_b0.head.weight, 'head.bias': timm_b0.head.bias}
    )
    checkpoint = (
        official if wrap == 'bare' else {'model': official, 'epoch': 300}
    )
    path = save(checkpoint, tmp_path / 'pvt_v2_b0.pth')
    model = PVTv2('b0').eval()
    assert load_pretrained(model, path) == 'official'
    assert_same_features(features(model, image), features(timm_b0, image))


def test_load_mmdet_backbone_and_detector_files(tmp_path, image):
    mmdet_model = random_params_(mmdet_b0(), seed=1)
    backbone = mmdet_model.state_dict()
    detector = OrderedDict((f'backbone.{k}', v) for k, v in backbone.items())
    detector['neck.lateral_convs.0.conv.weight'] = torch.zeros(8, 32, 1, 1)
    detector['bbox_head.cls.weight'] = torch.zeros(8)
    paths = [
        save(backbone, tmp_path / 'bare.pth'),
        save({'state_dict': backbone}, tmp_path / 'wrapped.pth'),
        save(
            {'meta': {'epoch': 12}, 'state_dict': detector},
            tmp_path / 'det.pth',
        ),
    ]
    expected = features(mmdet_model, image)
    for path in paths:
        model = PVTv2(
            'b0', embed_norm_eps=1e-6
        ).eval()  # mmdet's LayerNorm eps
        assert load_pretrained(model, path) == 'mmdet'
        assert_same_features(features(model, image), expected)


@pytest.mark.parametrize(
    'fmt, model_eps, wanted', [('mmdet', 1e-5, 1e-6), ('official', 1e-6, 1e-5)]
)
def test_backbone_format_of_another_eps_warns(ours_b0, fmt, model_eps, wanted):
    state = from_ours(ours_b0.state_dict(), fmt)
    with pytest.warns(UserWarning, match=f'embed_norm_eps={wanted:g}') as info:
        load_pretrained(PVTv2('b0', embed_norm_eps=model_eps), state)
    assert f'format {fmt!r}' in str(info[0].message)


def test_init_cfg_prefix(tmp_path, ours_b0, image):
    state = {
        'state_dict': {
            f'student.backbone.{k}': v
            for k, v in from_ours(ours_b0.state_dict(), 'timm').items()
        }
    }
    path = save(state, tmp_path / 'distill.pth')
    model = PVTv2(
        'b0',
        init_cfg=dict(
            type='Pretrained', checkpoint=path, prefix='student.backbone.'
        ),
    )
    model.init_weights()
    assert_same_features(
        features(model.eval(), image), features(ours_b0, image), atol=0
    )


def test_load_through_mmdet_registry(tmp_path, ours_b0, image):
    from mmdet.registry import MODELS

    import pvtfpn_mm  # noqa: F401  (registers)

    path = save(
        from_ours(ours_b0.state_dict(), 'official'), tmp_path / 'official.pth'
    )
    model = MODELS.build(
        dict(
            type='PVTv2',
            arch='b0',
            init_cfg=dict(type='Pretrained', checkpoint=path),
        )
    )
    model.init_weights()
    assert_same_features(
        features(model.eval(), image), features(ours_b0, image), atol=0
    )


# ------------------------------------------------------------------ strictness, errors


def test_other_variant_lists_missing_unexpected_and_shapes(tmp_path):
    with torch.device('meta'):
        b1 = PVTv2('b1')
    b1_state = {k: torch.zeros(v.shape) for k, v in b1.state_dict().items()}
    # b1 has 2 blocks
    b1_state['stages.1.blocks.2.norm1.weight'] = torch.zeros(128)
    del b1_state['stages.3.norm.bias']
    path = save(b1_state, tmp_path / 'b1.pth')
    with pytest.raises(StateDictMismatchError, match='b1.pth') as info:
        load_pretrained(PVTv2('b0'), path)
    error = info.value
    assert error.missing == ['stages.3.norm.bias']
    assert error.unexpected == ['stages.1.blocks.2.norm1.weight']
    assert (
        'stages.0.patch_embed.proj.weight: (64, 3, 7, 7) vs (32, 3, 7, 7)'
        in error.mismatched
    )
    for key in (
        'stages.3.norm.bias',
        'stages.1.blocks.2.norm1.weight',
        '(64, 3, 7, 7)',
    ):
        assert key in str(error)


def test_unknown_keys_are_unexpected_not_dropped(ours_b0):
    state = from_ours(ours_b0.state_dict(), 'official')
    state['pos_embed1'] = torch.zeros(1, 3136, 32)  # PVT v1
    with pytest.raises(StateDictMismatchError, match='pos_embed1'):
        load_pretrained(PVTv2('b0'), state)


def test_checkpoint_of_another_model(tmp_path):
    import torchvision

    path = save(
        torchvision.models.resnet18().state_dict(), tmp_path / 'resnet18.pth'
    )
    with pytest.raises(CheckpointFormatError, match='resnet18.pth'):
        load_pretrained(PVTv2('b0'), path)


def test_missing_checkpoint_file(tmp_path):
    path = str(tmp_path / 'no_such_pvt.pth')
    model = PVTv2('b0', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(FileNotFoundError, match='no_such_pvt.pth'):
        model.init_weights()


def test_missing_prefix(ours_b0):
    with pytest.raises(CheckpointFormatError, match="'teacher.'"):
        load_pretrained(PVTv2('b0'), ours_b0.state_dict(), prefix='teacher.')


def test_unknown_format_name(ours_b0):
    with pytest.raises(ValueError, match="'detectron2'"):
        from_ours(ours_b0.state_dict(), 'detectron2')


class _NotAllowed:
    pass


def test_reading_is_weights_only(tmp_path, ours_b0):
    path = save(
        {'state_dict': ours_b0.state_dict(), 'extra': _NotAllowed()},
        tmp_path / 'unsafe.pth',
    )
    with pytest.raises(
        CheckpointReadError, match=r'unsafe\.pth.*safe loading does not allow'
    ) as info:
        load_pretrained(PVTv2('b0'), path)
    assert 'weights_only=False' not in str(info.value)


# -------------------------------------------------------------------------------- CLI


def test_cli_main_converts_to_mmdet(tmp_path, ours_b0, timm_b0, image, capsys):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import convert_weights
    finally:
        sys.path.pop(0)
    src = save({'state_dict': timm_b0.state_dict()}, tmp_path / 'timm.pth')
    dst = str(tmp_path / 'mmdet.pth')
    convert_weights.main([src, dst, '--to', 'mmdet'])
    assert '(timm)' in capsys.readouterr().out
    mmdet_model = mmdet_b0()
    load_state_dict_strict(mmdet_model, torch.load(dst, weights_only=True))
    exact = PVTv2('b0', embed_norm_eps=1e-6).eval()
    load_pretrained(exact, ours_b0.state_dict())
    assert_same_features(features(mmdet_model, image), features(exact, image))
    with pytest.raises(CheckpointFormatError, match="'official'"):
        convert_weights.main(
            [
                src,
                str(tmp_path / 'other.pth'),
                '--to',
                'ours',
                '--from',
                'official',
            ]
        )


@pytest.mark.slow
def test_cli_subprocess_official_to_timm(tmp_path, ours_b0, timm_b0):
    src = save(
        from_ours(ours_b0.state_dict(), 'official'), tmp_path / 'official.pth'
    )
    dst = tmp_path / 'timm.pth'
    result = subprocess.run(
        [
            sys.executable,
            osp.join(REPO, 'tools', 'convert_weights.py'),
            src,
            str(dst),
            '--to',
            'timm',
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    converted = torch.load(dst, weights_only=True)
    headless = {
        k: v
        for k, v in timm_b0.state_dict().items()
        if not k.startswith('head.')
    }
    assert set(converted) == set(headless)
    assert all(torch.equal(converted[k], v) for k, v in headless.items())


def test_weights_module_has_no_silent_loading():
    source = open(weights.__file__).read()
    assert 'strict=False' not in source and 'weights_only=False' not in source
