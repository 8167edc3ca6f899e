"""mmseg: PVTv2 + TopDownFPN + FPNConcatHead / FPNDepthHead, and UPerNet, at odd sizes."""

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.evaluation.metrics import DepthMetric
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import pvtfpn_mm  # noqa: F401  (registers the models)
from pvtfpn_mm.models.heads import FPNConcatHead, FPNDepthHead

B0_CHANNELS = [32, 64, 160, 256]
NUM_CLASSES = 5
H, W = 67, 93  # odd: every PVT level size is a ceil (17x24, 9x12, 5x6, 3x3)
MAX_DEPTH = 10.0


@pytest.fixture(autouse=True)
def mmseg_scope():
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


def build(cfg):
    # A ConfigDict, as from a config file (the segmentors read test_cfg.mode etc.).
    model = MODELS.build(ConfigDict(cfg))
    model.init_weights()
    return model


def data_preprocessor(seg_pad_val=255):
    # size_divisor=1: no padding, the odd size reaches the network.
    return dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        size_divisor=1,
        pad_val=0,
        seg_pad_val=seg_pad_val,
    )


def fpn_neck(mode):
    return dict(
        type='TopDownFPN',
        in_channels=B0_CHANNELS,
        out_channels=32,
        upsample_mode=mode,
    )


def aux_fcn_head(in_channels, in_index):
    return dict(
        type='FCNHead',
        in_channels=in_channels,
        in_index=in_index,
        channels=16,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=NUM_CLASSES,
        norm_cfg=dict(type='BN'),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4
        ),
    )


def seg_batch(n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(
            torch.randint(0, 256, (3, H, W), generator=gen, dtype=torch.uint8)
        )
        sample = SegDataSample(
            metainfo=dict(img_shape=(H, W), ori_shape=(H, W))
        )
        label = torch.randint(0, NUM_CLASSES, (1, H, W), generator=gen)
        label[:, :5] = 255  # some ignored pixels
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def depth_batch(n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(
            torch.randint(0, 256, (3, H, W), generator=gen, dtype=torch.uint8)
        )
        sample = SegDataSample(
            metainfo=dict(img_shape=(H, W), ori_shape=(H, W))
        )
        depth = 0.5 + 9 * torch.rand((1, H, W), generator=gen)
        depth[:, :, :4] = (
            0  # invalid pixels (no measurement), ignored by SiLogLoss
        )
        sample.gt_depth_map = PixelData(data=depth)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def check_train_step(model, batch):
    """loss -> backward: finite losses, gradients on backbone, neck and heads."""
    model.train()
    data = model.data_preprocessor(batch, training=True)
    assert tuple(data['inputs'].shape) == (2, 3, H, W)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss) and loss > 0
    model.zero_grad()
    loss.backward()
    for part in ('backbone', 'neck', 'decode_head', 'auxiliary_head'):
        module = getattr(model, part, None)
        if module is None:
            continue
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), (
            f'{part}: missing gradients'
        )
        assert sum(g.abs().sum() for g in grads) > 0, f'{part}: zero gradients'
    return losses


def predict(model, batch):
    model.eval()
    data = model.data_preprocessor(batch, training=False)
    with torch.no_grad():
        return model(**data, mode='predict')


# --------------------------------------------------------------------------- concat head
@pytest.mark.parametrize('mode', ['nearest', 'bilinear'])
def test_encoder_decoder_concat_head(mode):
    model = build(
        dict(
            type='EncoderDecoder',
            data_preprocessor=data_preprocessor(),
            backbone=dict(type='PVTv2', arch='b0'),
            neck=fpn_neck(mode),
            decode_head=dict(
                type='FPNConcatHead',
                in_channels=[32] * 4,
                in_index=[0, 1, 2, 3],
                input_transform='multiple_select',
                channels=32,
                dropout_ratio=0.1,
                num_classes=NUM_CLASSES,
                norm_cfg=dict(type='BN'),
                align_corners=False,
                loss_decode=dict(
                    type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0
                ),
            ),
            auxiliary_head=aux_fcn_head(32, 2),
            train_cfg=dict(),
            test_cfg=dict(mode='whole'),
        )
    )
    assert type(model.decode_head) is FPNConcatHead
    assert model.neck.upsample_mode == mode
    losses = check_train_step(model, seg_batch())
    assert {'decode.loss_ce', 'decode.acc_seg', 'aux.loss_ce'} <= set(losses)

    results = predict(model, seg_batch(seed=1))
    assert len(results) == 2
    for r in results:
        assert tuple(r.seg_logits.data.shape) == (NUM_CLASSES, H, W)
        assert tuple(r.pred_sem_seg.data.shape) == (1, H, W)
        assert r.pred_sem_seg.data.max() < NUM_CLASSES
    # The head's own output is at the finest level (1/4, ceil).
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, H, W), mode='tensor')
    assert tuple(logits.shape) == (1, NUM_CLASSES, 17, 24)


@pytest.mark.parametrize('mode', ['nearest', 'bilinear'])
def test_concat_head_computes_the_notes_fusion(mode):
    head = FPNConcatHead(
        in_channels=[4, 4, 4],
        in_index=[0, 1, 2],
        channels=6,
        num_classes=3,
        interpolate_mode=mode,
    ).eval()
    feats = [
        torch.randn(2, 4, 9, 12),
        torch.randn(2, 4, 5, 6),
        torch.randn(2, 4, 3, 3),
    ]
    align_corners = False if mode == 'bilinear' else None
    fused = torch.cat(
        [feats[0]]
        + [
            F.interpolate(
                f, size=(9, 12), mode=mode, align_corners=align_corners
            )
            for f in feats[1:]
        ],
        dim=1,
    )
    conv = head.fusion_conv.conv
    expected = torch.relu(F.conv2d(fused, conv.weight, conv.bias, padding=1))
    expected = head.conv_seg(expected)  # eval: no dropout
    with torch.no_grad():
        torch.testing.assert_close(head(feats), expected, rtol=0, atol=1e-6)


def test_concat_head_errors():
    with pytest.raises(
        ValueError,
        match=r"needs input_transform='multiple_select'.*"
        r"got 'resize_concat'",
    ):
        FPNConcatHead(input_transform='resize_concat', num_classes=3)
    with pytest.raises(
        ValueError, match=r"interpolate_mode must be one of .*got 'trilinear'"
    ):
        FPNConcatHead(interpolate_mode='trilinear', num_classes=3)
    head = FPNConcatHead(
        in_channels=[4, 4], in_index=[1, 2], channels=4, num_classes=3
    )
    feats = [
        torch.randn(1, 4, 9, 9),
        torch.randn(1, 4, 9, 9),
        torch.randn(1, 5, 5, 5),
    ]
    with pytest.raises(
        ValueError,
        match=r'input 2 has 5 channels, expected in_channels\[1\]=4',
    ):
        head(feats)
    with pytest.raises(
        ValueError, match=r'in_index\[1\]=2 is out of range for 2 entries'
    ):
        head(feats[:2])


# --------------------------------------------------------------------------- UPerNet
def test_upernet_on_pvtv2():
    """mmseg's UPerHead serves as is: it has its own PPM + FPN over the backbone levels."""
    model = build(
        dict(
            type='EncoderDecoder',
            data_preprocessor=data_preprocessor(),
            backbone=dict(type='PVTv2', arch='b0'),
            decode_head=dict(
                type='UPerHead',
                in_channels=B0_CHANNELS,
                in_index=[0, 1, 2, 3],
                pool_scales=(1, 2, 3, 6),
                channels=32,
                dropout_ratio=0.1,
                num_classes=NUM_CLASSES,
                norm_cfg=dict(type='BN'),
                align_corners=False,
                loss_decode=dict(
                    type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0
                ),
            ),
            auxiliary_head=aux_fcn_head(B0_CHANNELS[2], 2),
            train_cfg=dict(),
            test_cfg=dict(mode='whole'),
        )
    )
    losses = check_train_step(model, seg_batch())
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    for r in predict(model, seg_batch(seed=1)):
        assert tuple(r.pred_sem_seg.data.shape) == (1, H, W)


# --------------------------------------------------------------------------- depth
@pytest.mark.parametrize('mode', ['nearest', 'bilinear'])
def test_depth_estimator_fpn_depth_head(mode):
    model = build(
        dict(
            type='DepthEstimator',
            # padded depth = invalid
            data_preprocessor=data_preprocessor(seg_pad_val=0),
            backbone=dict(type='PVTv2', arch='b0'),
            neck=fpn_neck(mode),
            decode_head=dict(
                type='FPNDepthHead',
                max_depth=MAX_DEPTH,
                in_channels=[32] * 4,
                in_index=[0, 1, 2, 3],
                channels=32,
                norm_cfg=dict(type='BN'),
                loss_decode=dict(type='SiLogLoss'),
            ),
            # An auxiliary depth head on the two coarse levels (deep supervision).
            auxiliary_head=dict(
                type='FPNDepthHead',
                max_depth=MAX_DEPTH,
                in_channels=[32, 32],
                in_index=[2, 3],
                channels=16,
                loss_decode=dict(type='SiLogLoss', loss_weight=0.4),
            ),
            train_cfg=dict(),
            test_cfg=dict(mode='whole'),
        )
    )
    assert type(model.decode_head) is FPNDepthHead and model.out_channels == 1
    losses = check_train_step(model, depth_batch())
    assert set(losses) == {'decode.loss_silog', 'aux.loss_silog'}

    results = predict(model, depth_batch(seed=1))
    for r in results:
        depth = r.pred_depth_map.data
        assert tuple(depth.shape) == (1, H, W)
        assert (depth > 0).all() and (depth < MAX_DEPTH).all()
    # mmseg's DepthMetric consumes the predictions as they come out.
    metric = DepthMetric(min_depth_eval=1e-3, max_depth_eval=MAX_DEPTH)
    metric.process({}, [r.to_dict() for r in results])
    scores = metric.compute_metrics(metric.results)
    assert {'d1', 'abs_rel', 'rmse', 'silog'} <= set(scores)
    assert all(v == v for v in scores.values())  # no NaN


def test_depth_head_range_and_errors():
    head = FPNDepthHead(
        max_depth=2.5, in_channels=[4, 4], in_index=[0, 1], channels=4
    )
    # no dropout by default
    assert head.dropout is None and head.out_channels == 1
    head.eval()
    with torch.no_grad():
        # saturate the sigmoid: depth -> max_depth
        head.conv_seg.bias.fill_(50.0)
        depth = head([torch.randn(1, 4, 7, 9), torch.randn(1, 4, 4, 5)])
    assert tuple(depth.shape) == (1, 1, 7, 9)
    torch.testing.assert_close(depth, torch.full_like(depth, 2.5))
    with pytest.raises(
        ValueError, match=r'max_depth must be a finite positive number .*got 0'
    ):
        FPNDepthHead(max_depth=0)
    with pytest.raises(
        TypeError, match=r"max_depth must be a number, got '10'"
    ):
        FPNDepthHead(max_depth='10')
    with pytest.raises(
        ValueError, match=r'num_classes must be 1 \(or left out\), got 3'
    ):
        FPNDepthHead(num_classes=3)
