"""mmdet: RetinaNet and Mask R-CNN on PVTv2 + TopDownFPN, on CPU at odd image sizes."""

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope

import pvtfpn_mm  # noqa: F401  (registers the models)
from pvtfpn_mm.models.necks import TopDownFPN

from _helpers import det_sample

B0_CHANNELS = [32, 64, 160, 256]
NUM_CLASSES = 3
FEAT = 32  # neck/head channels, small for speed
SIZES = [(67, 93), (61, 75)]  # odd image sizes, one per image of the batch


@pytest.fixture(autouse=True)
def mmdet_scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def data_preprocessor(**kwargs):
    # pad_size_divisor=1: the batch is padded to its largest image only, so the
    # network sees an odd size (67x93).
    return dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1,
        **kwargs,
    )


def det_batch(with_mask=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for h, w in SIZES:
        inputs.append(
            torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8)
        )
        sample = det_sample(
            h, w, [[4.0, 6.0, 40.0, 50.0], [20.0, 10.0, 70.0, 33.0]], with_mask
        )
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def build(cfg):
    # A ConfigDict, as from a config file (the segmentors read test_cfg.mode etc.).
    model = MODELS.build(ConfigDict(cfg))
    model.init_weights()
    return model


def check_loss_backward(model, batch, expected_losses):
    model.train()
    data = model.data_preprocessor(batch, training=True)
    assert tuple(data['inputs'].shape) == (2, 3, 67, 93)
    losses = model(**data, mode='loss')
    assert expected_losses <= set(losses), sorted(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss) and loss > 0
    model.zero_grad()
    loss.backward()
    for part in ('backbone', 'neck'):
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert all(g is not None for g in grads), f'{part}: missing gradients'
        assert sum(g.abs().sum() for g in grads) > 0, f'{part}: zero gradients'


def run_predict(model, batch):
    model.eval()
    data = model.data_preprocessor(batch, training=False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    assert len(results) == 2
    return results


@pytest.mark.parametrize('mode', ['nearest', 'bilinear'])
def test_retinanet(mode):
    model = build(
        dict(
            type='RetinaNet',
            data_preprocessor=data_preprocessor(),
            backbone=dict(type='PVTv2', arch='b0'),
            neck=dict(
                type='TopDownFPN',
                in_channels=B0_CHANNELS,
                out_channels=FEAT,
                start_level=1,
                num_outs=5,
                extra_source='input',
                upsample_mode=mode,
            ),
            bbox_head=dict(
                type='RetinaHead',
                num_classes=NUM_CLASSES,
                in_channels=FEAT,
                stacked_convs=2,
                feat_channels=FEAT,
                anchor_generator=dict(
                    type='AnchorGenerator',
                    octave_base_scale=4,
                    scales_per_octave=3,
                    ratios=[0.5, 1.0, 2.0],
                    strides=[8, 16, 32, 64, 128],
                ),
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0.0] * 4,
                    target_stds=[1.0] * 4,
                ),
                loss_cls=dict(
                    type='FocalLoss',
                    use_sigmoid=True,
                    gamma=2.0,
                    alpha=0.25,
                    loss_weight=1.0,
                ),
                loss_bbox=dict(type='L1Loss', loss_weight=1.0),
            ),
            train_cfg=dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.5,
                    neg_iou_thr=0.4,
                    min_pos_iou=0,
                    ignore_iof_thr=-1,
                ),
                sampler=dict(type='PseudoSampler'),
                allowed_border=-1,
                pos_weight=-1,
                debug=False,
            ),
            test_cfg=dict(
                nms_pre=100,
                min_bbox_size=0,
                score_thr=0.0,
                nms=dict(type='nms', iou_threshold=0.5),
                max_per_img=10,
            ),
        )
    )
    assert type(model.neck) is TopDownFPN
    # P3..P7 for the strides 8..128 of the anchor generator.
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 67, 93))
    assert [tuple(f.shape[2:]) for f in feats] == [
        (9, 12),
        (5, 6),
        (3, 3),
        (2, 2),
        (1, 1),
    ]

    check_loss_backward(model, det_batch(), {'loss_cls', 'loss_bbox'})
    for r, (h, w) in zip(
        run_predict(model, det_batch(seed=1)), SIZES, strict=True
    ):
        pred = r.pred_instances
        assert 0 < len(pred) <= 10
        assert pred.bboxes.shape[1] == 4 and (pred.labels < NUM_CLASSES).all()
        assert (pred.bboxes[:, 2] <= w).all() and (
            pred.bboxes[:, 3] <= h
        ).all()


@pytest.mark.parametrize('mode', ['nearest', 'bilinear'])
def test_mask_rcnn(mode):
    roi_extractor = dict(
        type='SingleRoIExtractor',
        out_channels=FEAT,
        featmap_strides=[4, 8, 16, 32],
    )
    model = build(
        dict(
            type='MaskRCNN',
            data_preprocessor=data_preprocessor(pad_mask=True),
            backbone=dict(type='PVTv2', arch='b0'),
            neck=dict(
                type='TopDownFPN',
                in_channels=B0_CHANNELS,
                out_channels=FEAT,
                start_level=0,
                num_outs=5,
                extra_source='pool',
                upsample_mode=mode,
            ),
            rpn_head=dict(
                type='RPNHead',
                in_channels=FEAT,
                feat_channels=FEAT,
                anchor_generator=dict(
                    type='AnchorGenerator',
                    scales=[8],
                    ratios=[0.5, 1.0, 2.0],
                    strides=[4, 8, 16, 32, 64],
                ),
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0.0] * 4,
                    target_stds=[1.0] * 4,
                ),
                loss_cls=dict(
                    type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0
                ),
                loss_bbox=dict(type='L1Loss', loss_weight=1.0),
            ),
            roi_head=dict(
                type='StandardRoIHead',
                bbox_roi_extractor=dict(
                    roi_layer=dict(
                        type='RoIAlign', output_size=7, sampling_ratio=0
                    ),
                    **roi_extractor,
                ),
                bbox_head=dict(
                    type='Shared2FCBBoxHead',
                    in_channels=FEAT,
                    fc_out_channels=64,
                    roi_feat_size=7,
                    num_classes=NUM_CLASSES,
                    bbox_coder=dict(
                        type='DeltaXYWHBBoxCoder',
                        target_means=[0.0] * 4,
                        target_stds=[0.1, 0.1, 0.2, 0.2],
                    ),
                    reg_class_agnostic=False,
                    loss_cls=dict(
                        type='CrossEntropyLoss',
                        use_sigmoid=False,
                        loss_weight=1.0,
                    ),
                    loss_bbox=dict(type='L1Loss', loss_weight=1.0),
                ),
                mask_roi_extractor=dict(
                    roi_layer=dict(
                        type='RoIAlign', output_size=14, sampling_ratio=0
                    ),
                    **roi_extractor,
                ),
                mask_head=dict(
                    type='FCNMaskHead',
                    num_convs=2,
                    in_channels=FEAT,
                    conv_out_channels=FEAT,
                    num_classes=NUM_CLASSES,
                    loss_mask=dict(
                        type='CrossEntropyLoss', use_mask=True, loss_weight=1.0
                    ),
                ),
            ),
            train_cfg=dict(
                rpn=dict(
                    assigner=dict(
                        type='MaxIoUAssigner',
                        pos_iou_thr=0.7,
                        neg_iou_thr=0.3,
                        min_pos_iou=0.3,
                        match_low_quality=True,
                        ignore_iof_thr=-1,
                    ),
                    sampler=dict(
                        type='RandomSampler',
                        num=64,
                        pos_fraction=0.5,
                        neg_pos_ub=-1,
                        add_gt_as_proposals=False,
                    ),
                    allowed_border=-1,
                    pos_weight=-1,
                    debug=False,
                ),
                rpn_proposal=dict(
                    nms_pre=200,
                    max_per_img=50,
                    nms=dict(type='nms', iou_threshold=0.7),
                    min_bbox_size=0,
                ),
                rcnn=dict(
                    assigner=dict(
                        type='MaxIoUAssigner',
                        pos_iou_thr=0.5,
                        neg_iou_thr=0.5,
                        min_pos_iou=0.5,
                        match_low_quality=True,
                        ignore_iof_thr=-1,
                    ),
                    sampler=dict(
                        type='RandomSampler',
                        num=32,
                        pos_fraction=0.25,
                        neg_pos_ub=-1,
                        add_gt_as_proposals=True,
                    ),
                    mask_size=28,
                    pos_weight=-1,
                    debug=False,
                ),
            ),
            test_cfg=dict(
                rpn=dict(
                    nms_pre=200,
                    max_per_img=50,
                    nms=dict(type='nms', iou_threshold=0.7),
                    min_bbox_size=0,
                ),
                rcnn=dict(
                    score_thr=0.0,
                    nms=dict(type='nms', iou_threshold=0.5),
                    max_per_img=10,
                    mask_thr_binary=0.5,
                ),
            ),
        )
    )
    # P2..P5 and the max-pooled P6 for the RPN strides 4..64.
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 67, 93))
    assert [tuple(f.shape[2:]) for f in feats] == [
        (17, 24),
        (9, 12),
        (5, 6),
        (3, 3),
        (2, 2),
    ]

    check_loss_backward(
        model,
        det_batch(with_mask=True),
        {
            'loss_rpn_cls',
            'loss_rpn_bbox',
            'loss_cls',
            'loss_bbox',
            'loss_mask',
        },
    )
    for r, (h, w) in zip(
        run_predict(model, det_batch(with_mask=True, seed=1)),
        SIZES,
        strict=True,
    ):
        pred = r.pred_instances
        assert 0 < len(pred) <= 10
        assert tuple(pred.masks.shape) == (len(pred), h, w)
        assert pred.masks.dtype == torch.bool


def test_notes_detection_head_is_retinahead():
    """The notes' DetectionHead: one head shared by all levels, per-level 3x3 class and
    box convs after a conv+ReLU tower: mmdet's RetinaHead with stacked_convs=2 and one
    anchor per location (RetinaHead keeps separate towers for the two branches)."""
    head = MODELS.build(
        dict(
            type='RetinaHead',
            num_classes=NUM_CLASSES,
            in_channels=FEAT,
            stacked_convs=2,
            feat_channels=FEAT,
            anchor_generator=dict(
                type='AnchorGenerator',
                octave_base_scale=4,
                scales_per_octave=1,
                ratios=[1.0],
                strides=[4, 8, 16, 32],
            ),
        )
    )
    feats = [torch.randn(1, FEAT, s, s + 1) for s in (17, 9, 5, 3)]  # P2..P5
    cls_scores, bbox_preds = head(feats)
    assert [tuple(c.shape) for c in cls_scores] == [
        (1, NUM_CLASSES, s, s + 1) for s in (17, 9, 5, 3)
    ]
    assert [tuple(b.shape) for b in bbox_preds] == [
        (1, 4, s, s + 1) for s in (17, 9, 5, 3)
    ]
    assert head.retina_cls.kernel_size == (3, 3) == head.retina_reg.kernel_size
    assert len(head.cls_convs) == 2 == len(head.reg_convs)
