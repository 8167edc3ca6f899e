"""The notes' canonical ResNet-50 FPN: our configs vs mmdet's RetinaNet / Mask R-CNN.

``configs/resnet/*_topdownfpn_1x_coco.py`` take mmdet's ``retinanet_r50_fpn_1x_coco`` /
``mask-rcnn_r50_fpn_1x_coco`` and swap mmdet's FPN for ``TopDownFPN``: the models must
have the same parameters (count, names, shapes), and with mmdet's weights loaded our
neck -- and the whole detector -- must compute what mmdet's does.
"""

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine import Config
from mmengine.hub import get_config
from mmengine.registry import DefaultScope

import pvtfpn_mm  # noqa: F401  (registers the models)
from pvtfpn_mm.models.necks import TopDownFPN

# (our config, mmdet's config, parameters of both models, neck settings)
CASES = {
    'retinanet': (
        'configs/resnet/retinanet_r50_topdownfpn_1x_coco.py',
        'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
        37_968_692,
        dict(start_level=1, num_outs=5, extra_source='input'),
    ),
    'mask_rcnn': (
        'configs/resnet/mask-rcnn_r50_topdownfpn_1x_coco.py',
        'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
        44_396_336,
        dict(start_level=0, num_outs=5, extra_source='pool'),
    ),
}
C2_C5 = [256, 512, 1024, 2048]  # the notes' ResNet table


def num_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope='module', params=sorted(CASES))
def models(request):
    ours_cfg, mmdet_cfg, expected_params, neck_settings = CASES[request.param]
    cfgs = [Config.fromfile(ours_cfg).model, get_config(mmdet_cfg).model]
    for cfg in cfgs:
        # fewer RoIs: a cheaper (and equal) Mask R-CNN forward
        if 'rpn' in cfg.test_cfg:
            cfg.test_cfg.rpn.max_per_img = 16
    with DefaultScope.overwrite_default_scope('mmdet'):
        # No init_weights(): nothing is downloaded.
        ours, theirs = [MODELS.build(cfg) for cfg in cfgs]
    return (
        request.param,
        ours.eval(),
        theirs.eval(),
        expected_params,
        neck_settings,
    )


def test_neck_is_ours_in_the_equivalent_setting(models):
    _, ours, theirs, _, settings = models
    assert type(ours.neck) is TopDownFPN
    assert type(theirs.neck).__name__ == 'FPN'
    assert ours.neck.in_channels == C2_C5 == theirs.neck.in_channels
    assert ours.neck.out_channels == 256
    for key, value in settings.items():
        assert getattr(ours.neck, key) == value, key
    assert type(ours.backbone) is type(theirs.backbone)


def test_parameter_counts_equal_mmdet(models):
    name, ours, theirs, expected, _ = models
    assert num_params(ours) == num_params(theirs) == expected, name
    assert num_params(ours.neck) == num_params(theirs.neck)
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    theirs_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert ours_shapes == theirs_shapes


def test_equal_weights_equal_outputs(models):
    name, ours, theirs, _, _ = models
    ours.load_state_dict(theirs.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(1)
    # C2..C5 of an odd-sized 67 x 93 image (sizes as ResNet's convs round them).
    sizes = [(17, 24), (9, 12), (5, 6), (3, 3)]
    feats = [
        torch.randn(1, c, h, w, generator=gen)
        for c, (h, w) in zip(C2_C5, sizes, strict=True)
    ]
    with torch.no_grad():
        ours_outs, theirs_outs = ours.neck(feats), theirs.neck(feats)
    assert len(ours_outs) == len(theirs_outs) == 5
    for a, b in zip(ours_outs, theirs_outs, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    # The whole detector, image to head outputs.
    image = torch.randn(1, 3, 64, 64, generator=gen)
    samples = [
        DetDataSample(
            metainfo=dict(
                img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1.0, 1.0)
            )
        )
    ]
    with torch.no_grad():
        ours_heads = ours(image, samples, mode='tensor')
        theirs_heads = theirs(image, samples, mode='tensor')
    flat_ours, flat_theirs = _flatten(ours_heads), _flatten(theirs_heads)
    assert len(flat_ours) == len(flat_theirs) > 0, name
    for a, b in zip(flat_ours, flat_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _flatten(outputs):
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [t for item in outputs for t in _flatten(item)]
