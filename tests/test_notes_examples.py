"""The design notes' examples, from our configs (``configs/examples/``).

a. "PVT-v2 + FPN segmentation": timm pvt_v2_b2 -> FPN -> concat head, 1 class, 224 x 224
   -> logits 1 x 1 x 224 x 224; our neck computes the notes' ``FPN`` class.
b. "timm + torchvision FeaturePyramidNetwork": our neck reproduces torchvision's outputs
   on the same features with the same weights (four 256-channel maps at 56/28/14/7).
c. Case 4, classification from the pyramid: GAP of the coarsest level + linear
   (``PyramidClsHead``; an mmpretrain classifier config when mmpretrain is installed).
"""

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine import Config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from torchvision.ops import FeaturePyramidNetwork

import pvtfpn_mm  # noqa: F401  (registers the models)
from pvtfpn_mm.models.backbones import TimmFeatures
from pvtfpn_mm.models.heads import PyramidClsHead
from pvtfpn_mm.models.heads.pyramid_cls_head import MMPRETRAIN_AVAILABLE
from pvtfpn_mm.models.necks import TopDownFPN

SEG_CONFIG = 'configs/examples/fpn-concat_timm-pvt-v2-b2_topdownfpn_binary_drive-224x224.py'
TV_CONFIG = (
    'configs/examples/timm-pvt-v2-b2_topdownfpn_torchvision-equivalent.py'
)
CLS_CONFIG = 'configs/examples/cls_timm-pvt-v2-b2_topdownfpn_pyramid-cls-head_in1k-224.py'
B2_CHANNELS = [64, 128, 320, 512]  # the notes' PVT-v2-B2 table
SIZES_224 = [56, 28, 14, 7]  # the notes' P1..P4 for a 224 x 224 input


# Verbatim: the formatter leaves the notes' code as the notes write it.
# fmt: off
class NotesFPN(nn.Module):
    """The notes' minimal FPN ("3. FPN Decoder (minimal)"), verbatim but for the name."""

    def __init__(self, in_channels, out_channels=256):
        super().__init__()
        self.lateral = nn.ModuleList(
            [nn.Conv2d(c, out_channels, kernel_size=1) for c in in_channels])
        self.smooth = nn.ModuleList(
            [nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
             for _ in range(len(in_channels))])

    def forward(self, features):
        C1, C2, C3, C4 = features
        P4 = self.lateral[3](C4)
        P3 = self.lateral[2](C3) + F.interpolate(P4, size=C3.shape[-2:], mode='bilinear', align_corners=False)  # noqa: E501
        P2 = self.lateral[1](C2) + F.interpolate(P3, size=C2.shape[-2:], mode='bilinear', align_corners=False)  # noqa: E501
        P1 = self.lateral[0](C1) + F.interpolate(P2, size=C1.shape[-2:], mode='bilinear', align_corners=False)  # noqa: E501
        P1 = self.smooth[0](P1)
        P2 = self.smooth[1](P2)
        P3 = self.smooth[2](P3)
        P4 = self.smooth[3](P4)
        return [P1, P2, P3, P4]
# fmt: on


def copy_convs(neck: TopDownFPN, lateral, smooth):
    """Gives the convs of another FPN the weights of our neck's laterals / smoothing."""
    with torch.no_grad():
        for ours, theirs in zip(neck.lateral_convs, lateral, strict=True):
            theirs.weight.copy_(ours.conv.weight)
            theirs.bias.copy_(ours.conv.bias)
        for ours, theirs in zip(neck.fpn_convs, smooth, strict=True):
            theirs.weight.copy_(ours.conv.weight)
            theirs.bias.copy_(ours.conv.bias)


# ------------------------------------------------------- a. PVT-v2 + FPN segmentation


@pytest.fixture(scope='module')
def segmentor():
    from mmseg.registry import MODELS

    cfg = Config.fromfile(SEG_CONFIG).model
    cfg.backbone.init_cfg = None  # offline: random weights
    cfg.test_cfg = dict(mode='whole')
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg)
        model.init_weights()
    return model.eval()


def test_segmentation_example_224(segmentor):
    assert type(segmentor.backbone) is TimmFeatures
    assert segmentor.backbone.model_name == 'pvt_v2_b2'
    assert type(segmentor.decode_head).__name__ == 'FPNConcatHead'
    x = torch.randn(1, 3, 224, 224)
    metas = [
        dict(img_shape=(224, 224), ori_shape=(224, 224), pad_shape=(224, 224))
    ]
    with torch.no_grad():
        feats = segmentor.backbone(x)
        pyramid = segmentor.neck(feats)
        logits = segmentor.encode_decode(x, metas)
        notes_fpn = NotesFPN(B2_CHANNELS, 256)
        copy_convs(segmentor.neck, notes_fpn.lateral, notes_fpn.smooth)
        notes_pyramid = notes_fpn(list(feats))
    # The notes' tables: C1-C4 64/128/320/512 channels; P1-P4 256 channels; 56..7.
    assert [tuple(f.shape) for f in feats] == [
        (1, c, s, s) for c, s in zip(B2_CHANNELS, SIZES_224, strict=True)
    ]
    assert [tuple(p.shape) for p in pyramid] == [
        (1, 256, s, s) for s in SIZES_224
    ]
    for ours, notes in zip(pyramid, notes_pyramid, strict=True):
        torch.testing.assert_close(ours, notes, rtol=1e-5, atol=1e-5)
    # The notes' expected output.
    assert tuple(logits.shape) == (1, 1, 224, 224)


def test_segmentation_example_train_and_predict(segmentor):
    from mmseg.structures import SegDataSample

    sample = SegDataSample(
        metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64))
    )
    mask = torch.zeros(1, 64, 64, dtype=torch.long)
    mask[:, 16:40, 20:50] = 1  # one foreground class
    sample.gt_sem_seg = PixelData(data=mask)
    batch = dict(
        inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)],
        data_samples=[sample],
    )
    segmentor.data_preprocessor.size = (64, 64)
    try:
        segmentor.train()
        losses = segmentor(
            **segmentor.data_preprocessor(batch, True), mode='loss'
        )
        loss, _ = segmentor.parse_losses(losses)
        assert 'decode.loss_ce' in losses and torch.isfinite(loss)
        segmentor.zero_grad()
        loss.backward()
        for part in (
            segmentor.backbone,
            segmentor.neck,
            segmentor.decode_head,
        ):
            assert all(
                p.grad is not None
                for p in part.parameters()
                if p.requires_grad
            )
        segmentor.eval()
        with torch.no_grad():
            result = segmentor(
                **segmentor.data_preprocessor(batch, False), mode='predict'
            )[0]
    finally:
        segmentor.data_preprocessor.size = (224, 224)
        segmentor.zero_grad(set_to_none=True)
        segmentor.eval()
    assert tuple(result.seg_logits.data.shape) == (1, 64, 64)
    assert set(result.pred_sem_seg.data.unique().tolist()) <= {0, 1}


# ----------------------------------------- b. timm + torchvision FeaturePyramidNetwork


def test_torchvision_fpn_example():
    from mmdet.registry import MODELS

    # The notes' code (without downloading weights).
    backbone = timm.create_model(
        'pvt_v2_b2', pretrained=False, features_only=True
    ).eval()
    channels = backbone.feature_info.channels()
    fpn = FeaturePyramidNetwork(in_channels_list=channels, out_channels=256)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        features = backbone(x)
        pyramid = fpn({f'c{i}': f for i, f in enumerate(features)})
    assert [(k, tuple(v.shape)) for k, v in pyramid.items()] == [
        (f'c{i}', (1, 256, s, s)) for i, s in enumerate(SIZES_224)
    ]

    # Ours from the example config, with the same weights.
    cfg = Config.fromfile(TV_CONFIG).model
    with DefaultScope.overwrite_default_scope('mmdet'):
        ours_backbone = MODELS.build(cfg.backbone).eval()
        neck = MODELS.build(cfg.neck).eval()
    assert neck.in_channels == channels == B2_CHANNELS
    ours_backbone.model.load_state_dict(backbone.state_dict(), strict=True)
    neck.load_state_dict(
        {
            f'{ours}.{i}.conv.{param}': fpn.state_dict()[
                f'{theirs}.{i}.0.{param}'
            ]
            for ours, theirs in (
                ('lateral_convs', 'inner_blocks'),
                ('fpn_convs', 'layer_blocks'),
            )
            for i in range(4)
            for param in ('weight', 'bias')
        },
        strict=True,
    )
    with torch.no_grad():
        ours_features = ours_backbone(x)
        outs = neck(ours_features)
    for a, b in zip(ours_features, features, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(outs) == len(pyramid) == 4
    for out, expected in zip(outs, pyramid.values(), strict=True):
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


# ------------------------------------------- c. classification from the pyramid


def test_pyramid_cls_head_is_the_notes_case_4():
    head = PyramidClsHead(num_classes=10, in_channels=256).eval()
    pyramid = [torch.randn(2, 256, s, s) for s in SIZES_224]
    P4 = pyramid[-1]
    # The notes' code, with the head's linear weights.
    linear = nn.Linear(256, 10)
    linear.load_state_dict(head.fc.state_dict())
    x = F.adaptive_avg_pool2d(P4, 1).flatten(1)
    expected = linear(x)
    torch.testing.assert_close(head(pyramid), expected)
    torch.testing.assert_close(head(tuple(pyramid)), expected)

    finest = PyramidClsHead(num_classes=10, in_channels=256, in_index=0)
    finest.load_state_dict(head.state_dict())
    torch.testing.assert_close(
        finest(pyramid),
        linear(F.adaptive_avg_pool2d(pyramid[0], 1).flatten(1)),
    )
    # Dropout acts only in training.
    dropped = PyramidClsHead(
        num_classes=10, in_channels=256, dropout_ratio=0.5
    )
    dropped.load_state_dict(head.state_dict())
    torch.testing.assert_close(dropped.eval()(pyramid), expected)


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (
            dict(num_classes=0),
            ValueError,
            r'num_classes must be a positive int, got 0',
        ),
        (
            dict(num_classes='3'),
            TypeError,
            r"num_classes must be a positive int, got '3'",
        ),
        (
            dict(in_channels=-1),
            ValueError,
            r'in_channels must be a positive int, got -1',
        ),
        (
            dict(in_channels=2.0),
            TypeError,
            r'in_channels must be a positive int, got 2\.0',
        ),
        (
            dict(in_index=1.0),
            TypeError,
            r'in_index must be an int index, got 1\.0',
        ),
        (
            dict(dropout_ratio=1.5),
            ValueError,
            r'dropout_ratio must be in \[0, 1\], got 1\.5',
        ),
        (
            dict(dropout_ratio='0.1'),
            TypeError,
            r"dropout_ratio must be a number in \[0, 1\], got '0.1'",
        ),
    ],
)
def test_pyramid_cls_head_bad_arguments(kwargs, error, match):
    kwargs = {'num_classes': 3, **kwargs}
    with pytest.raises(error, match=match):
        PyramidClsHead(**kwargs)


def test_pyramid_cls_head_bad_inputs():
    head = PyramidClsHead(num_classes=3, in_channels=256)
    with pytest.raises(
        TypeError, match='expects a sequence of NCHW pyramid levels'
    ):
        head(torch.randn(1, 256, 7, 7))
    with pytest.raises(
        ValueError, match=r'level -1 has shape \(1, 128, 7, 7\), expected'
    ):
        head([torch.randn(1, 256, 14, 14), torch.randn(1, 128, 7, 7)])
    with pytest.raises(
        ValueError, match=r'in_index=4 is out of range for 2 entries'
    ):
        PyramidClsHead(num_classes=3, in_index=4)(
            [torch.randn(1, 256, 7, 7)] * 2
        )


@pytest.mark.skipif(MMPRETRAIN_AVAILABLE, reason='mmpretrain is installed')
def test_pyramid_cls_head_without_mmpretrain():
    with pytest.raises(
        ImportError, match=r"\['loss'\] are arguments of mmpretrain"
    ):
        PyramidClsHead(num_classes=3, loss=dict(type='CrossEntropyLoss'))


def test_classification_example_with_mmpretrain():
    import mmpretrain  # noqa: F401  (part of the pinned stack: must not skip)
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    cfg = Config.fromfile(CLS_CONFIG)
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None  # offline: random weights
    model_cfg.head.num_classes = 5
    model_cfg.data_preprocessor = dict(cfg.data_preprocessor, num_classes=5)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
        model.init_weights()
        assert type(model.backbone) is TimmFeatures
        assert type(model.neck) is TopDownFPN
        assert type(model.head) is PyramidClsHead
        batch = dict(
            inputs=[
                torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                for _ in range(2)
            ],
            data_samples=[DataSample().set_gt_label(i) for i in (1, 3)],
        )
        model.train()
        losses = model(**model.data_preprocessor(batch, True), mode='loss')
        loss, _ = model.parse_losses(losses)
        assert torch.isfinite(loss)
        loss.backward()
        # P4 = smooth(lateral(C4)): the classifier reaches the whole backbone but only
        # the coarsest lateral / smoothing convs of the neck.
        used = [
            model.backbone,
            model.neck.lateral_convs[3],
            model.neck.fpn_convs[3],
            model.head,
        ]
        assert all(
            p.grad is not None
            for m in used
            for p in m.parameters()
            if p.requires_grad
        )
        assert all(
            p.grad is None
            for m in (*model.neck.lateral_convs[:3], *model.neck.fpn_convs[:3])
            for p in m.parameters()
        )
        model.eval()
        data = model.data_preprocessor(batch, False)
        with torch.no_grad():
            logits = model(**data, mode='tensor')
            pyramid = model.neck(model.backbone(data['inputs']))
            predictions = model(**data, mode='predict')
    assert tuple(logits.shape) == (2, 5)
    torch.testing.assert_close(
        logits, model.head.fc(F.adaptive_avg_pool2d(pyramid[-1], 1).flatten(1))
    )
    assert tuple(predictions[0].pred_score.shape) == (5,)
