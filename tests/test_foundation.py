"""The stack is real (compiled mmcv ops, mmdet and mmseg models) and our scope works."""

import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import pvtfpn_mm
from pvtfpn_mm.registry import DOWNSTREAM_SCOPES, MODELS, downstream_registry

ROOT = Path(__file__).resolve().parents[1]


def test_version_lives_in_one_place():
    text = (ROOT / 'pvtfpn_mm' / 'version.py').read_text()
    assert re.fullmatch(r"__version__ = '\d+\.\d+\.\d+'\n", text)
    from importlib.metadata import version

    assert version('pvtfpn_mm') == pvtfpn_mm.__version__


def test_batched_nms_on_cpu_hand_checked():
    from mmcv.ops import batched_nms

    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # kept (best of class 0)
            [1.0, 1.0, 11.0, 11.0],  # IoU 81/119 = 0.68 with box 0 -> dropped
            [20.0, 20.0, 30.0, 30.0],  # no overlap -> kept
            [0.0, 0.0, 10.0, 10.0],  # same box as 0 but class 1 -> kept
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    idxs = torch.tensor([0, 0, 0, 1])
    dets, keep = batched_nms(
        boxes, scores, idxs, dict(type='nms', iou_threshold=0.5)
    )
    assert keep.tolist() == [0, 2, 3]
    assert torch.equal(dets[:, 4], torch.tensor([0.9, 0.7, 0.6]))
    # above the 0.68 IoU the second box survives
    _, keep = batched_nms(
        boxes, scores, idxs, dict(type='nms', iou_threshold=0.7)
    )
    assert keep.tolist() == [0, 1, 2, 3]


def test_roi_align_on_cpu_hand_checked():
    from mmcv.ops import RoIAlign

    # feature value = x coordinate (column index); a 2x2 RoIAlign over columns 0..4
    # (aligned=True: pixel centres at integer+0.5) samples bin centres at x = 1 and 3
    # -> values 0.5 and 2.5 (the bilinear value at x is x - 0.5).
    feat = torch.arange(8, dtype=torch.float32).repeat(8, 1)[None, None]
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=True)(
        feat, rois
    )
    expected = torch.tensor([[[[0.5, 2.5], [0.5, 2.5]]]])
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out, expected)


def test_mmdet_and_mmseg_models_import():
    import mmdet.models
    import mmseg.models

    assert (
        mmdet.models.RetinaNet is not None
        and mmseg.models.EncoderDecoder is not None
    )
    from mmcv.ops import (
        point_sample,  # mmseg imports it; needs the compiled ops
    )

    assert callable(point_sample)


def test_registered_in_all_scopes_without_collisions():
    ours = dict(MODELS.module_dict)
    assert 'FPN' not in ours
    assert all(
        cls.__module__.startswith('pvtfpn_mm.') for cls in ours.values()
    )
    required = {
        'mmdet': {'PVTv2', 'TopDownFPN'},
        'mmseg': {'PVTv2', 'TopDownFPN', 'FPNConcatHead', 'FPNDepthHead'},
        'mmpretrain': {
            'PVTv2',
            'TopDownFPN',
            'TimmFeatures',
            'PyramidClsHead',
        },
    }
    assert set(required) == set(DOWNSTREAM_SCOPES)
    for scope, names in required.items():
        registry = downstream_registry(scope)
        assert names <= set(ours)
        for name in names:
            assert registry.get(name) is ours[name], (scope, name)
        # whatever of ours is in mmdet's/mmseg's registry is ours, not a namesake of theirs
        for name, cls in ours.items():
            assert registry.module_dict.get(name, cls) is cls, (scope, name)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_custom_imports_build_from_downstream_scope(scope):
    from mmengine.registry import DefaultScope, init_default_scope

    cfg = Config(
        dict(
            custom_imports=dict(
                imports=['pvtfpn_mm'], allow_failed_imports=False
            ),
            backbone=dict(type='PVTv2', arch='b0'),
            neck=dict(
                type='TopDownFPN',
                in_channels=[32, 64, 160, 256],
                out_channels=16,
            ),
        )
    )
    init_default_scope(scope)
    assert DefaultScope.get_current_instance().scope_name == scope
    registry = downstream_registry(scope)
    backbone = registry.build(cfg.backbone)
    neck = registry.build(cfg.neck)
    feats = backbone(torch.randn(1, 3, 64, 64))
    outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [
        (1, 16, 16, 16),
        (1, 16, 8, 8),
        (1, 16, 4, 4),
        (1, 16, 2, 2),
    ]


def test_scoped_name_resolves_from_root():
    from mmengine.registry import MODELS as ROOT_MODELS

    assert ROOT_MODELS.get('pvtfpn_mm.TopDownFPN') is MODELS.get('TopDownFPN')


def test_a_namesake_of_an_mmdet_model_is_refused_everywhere():
    from pvtfpn_mm.registry import register_model

    class FPN(torch.nn.Module):
        pass

    with pytest.raises(
        KeyError, match=r'FPN is already registered in the mmdet registry'
    ):
        register_model()(FPN)
    assert 'FPN' not in MODELS.module_dict


def test_dict_defaults_are_never_changed():
    """The mm-style ``dict(...)`` argument defaults (ruff B006 allowed on them) stay as
    written after building and initializing the models."""
    import copy
    import inspect

    from mmengine.registry import DefaultScope

    from pvtfpn_mm.models.heads import FPNDepthHead, PyramidClsHead
    from pvtfpn_mm.models.necks import TopDownFPN

    cases = [
        (TopDownFPN, 'init_cfg', dict(in_channels=[8, 16], out_channels=8)),
        (PyramidClsHead, 'init_cfg', dict(num_classes=3, in_channels=16)),
        (
            FPNDepthHead,
            'loss_decode',
            dict(in_channels=[8, 16], channels=8, in_index=[0, 1]),
        ),
    ]
    for cls, name, kwargs in cases:
        default = inspect.signature(cls).parameters[name].default
        before = copy.deepcopy(default)
        assert isinstance(before, dict)
        # mmseg builds the depth head's loss by name in the current scope
        with DefaultScope.overwrite_default_scope('mmseg'):
            for _ in range(2):
                model = cls(**kwargs)
                model.init_weights()
        assert default == before, cls.__name__
