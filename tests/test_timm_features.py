"""TimmFeatures: timm backbones in mmdet / mmseg with our neck (tiny variants, CPU).

Families: ResNet (resnet18), ConvNeXt (convnext_atto), Swin (a 1-block-per-stage
swin_tiny with 24 channels; NHWC in timm), PVT-v2 (pvt_v2_b0).
"""

import inspect

import pytest
import timm
import torch
from mmengine import Config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData

import pvtfpn_mm  # noqa: F401  (registers the models)
from pvtfpn_mm.models.backbones import TimmFeatures, timm_channels
from pvtfpn_mm.models.necks import TopDownFPN
from pvtfpn_mm.registry import MODELS as PVTFPN_MODELS
from pvtfpn_mm.weights import StateDictMismatchError

from _helpers import det_sample

SWIN = 'swin_tiny_patch4_window7_224'
TINY_SWIN = dict(
    embed_dim=24,
    depths=(1, 1, 1, 1),
    num_heads=(1, 1, 1, 1),
    dynamic_img_size=True,
)
# (model name, out_indices, timm kwargs, channels, frozen_stages=1 freezes these roots)
FAMILIES = {
    'resnet': (
        'resnet18',
        (1, 2, 3, 4),
        {},
        [64, 128, 256, 512],
        {'conv1', 'bn1', 'layer1'},
    ),
    'convnext': (
        'convnext_atto',
        (0, 1, 2, 3),
        {},
        [40, 80, 160, 320],
        {'stem_0', 'stem_1', 'stages_0', 'stages_1'},
    ),
    'swin': (
        SWIN,
        (0, 1, 2, 3),
        TINY_SWIN,
        [24, 48, 96, 192],
        {'patch_embed', 'layers_0', 'layers_1'},
    ),
    'pvt_v2': (
        'pvt_v2_b0',
        (0, 1, 2, 3),
        {},
        [32, 64, 160, 256],
        {'patch_embed', 'stages_0', 'stages_1'},
    ),
}
MEAN_STD = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
#: timm 0.9 (the oldest stack): Swin takes only its fixed 224 x 224 input (no
#: dynamic_img_size; the configs' Swin needs timm >= 1.0).
SWIN_DYNAMIC = (
    'dynamic_img_size'
    in inspect.signature(
        timm.models.swin_transformer.SwinTransformer.__init__
    ).parameters
)
needs_dynamic_swin = pytest.mark.skipif(
    not SWIN_DYNAMIC,
    reason="this timm's Swin has no dynamic_img_size (timm < 1.0)",
)


def skip_swin_without_dynamic_size(family):
    if family == 'swin' and not SWIN_DYNAMIC:
        pytest.skip("this timm's Swin has no dynamic_img_size (timm < 1.0)")


def full_checkpoint(tmp_path, name, **kwargs):
    """A random-init full timm model and the file holding its state dict."""
    full = timm.create_model(name, pretrained=False, **kwargs).eval()
    path = tmp_path / f'{name}.pth'
    torch.save(full.state_dict(), path)
    return full, str(path)


# ----------------------------------------------------------------------- channels


@pytest.mark.parametrize(
    'name, out_indices, expected',
    [
        # the notes' ResNet table
        (
            'resnet50',
            (1, 2, 3, 4),
            [256, 512, 1024, 2048],
        ),
        ('resnet50', (-4, -3, -2, -1), [256, 512, 1024, 2048]),
        # the notes' PVT-v2-B2 table
        (
            'pvt_v2_b2',
            (0, 1, 2, 3),
            [64, 128, 320, 512],
        ),
        ('convnext_tiny', (0, 1, 2, 3), [96, 192, 384, 768]),
        (SWIN, (1, 3), [192, 768]),
    ],
)
def test_timm_channels(name, out_indices, expected):
    assert timm_channels(name, out_indices) == expected
    assert TimmFeatures.channels(name, out_indices) == expected


def test_timm_channels_follow_timm_kwargs():
    assert timm_channels(SWIN, **TINY_SWIN) == [24, 48, 96, 192]


def test_configs_compute_in_channels():
    for path, expected in [
        (
            'configs/timm/retinanet_timm-resnet50_topdownfpn_1x_coco.py',
            [256, 512, 1024, 2048],
        ),
        (
            'configs/timm/retinanet_timm-convnext-tiny_topdownfpn_1x_coco.py',
            [96, 192, 384, 768],
        ),
        (
            'configs/timm/mask-rcnn_timm-swin-tiny_topdownfpn_1x_coco.py',
            [96, 192, 384, 768],
        ),
        (
            'configs/timm/fpn_timm-convnext-tiny_topdownfpn_8xb4-40k_ade20k-512x512.py',
            [96, 192, 384, 768],
        ),
    ]:
        cfg = Config.fromfile(path)
        assert cfg.model.backbone.type == 'TimmFeatures'
        assert cfg.model.neck.type == 'TopDownFPN'
        assert cfg.model.neck.in_channels == expected, path
        # the helper is not kept in the config
        assert 'timm_channels' not in cfg
        assert 'Pretrained' == cfg.model.backbone.init_cfg.type


# ------------------------------------------------------------------ the backbone


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_levels_are_timm_features_nchw_and_load_full_weights(family, tmp_path):
    skip_swin_without_dynamic_size(family)
    name, out_indices, kwargs, channels, _ = FAMILIES[family]
    full, path = full_checkpoint(tmp_path, name, **kwargs)
    backbone = TimmFeatures(
        name, out_indices, checkpoint=path, **kwargs
    ).eval()
    assert (
        backbone.out_channels
        == channels
        == timm_channels(name, out_indices, **kwargs)
    )
    assert backbone.strides == [4, 8, 16, 32]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = backbone(x)
        # timm's own NCHW intermediates of the full model with the same weights.
        if hasattr(full, 'forward_intermediates'):
            expected = full.forward_intermediates(
                x, indices=list(out_indices), intermediates_only=True
            )
        else:  # timm 0.9: its own features_only model, the file loaded by timm
            expected = timm.create_model(
                name,
                features_only=True,
                out_indices=out_indices,
                pretrained=True,
                pretrained_cfg_overlay=dict(file=path),
                **kwargs,
            ).eval()(x)
    assert isinstance(feats, tuple) and len(feats) == 4
    for f, e, c, s in zip(
        feats, expected, channels, backbone.strides, strict=True
    ):
        assert tuple(f.shape) == (1, c, 64 // s, 96 // s)
        torch.testing.assert_close(f, e, rtol=0, atol=0)

    # The same weights through init_cfg, loaded by init_weights (the runner's path).
    other = TimmFeatures(
        name,
        out_indices,
        init_cfg=dict(type='Pretrained', checkpoint=path),
        **kwargs,
    )
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            other.state_dict().values(),
            backbone.state_dict().values(),
            strict=True,
        )
    )
    other.init_weights()
    for key, value in backbone.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


def test_checkpoint_forms(tmp_path):
    full, _ = full_checkpoint(tmp_path, 'resnet18')
    reference = TimmFeatures('resnet18', (1, 2, 3, 4))
    state = full.state_dict()
    # a trainer's checkpoint, keys under a prefix
    nested = tmp_path / 'nested.pth'
    torch.save(
        {
            'state_dict': {'backbone.' + k: v for k, v in state.items()},
            'meta': dict(epoch=3),
        },
        nested,
    )
    reference.init_cfg = dict(
        type='Pretrained', checkpoint=str(nested), prefix='backbone.'
    )
    reference.init_weights()
    assert torch.equal(
        reference.model.layer4[1].conv2.weight, full.layer4[1].conv2.weight
    )
    assert reference.is_init
    # The classifier is not used: a file without it, or with another size, loads.
    headless = tmp_path / 'headless.pth'
    torch.save(
        {k: v for k, v in state.items() if not k.startswith('fc.')}, headless
    )
    TimmFeatures('resnet18', (1, 2, 3, 4), checkpoint=str(headless))
    other_head = tmp_path / 'in21k_head.pth'
    torch.save(
        {**state, 'fc.weight': torch.zeros(7, 512), 'fc.bias': torch.zeros(7)},
        other_head,
    )
    TimmFeatures('resnet18', (1, 2, 3, 4), checkpoint=str(other_head))


def test_checkpoint_mismatches_are_reported(tmp_path):
    full, _ = full_checkpoint(tmp_path, 'resnet18')
    state = full.state_dict()
    prefixed = tmp_path / 'prefixed.pth'
    torch.save({'backbone.' + k: v for k, v in state.items()}, prefixed)
    with pytest.raises(
        StateDictMismatchError,
        match=r'90 missing keys: bn1\.bias, .* \(85 more\)',
    ) as err:
        TimmFeatures('resnet18', checkpoint=str(prefixed))
    assert 'layer1.0.conv1.weight' in err.value.missing
    assert 'backbone.conv1.weight' in err.value.unexpected

    extra = tmp_path / 'extra.pth'
    torch.save({**state, 'neck.conv.weight': torch.zeros(1)}, extra)
    with pytest.raises(
        StateDictMismatchError, match=r'1 unexpected keys: neck\.conv\.weight'
    ):
        TimmFeatures('resnet18', checkpoint=str(extra))

    missing = tmp_path / 'missing.pth'
    torch.save(
        {k: v for k, v in state.items() if k != 'layer2.0.bn1.running_var'},
        missing,
    )
    with pytest.raises(
        StateDictMismatchError,
        match=r'1 missing keys: layer2\.0\.bn1\.running_var',
    ):
        TimmFeatures('resnet18', checkpoint=str(missing))

    wrong = tmp_path / 'wrong_shape.pth'
    torch.save(
        {**state, 'layer3.0.conv1.weight': torch.zeros(256, 128, 1, 1)}, wrong
    )
    with pytest.raises(
        StateDictMismatchError,
        match=r'layer3\.0\.conv1\.weight: \(256, 128, 1, 1\) vs '
        r'\(256, 128, 3, 3\)',
    ):
        TimmFeatures('resnet18', checkpoint=str(wrong))

    # The mismatch surfaces from init_weights too (init_cfg path).
    backbone = TimmFeatures(
        'resnet18', init_cfg=dict(type='Pretrained', checkpoint=str(extra))
    )
    with pytest.raises(StateDictMismatchError, match='unexpected'):
        backbone.init_weights()


def test_nothing_is_downloaded(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('a download was attempted')

    import timm.models._builder as builder

    monkeypatch.setattr(builder, 'load_pretrained', refuse)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', refuse)
    monkeypatch.setattr(torch.hub, 'download_url_to_file', refuse)
    _, path = full_checkpoint(tmp_path, 'resnet18')
    TimmFeatures('resnet18', checkpoint=path)
    backbone = TimmFeatures(
        'resnet18', init_cfg=dict(type='Pretrained', checkpoint=path)
    )
    backbone.init_weights()
    # repeating timm's setting is fine
    TimmFeatures('resnet18', pretrained=False)


def test_frozen_stages_match_mmdet_resnet():
    from mmdet.models.backbones import ResNet

    ours = TimmFeatures('resnet18', (1, 2, 3, 4), frozen_stages=1)
    theirs = ResNet(depth=18, frozen_stages=1)
    frozen = [
        n for n, p in ours.model.named_parameters() if not p.requires_grad
    ]
    assert {n.split('.')[0] for n in frozen} == FAMILIES['resnet'][4]
    assert (
        sum(p.numel() for p in ours.parameters() if not p.requires_grad)
        == sum(p.numel() for p in theirs.parameters() if not p.requires_grad)
        == 157_504
    )
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in theirs.parameters()
    )
    ours.train()
    assert not ours.model.layer1.training and not ours.model.bn1.training
    assert ours.model.layer2.training and ours.model.layer2[0].bn1.training
    # Still frozen after the runner's SyncBN conversion replaced the norm modules.
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(ours).train()
    assert isinstance(synced.model.layer1[0].bn1, torch.nn.SyncBatchNorm)
    assert (
        not synced.model.layer1[0].bn1.training
        and synced.model.layer2[0].bn1.training
    )


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_frozen_stages_and_gradients(family):
    skip_swin_without_dynamic_size(family)
    name, out_indices, kwargs, _, frozen_roots = FAMILIES[family]
    backbone = TimmFeatures(
        name, out_indices, frozen_stages=1, **kwargs
    ).train()
    frozen = {
        n for n, p in backbone.model.named_parameters() if not p.requires_grad
    }
    assert {n.split('.')[0] for n in frozen} == frozen_roots
    sum(f.mean() for f in backbone(torch.randn(1, 3, 64, 64))).backward()
    for n, p in backbone.model.named_parameters():
        if n in frozen:
            assert p.grad is None, n
        else:
            assert p.grad is not None, n
    assert not any(
        m.training
        for n, m in backbone.model.named_modules()
        if n.split('.')[0] in frozen_roots
    )


def test_norm_eval_keeps_batchnorm_statistics():
    backbone = TimmFeatures('resnet18', (1, 2, 3, 4), norm_eval=True).train()
    bns = [
        m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ]
    assert bns and not any(bn.training for bn in bns)
    assert backbone.model.layer2.training  # only the norms
    before = bns[-1].running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64))
    assert torch.equal(bns[-1].running_mean, before)
    moving = TimmFeatures('resnet18', (1, 2, 3, 4)).train()
    moving(torch.randn(2, 3, 64, 64))
    assert not torch.equal(
        moving.model.layer4[1].bn2.running_mean,
        torch.zeros_like(moving.model.layer4[1].bn2.running_mean),
    )


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (dict(model_name=5), TypeError, r'model_name must be a str, got 5'),
        (
            dict(model_name='resnet_does_not_exist'),
            ValueError,
            r"'resnet_does_not_exist' is not a timm model",
        ),
        (
            dict(out_indices='0123'),
            TypeError,
            r"out_indices must be a list or tuple of int indices, got '0123'",
        ),
        (dict(out_indices=()), ValueError, r'out_indices must not be empty'),
        (
            dict(out_indices=(0, 1.5)),
            TypeError,
            r'out_indices\[1\] must be an int index, got 1\.5',
        ),
        (
            dict(out_indices=(True, 2)),
            TypeError,
            r'out_indices\[0\] must be an int index, got True \(bool\)',
        ),
        (
            dict(out_indices=(0, 4)),
            ValueError,
            r'out_indices\[1\]=4 is out of range for 4 entries',
        ),
        (
            dict(out_indices=(-5,)),
            ValueError,
            r'out_indices\[0\]=-5 is out of range',
        ),
        (
            dict(out_indices=5),
            ValueError,
            r'out_indices must be in \[1, 4\], got 5',
        ),
        (
            dict(frozen_stages='1'),
            TypeError,
            r"frozen_stages must be an int, got '1'",
        ),
        (
            dict(frozen_stages=4),
            ValueError,
            r'frozen_stages=4 is past the last of the 4 stages',
        ),
        (
            dict(norm_eval='no'),
            TypeError,
            r"norm_eval must be True or False \(or 1 / 0\), got 'no'",
        ),
        (
            dict(pretrained=True),
            ValueError,
            r'pretrained=True is not a timm keyword',
        ),
        (dict(features_only=False), ValueError, r'features_only=False is not'),
        (
            dict(checkpoint_path='w.pth'),
            ValueError,
            r"checkpoint_path='w.pth' is not",
        ),
        (
            dict(checkpoint=3),
            TypeError,
            r'checkpoint must be a path to a local file, got 3',
        ),
        (
            dict(checkpoint='https://x.org/w.pth'),
            ValueError,
            r"must be a local file .*'https://x.org/w.pth'",
        ),
        (
            dict(checkpoint='/no/such/file.pth'),
            FileNotFoundError,
            r"'/no/such/file.pth'",
        ),
        (
            dict(
                checkpoint='a.pth',
                init_cfg=dict(type='Pretrained', checkpoint='b.pth'),
            ),
            ValueError,
            r'either as checkpoint or as init_cfg',
        ),
        (
            dict(init_cfg=dict(type='Pretrained')),
            ValueError,
            r'names no checkpoint',
        ),
        (
            dict(
                init_cfg=dict(
                    type='Pretrained', checkpoint='torchvision://resnet50'
                )
            ),
            ValueError,
            r"init_cfg checkpoint must be a local file .*'torchvision://resnet50'",
        ),
        (
            dict(
                init_cfg=dict(
                    type='Pretrained', checkpoint='a.pth', strict=False
                )
            ),
            ValueError,
            r"unknown keys \['strict'\]",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {'model_name': 'convnext_atto', **kwargs}
    with pytest.raises(error, match=match):
        TimmFeatures(**kwargs)


def test_registered_everywhere():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmseg.registry import MODELS as MMSEG_MODELS

    for registry in (PVTFPN_MODELS, MMDET_MODELS, MMSEG_MODELS):
        assert registry.get('TimmFeatures') is TimmFeatures
    with DefaultScope.overwrite_default_scope('mmdet'):
        built = MMDET_MODELS.build(
            dict(type='TimmFeatures', model_name='resnet18')
        )
    assert built.out_indices == (0, 1, 2, 3)


# ------------------------------------------------------- detectors and segmentors


def timm_model_cfg(path, family, **backbone_overrides):
    """The model of a configs/timm config with a tiny backbone of ``family``."""
    name, out_indices, kwargs, channels, _ = FAMILIES[family]
    cfg = Config.fromfile(path).model
    backbone = dict(
        type='TimmFeatures',
        model_name=name,
        out_indices=out_indices,
        init_cfg=None,
        **kwargs,
    )
    backbone.update(backbone_overrides)
    cfg.backbone = backbone
    cfg.neck.in_channels = timm_channels(name, out_indices, **kwargs)
    assert cfg.neck.in_channels == channels
    return cfg


def det_batch(with_mask=False, size=(64, 64)):
    gen = torch.Generator().manual_seed(0)
    h, w = size
    sample = det_sample(
        h, w, [[4.0, 6.0, 40.0, 50.0], [20.0, 10.0, 60.0, 33.0]], with_mask
    )
    image = torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8)
    return dict(inputs=[image], data_samples=[sample])


def train_step_checks(model, batch):
    model.train()
    data = model.data_preprocessor(batch, training=True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss) and loss > 0
    model.zero_grad()
    loss.backward()
    for part in ('backbone', 'neck'):
        params = [
            (n, p)
            for n, p in getattr(model, part).named_parameters()
            if p.requires_grad
        ]
        assert params
        assert all(p.grad is not None for _, p in params), part
        assert sum(p.grad.abs().sum() for _, p in params) > 0, part
    return losses


def build_det(cfg):
    from mmdet.registry import MODELS

    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg)
        model.init_weights()  # backbone init_cfg=None: nothing to load
    assert (
        type(model.backbone) is TimmFeatures and type(model.neck) is TopDownFPN
    )
    return model


@pytest.mark.parametrize('family', ['resnet', 'convnext'])
def test_retinanet_with_timm_backbone(family):
    path = {
        'resnet': 'configs/timm/retinanet_timm-resnet50_topdownfpn_1x_coco.py',
        'convnext': 'configs/timm/retinanet_timm-convnext-tiny_topdownfpn_1x_coco.py',
    }[family]
    cfg = timm_model_cfg(
        path,
        family,
        **(
            dict(frozen_stages=1, norm_eval=True) if family == 'resnet' else {}
        ),
    )
    cfg.neck.out_channels = 32
    cfg.bbox_head.update(
        num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1
    )
    model = build_det(cfg)
    with DefaultScope.overwrite_default_scope('mmdet'):
        losses = train_step_checks(model, det_batch())
        assert {'loss_cls', 'loss_bbox'} <= set(losses)
        # the config's frozen stem + layer1 and eval-mode norms
        if family == 'resnet':
            assert model.backbone.model.layer1[0].conv1.weight.grad is None
            assert not model.backbone.model.layer3[0].bn1.training
        model.eval()
        data = model.data_preprocessor(det_batch(), training=False)
        with torch.no_grad():
            results = model(**data, mode='predict')
    assert len(results) == 1 and 'bboxes' in results[0].pred_instances


@needs_dynamic_swin
def test_mask_rcnn_with_timm_swin():
    cfg = timm_model_cfg(
        'configs/timm/mask-rcnn_timm-swin-tiny_topdownfpn_1x_coco.py', 'swin'
    )
    cfg.roi_head.bbox_head.num_classes = 3
    cfg.roi_head.mask_head.num_classes = 3
    cfg.train_cfg.rpn_proposal.max_per_img = 64
    cfg.train_cfg.rcnn.sampler.num = 32
    model = build_det(cfg)
    with DefaultScope.overwrite_default_scope('mmdet'):
        # 72 x 88: not 224 (Swin's default) and not square; padded to 96 x 96.
        losses = train_step_checks(
            model, det_batch(with_mask=True, size=(72, 88))
        )
    assert {'loss_rpn_cls', 'loss_cls', 'loss_mask'} <= set(losses)


def test_segmentor_with_timm_pvt_v2():
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    cfg = timm_model_cfg(
        'configs/timm/fpn_timm-convnext-tiny_topdownfpn_8xb4-40k_ade20k-512x512.py',
        'pvt_v2',
    )
    cfg.data_preprocessor.size = (64, 64)
    cfg.decode_head.update(num_classes=4, channels=32, norm_cfg=None)
    cfg.neck.out_channels = 32
    cfg.decode_head.in_channels = [32] * 4
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg)
        model.init_weights()
        sample = SegDataSample(
            metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64))
        )
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 64, 64)))
        batch = dict(
            inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)],
            data_samples=[sample],
        )
        losses = train_step_checks(model, batch)
        assert 'decode.loss_ce' in losses
        model.eval()
        with torch.no_grad():
            results = model(
                **model.data_preprocessor(batch, False), mode='predict'
            )
    assert tuple(results[0].seg_logits.data.shape) == (4, 64, 64)
