"""The PVT v2 release's 3x detectors (configs/{cascade_rcnn,atss,gfl,sparse_rcnn}).

1. The recipe: every resolved config against :data:`RELEASE`, the release's values
   written here from its files -- whai362/PVT, branch ``v2`` (commit 57e2dfa),
   ``detection/configs/<file>`` resolved by hand through the file's ``_base_`` list
   (``_base_/schedules/schedule_1x.py`` gives the 500-iteration warm-up, ratio 0.001;
   ``_base_/datasets/coco_{detection,instance}.py`` the test pipeline and the 2 images a
   GPU; ``_base_/models/cascade_mask_rcnn_pvtv2_b2_fpn.py`` Cascade's RPN and training /
   test settings), and the 8 GPUs of ``detection/README.md``. They are written in the
   release's mmdet 2.13 syntax; the few 2.x -> 3.x translations are spelled out here
   (``describe_pipeline``, ``hungarian_3x``, :data:`EXTRA_SOURCE`, the optimizer and
   schedule checks). Nothing is compared with our configs' own values.
2. Parameters: each model has as many as the same detector mmdet 3.3 builds from its
   own config for the family, with mmdet's ``PyramidVisionTransformerV2`` (b2) for the
   backbone and mmdet's ``FPN`` -- as that config writes it, only ``in_channels``
   changed -- for the neck. mmdet has no linear-SRA PVT-v2, so for b2-li the b2 backbone
   is swapped for the official b2-li one, counted from the official key list
   (``_official_layout.py``) and timm's ``pvt_v2_b2_li``.
3. SyncBN (Cascade's box heads) works in one process without a process group, as in
   mmdet; mmengine's Runner makes it BatchNorm when the run is not distributed.
4. Each family's training pipeline, every size divided by 8, runs on toy images; and
   (slow) each family learns the toy COCO shapes on the CPU: a short schedule with a
   PVT-v2-b0 backbone from scratch, AMP (CPU: bfloat16) where the config has it, then COCO
   evaluation against a measured floor (tests/_toy_learning.py; docs/model_zoo_3x.md).
"""

import copy
import glob
import math
import os.path as osp

import pytest
import torch
import torch.nn as nn
import yaml
from mmengine.config import Config

import pvtfpn_mm  # noqa: F401
from pvtfpn_mm.engine.build import build_model_from_config

from _official_layout import backbone_shapes

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FAMILIES = ('cascade_rcnn', 'atss', 'gfl', 'sparse_rcnn')
CONFIGS = sorted(
    p
    for family in FAMILIES
    for p in glob.glob(osp.join(ROOT, 'configs', family, '*.py'))
)


def name_of(path):
    return osp.basename(path)[:-3]


def family_of(path):
    return osp.basename(osp.dirname(path))


#: The one config whose model-building tests stay in the fast loop (the cheapest).
FAST_MODEL = 'gfl_pvtv2-b2-li_topdownfpn_amp-ms-crop-3x_coco'


def model_param(path):
    """``pytest.param(path)`` with an id; slow but for :data:`FAST_MODEL` (each case
    builds a detector of 30-107 M parameters, some two)."""
    return pytest.param(
        path,
        id=name_of(path),
        marks=[] if name_of(path) == FAST_MODEL else [pytest.mark.slow],
    )


# ---------------------------------------------------------------- the release's values

RELEASE_URL = 'https://github.com/whai362/PVT/releases/download/v2/'
#: Short sides of detection/configs/*_3x_*.py's multi-scale resize (``img_scale`` =
#: ``[(480, 1333), ..., (800, 1333)]``, ``multiscale_mode='value'``, keep_ratio).
SHORT_480_800 = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)


def release_pipeline(with_mask):
    """The train pipeline of every 3x config of the release, as written there (2.13)."""
    ms = [(s, 1333) for s in SHORT_480_800]
    return [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask),
        dict(type='RandomFlip', flip_ratio=0.5),
        dict(
            type='AutoAugment',
            policies=[
                [
                    dict(
                        type='Resize',
                        img_scale=ms,
                        multiscale_mode='value',
                        keep_ratio=True,
                    )
                ],
                [
                    dict(
                        type='Resize',
                        img_scale=[(400, 1333), (500, 1333), (600, 1333)],
                        multiscale_mode='value',
                        keep_ratio=True,
                    ),
                    dict(
                        type='RandomCrop',
                        crop_type='absolute_range',
                        crop_size=(384, 600),
                        allow_negative_crop=True,
                    ),
                    dict(
                        type='Resize',
                        img_scale=ms,
                        multiscale_mode='value',
                        override=True,
                        keep_ratio=True,
                    ),
                ],
            ],
        ),
        dict(
            type='Normalize',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True,
        ),
        dict(type='Pad', size_divisor=32),
        dict(type='DefaultFormatBundle'),
        dict(
            type='Collect',
            keys=['img', 'gt_bboxes', 'gt_labels']
            + (['gt_masks'] if with_mask else []),
        ),
    ]


#: ``_base_/datasets/coco_*.py``: the test pipeline's scale (MultiScaleFlipAug
#: img_scale, flip=False, keep_ratio) and the images a GPU.
RELEASE_TEST_SCALE = (1333, 800)
#: The AdamW of the Cascade / ATSS / GFL 3x files.
APEX_OPTIMIZER = dict(
    type='AdamW',
    lr=0.0001,
    betas=(0.9, 0.999),
    weight_decay=0.05,
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
            'norm': dict(decay_mult=0.0),
        }
    ),
)
#: Their mixed precision: apex O1 (``apex.amp.initialize(..., opt_level='O1')``, dynamic
#: loss scale) through this optimizer hook, ``runner = EpochBasedRunnerAmp``.
APEX_OPTIMIZER_CONFIG = dict(
    type='DistOptimizerHook',
    update_interval=1,
    grad_clip=None,
    coalesce=True,
    bucket_size_mb=-1,
    use_fp16=True,
)
#: ``lr_config`` of every 3x file (``step=[27, 33]``) over schedule_1x's warm-up.
RELEASE_LR_CONFIG = dict(
    policy='step',
    warmup='linear',
    warmup_iters=500,
    warmup_ratio=0.001,
    step=[27, 33],
)
RELEASE_MAX_EPOCHS = 36
RELEASE_GPUS = 8

#: ``_base_/models/cascade_mask_rcnn_pvtv2_b2_fpn.py`` with the 3x file's box heads.
CASCADE_MODEL = dict(
    type='CascadeRCNN',
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator',
            scales=[8],
            ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64],
        ),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[1.0, 1.0, 1.0, 1.0],
        ),
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0
        ),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0),
    ),
    roi_head=dict(
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        bbox_head=[
            dict(
                type='ConvFCBBoxHead',
                num_shared_convs=4,
                num_shared_fcs=1,
                in_channels=256,
                conv_out_channels=256,
                fc_out_channels=1024,
                roi_feat_size=7,
                num_classes=80,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0.0, 0.0, 0.0, 0.0],
                    target_stds=stds,
                ),
                reg_class_agnostic=False,
                reg_decoded_bbox=True,
                norm_cfg=dict(type='SyncBN', requires_grad=True),
                loss_cls=dict(
                    type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0
                ),
                loss_bbox=dict(type='GIoULoss', loss_weight=10.0),
            )
            for stds in (
                [0.1, 0.1, 0.2, 0.2],
                [0.05, 0.05, 0.1, 0.1],
                [0.033, 0.033, 0.067, 0.067],
            )
        ],
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=80,
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
                num=256,
                pos_fraction=0.5,
                neg_pos_ub=-1,
                add_gt_as_proposals=False,
            ),
            allowed_border=0,
            pos_weight=-1,
            debug=False,
        ),
        rpn_proposal=dict(
            nms_across_levels=False,
            nms_pre=2000,
            nms_post=2000,
            max_per_img=2000,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0,
        ),
        rcnn=[
            dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=iou,
                    neg_iou_thr=iou,
                    min_pos_iou=iou,
                    match_low_quality=False,
                    ignore_iof_thr=-1,
                ),
                sampler=dict(
                    type='RandomSampler',
                    num=512,
                    pos_fraction=0.25,
                    neg_pos_ub=-1,
                    add_gt_as_proposals=True,
                ),
                mask_size=28,
                pos_weight=-1,
                debug=False,
            )
            for iou in (0.5, 0.6, 0.7)
        ],
    ),
    test_cfg=dict(
        rpn=dict(
            nms_across_levels=False,
            nms_pre=1000,
            nms_post=1000,
            max_per_img=1000,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0,
        ),
        rcnn=dict(
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100,
            mask_thr_binary=0.5,
        ),
    ),
)
#: Keys of the release's mmdet 2.13 configs that 3.x has not: mmdet 2.13 itself ignores
#: ``nms_across_levels=False`` (its default) and checks ``nms_post == max_per_img``
#: (deprecated for ``max_per_img``).
ONLY_IN_2X = ('nms_across_levels', 'nms_post')

_ATSS_TRAIN_TEST = dict(
    train_cfg=dict(
        assigner=dict(type='ATSSAssigner', topk=9),
        allowed_border=-1,
        pos_weight=-1,
        debug=False,
    ),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100,
    ),
)
_ANCHORS = dict(
    type='AnchorGenerator',
    ratios=[1.0],
    octave_base_scale=8,
    scales_per_octave=1,
    strides=[8, 16, 32, 64, 128],
)
#: atss_pvt_v2_b2{,_li}_fpn_3x_mstrain_fp16.py
ATSS_MODEL = dict(
    type='ATSS',
    bbox_head=dict(
        type='ATSSHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        anchor_generator=_ANCHORS,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[0.1, 0.1, 0.2, 0.2],
        ),
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0,
        ),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_centerness=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0
        ),
    ),
    **_ATSS_TRAIN_TEST,
)
#: gfl_pvt_v2_b2{,_li}_fpn_3x_mstrain_fp16.py
GFL_MODEL = dict(
    type='GFL',
    bbox_head=dict(
        type='GFLHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        anchor_generator=_ANCHORS,
        loss_cls=dict(
            type='QualityFocalLoss',
            use_sigmoid=True,
            beta=2.0,
            loss_weight=1.0,
        ),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
        reg_max=16,
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
    ),
    **_ATSS_TRAIN_TEST,
)
#: sparse_rcnn_pvt_v2_b2{,_li}_fpn_300_proposals_crop_mstrain_480-800_3x_coco.py
SPARSE_MODEL = dict(
    type='SparseRCNN',
    rpn_head=dict(
        type='EmbeddingRPNHead',
        num_proposals=300,
        proposal_feature_channel=256,
    ),
    roi_head=dict(
        type='SparseRoIHead',
        num_stages=6,
        stage_loss_weights=[1] * 6,
        proposal_feature_channel=256,
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        bbox_head=[
            dict(
                type='DIIHead',
                num_classes=80,
                num_ffn_fcs=2,
                num_heads=8,
                num_cls_fcs=1,
                num_reg_fcs=3,
                feedforward_channels=2048,
                in_channels=256,
                dropout=0.0,
                ffn_act_cfg=dict(type='ReLU', inplace=True),
                dynamic_conv_cfg=dict(
                    type='DynamicConv',
                    in_channels=256,
                    feat_channels=64,
                    out_channels=256,
                    input_feat_shape=7,
                    act_cfg=dict(type='ReLU', inplace=True),
                    norm_cfg=dict(type='LN'),
                ),
                loss_bbox=dict(type='L1Loss', loss_weight=5.0),
                loss_iou=dict(type='GIoULoss', loss_weight=2.0),
                loss_cls=dict(
                    type='FocalLoss',
                    use_sigmoid=True,
                    gamma=2.0,
                    alpha=0.25,
                    loss_weight=2.0,
                ),
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    clip_border=False,
                    target_means=[0.0, 0.0, 0.0, 0.0],
                    target_stds=[0.5, 0.5, 1.0, 1.0],
                ),
            )
            for _ in range(6)
        ],
    ),
    train_cfg=dict(
        rpn=None,
        rcnn=[
            dict(
                assigner=dict(
                    type='HungarianAssigner',
                    cls_cost=dict(type='FocalLossCost', weight=2.0),
                    reg_cost=dict(type='BBoxL1Cost', weight=5.0),
                    iou_cost=dict(type='IoUCost', iou_mode='giou', weight=2.0),
                ),
                sampler=dict(type='PseudoSampler'),
                pos_weight=1,
            )
            for _ in range(6)
        ],
    ),
    test_cfg=dict(rpn=None, rcnn=dict(max_per_img=300)),
)


def _release(file, arch, model, neck, optimizer, optimizer_config, samples):
    return dict(
        file=file,
        arch=arch,
        pretrained=f'{RELEASE_URL}pvt_v2_{arch}.pth',
        model=model,
        neck=neck,
        optimizer=optimizer,
        optimizer_config=optimizer_config,
        samples_per_gpu=samples,
        find_unused_parameters=optimizer_config.get('use_fp16', False),
        with_mask=model['type'] == 'CascadeRCNN',
    )


#: The release's FPNs: ``start_level``, ``num_outs``, ``add_extra_convs``.
CASCADE_NECK = dict(start_level=0, num_outs=5, add_extra_convs=False)
ATSS_NECK = dict(start_level=1, num_outs=5, add_extra_convs='on_output')
SPARSE_NECK = dict(start_level=0, num_outs=4, add_extra_convs='on_input')
SPARSE_OPTIMIZER_CONFIG = dict(grad_clip=dict(max_norm=1, norm_type=2))

#: Our config name -> the release's values (its file under detection/configs/).
RELEASE = {}
for _arch in ('b2', 'b2_li'):
    _a = _arch.replace('_', '-')
    _r = _arch if _arch == 'b2' else 'b2_li'
    RELEASE[
        f'cascade-mask-rcnn_pvtv2-{_a}_topdownfpn_4conv1fc-giou_amp-ms-crop-3x_coco'
    ] = _release(
        f'cascade_mask_rcnn_pvt_v2_{_r}_fpn_3x_mstrain_fp16.py',
        _arch,
        CASCADE_MODEL,
        CASCADE_NECK,
        APEX_OPTIMIZER,
        APEX_OPTIMIZER_CONFIG,
        2,
    )
    RELEASE[f'atss_pvtv2-{_a}_topdownfpn_amp-ms-crop-3x_coco'] = _release(
        f'atss_pvt_v2_{_r}_fpn_3x_mstrain_fp16.py',
        _arch,
        ATSS_MODEL,
        ATSS_NECK,
        APEX_OPTIMIZER,
        APEX_OPTIMIZER_CONFIG,
        2,
    )
    RELEASE[f'gfl_pvtv2-{_a}_topdownfpn_amp-ms-crop-3x_coco'] = _release(
        f'gfl_pvt_v2_{_r}_fpn_3x_mstrain_fp16.py',
        _arch,
        GFL_MODEL,
        ATSS_NECK,
        APEX_OPTIMIZER,
        APEX_OPTIMIZER_CONFIG,
        2,
    )
# Sparse R-CNN: fp32, clipped gradients, no paramwise_cfg; b2 and b2_li differ.
RELEASE[
    'sparse-rcnn_pvtv2-b2_topdownfpn_300-proposals_crop-ms-480-800-3x_coco'
] = _release(
    'sparse_rcnn_pvt_v2_b2_fpn_300_proposals_crop_mstrain_480-800_3x_coco.py',
    'b2',
    SPARSE_MODEL,
    SPARSE_NECK,
    dict(type='AdamW', lr=0.000025 / 1.4, weight_decay=0.0001),
    SPARSE_OPTIMIZER_CONFIG,
    1,
)
RELEASE[
    'sparse-rcnn_pvtv2-b2-li_topdownfpn_300-proposals_crop-ms-480-800-3x_coco'
] = _release(
    'sparse_rcnn_pvt_v2_b2_li_fpn_300_proposals_crop_mstrain_480-800_3x_coco.py',
    'b2_li',
    SPARSE_MODEL,
    SPARSE_NECK,
    dict(type='AdamW', lr=0.000025, weight_decay=0.0001),
    SPARSE_OPTIMIZER_CONFIG,
    2,
)

#: mmdet FPN ``add_extra_convs`` -> TopDownFPN ``extra_source`` (README table).
EXTRA_SOURCE = {False: 'pool', 'on_input': 'input', 'on_output': 'output'}


# ------------------------------------------------------------------- comparing


def assert_matches(ours, release, path='model'):
    """Every key of ``release`` (nested dicts / lists) is in ``ours`` with an equal value
    (numbers to 1e-12; lists and tuples alike); keys of :data:`ONLY_IN_2X` are skipped."""
    if isinstance(release, dict):
        assert isinstance(ours, dict), (path, ours)
        for key, value in release.items():
            if key in ONLY_IN_2X:
                continue
            assert key in ours, f'{path}.{key} missing (release: {value!r})'
            assert_matches(ours[key], value, f'{path}.{key}')
    elif isinstance(release, (list, tuple)):
        assert isinstance(ours, (list, tuple)), (path, ours)
        assert len(ours) == len(release), (path, ours, release)
        for i, (a, b) in enumerate(zip(ours, release, strict=True)):
            assert_matches(a, b, f'{path}[{i}]')
    elif isinstance(release, float) or isinstance(ours, float):
        assert ours == pytest.approx(release, rel=1e-12, abs=0), (
            path,
            ours,
            release,
        )
    else:
        assert ours == release, (path, ours, release)


def hungarian_3x(model):
    """The release's Sparse R-CNN model with mmdet 3.x's HungarianAssigner syntax: the
    2.13 ``cls_cost`` / ``reg_cost`` / ``iou_cost`` become ``match_costs`` (2.13's
    ``BBoxL1Cost`` compares ``xyxy`` boxes by default; 3.x says so)."""
    model = copy.deepcopy(model)
    for stage in model['train_cfg']['rcnn']:
        a = stage['assigner']
        reg = dict(a.pop('reg_cost'), box_format='xyxy')
        a['match_costs'] = [a.pop('cls_cost'), reg, a.pop('iou_cost')]
    return model


def _resize(scales, keep_ratio):
    # with keep_ratio, (a, b) and (b, a) are the same: long side <= max, short <= min
    assert keep_ratio is True
    return ('resize', sorted((min(s), max(s)) for s in scales))


def describe_pipeline(pipeline):
    """A train pipeline as a list of comparable steps; mmdet 2.13 (the release) and 3.x
    (ours) spellings give the same list when they do the same."""
    steps = []
    for t in pipeline:
        kind = t['type']
        if kind == 'LoadAnnotations':
            steps.append(('annotations', t.get('with_mask', False)))
        elif kind == 'RandomFlip':  # 2.13: flip_ratio; 3.x: prob
            steps.append(('flip', t.get('flip_ratio', t.get('prob'))))
        elif kind in ('AutoAugment', 'RandomChoice'):
            policies = t.get('policies', t.get('transforms'))
            steps.append(('choice', [describe_pipeline(p) for p in policies]))
        elif kind == 'Resize':
            # 2.13's multi-scale resize (`override` lets it run after the crop's)
            assert t['multiscale_mode'] == 'value'
            steps.append(_resize(t['img_scale'], t['keep_ratio']))
        elif kind == 'RandomChoiceResize':
            steps.append(_resize(t['scales'], t['keep_ratio']))
        elif kind == 'RandomCrop':
            steps.append(
                (
                    'crop',
                    t['crop_type'],
                    tuple(t['crop_size']),
                    t['allow_negative_crop'],
                )
            )
        elif kind in ('LoadImageFromFile', 'PackDetInputs'):
            continue
        elif kind in ('Normalize', 'Pad', 'DefaultFormatBundle', 'Collect'):
            continue  # 3.x: the data preprocessor (checked on its own)
        else:
            raise AssertionError(f'unexpected transform {kind}')
    return steps


_CONFIGS: dict = {}


def load(path):
    if path not in _CONFIGS:
        _CONFIGS[path] = Config.fromfile(path)
    return _CONFIGS[path]


def test_the_eight_configs_are_the_release_table():
    assert sorted(name_of(p) for p in CONFIGS) == sorted(RELEASE)
    assert len(CONFIGS) == 8


@pytest.mark.parametrize('path', CONFIGS, ids=name_of)
def test_recipe_is_the_release_recipe(path):
    cfg = load(path)
    release = RELEASE[name_of(path)]
    model = cfg.model.to_dict()

    # backbone: the release's pvt_v2_<arch> (drop path 0.1, hard-coded there)
    bb = model['backbone']
    assert bb['type'] == 'PVTv2' and bb['arch'] == release['arch']
    assert bb['drop_path_rate'] == 0.1
    assert list(bb['out_indices']) == [0, 1, 2, 3]
    assert bb['init_cfg'] == dict(
        type='Pretrained', checkpoint=release['pretrained']
    )
    # neck: the release's FPN as TopDownFPN
    neck = model['neck']
    assert neck['type'] == 'TopDownFPN'
    assert neck['in_channels'] == [64, 128, 320, 512]
    assert neck['out_channels'] == 256
    assert neck['start_level'] == release['neck']['start_level']
    assert neck['num_outs'] == release['neck']['num_outs']
    used = 4 - neck['start_level']
    if neck['num_outs'] > used:  # extra levels: made as the release makes them
        assert (
            neck['extra_source']
            == EXTRA_SOURCE[release['neck']['add_extra_convs']]
        )
    # heads, training and test settings
    official = release['model']
    if official['type'] == 'SparseRCNN':
        official = hungarian_3x(official)
    assert_matches(model, official)
    # the release's Normalize and Pad: 3.x's data preprocessor
    steps = {t['type']: t for t in release_pipeline(release['with_mask'])}
    preprocessor = model['data_preprocessor']
    assert preprocessor['type'] == 'DetDataPreprocessor'
    assert preprocessor['mean'] == steps['Normalize']['mean']
    assert preprocessor['std'] == steps['Normalize']['std']
    assert preprocessor['bgr_to_rgb'] is steps['Normalize']['to_rgb']
    assert preprocessor['pad_size_divisor'] == steps['Pad']['size_divisor']
    if release['with_mask']:
        assert model['data_preprocessor']['pad_mask'] is True

    # train pipeline: flip, then the DETR-style multi-scale or resize-crop-resize
    ours = describe_pipeline(cfg.train_dataloader.dataset.pipeline)
    assert ours == describe_pipeline(release_pipeline(release['with_mask']))
    assert ours[2][1][0] == [('resize', [(s, 1333) for s in SHORT_480_800])]
    assert ours[2][1][1][1] == ('crop', 'absolute_range', (384, 600), True)
    # test: one scale, 1333 x 800 with the aspect ratio kept, no flip
    test = cfg.test_dataloader.dataset.pipeline
    resizes = [t for t in test if 'Resize' in t['type']]
    assert len(resizes) == 1 and resizes[0]['type'] == 'Resize'
    assert tuple(resizes[0]['scale']) == RELEASE_TEST_SCALE
    assert resizes[0]['keep_ratio'] is True
    assert not any('Flip' in t['type'] for t in test)
    assert cfg.val_dataloader.dataset.pipeline == test
    assert any(
        t['type'] == 'LoadAnnotations'
        and t.get('with_mask', False) == release['with_mask']
        for t in test
    )

    # optimizer: AdamW (paramwise_cfg moved from the optimizer to the wrapper)
    wrapper = cfg.optim_wrapper.to_dict()
    optimizer = dict(release['optimizer'])
    paramwise = optimizer.pop('paramwise_cfg', None)
    assert_matches(wrapper['optimizer'], optimizer, 'optimizer')
    assert set(wrapper['optimizer']) == set(
        optimizer
    )  # betas: AdamW's default
    assert wrapper.get('paramwise_cfg') == paramwise
    hook = release['optimizer_config']
    if hook.get('use_fp16'):  # apex O1: dynamic loss scale
        assert wrapper['type'] == 'AmpOptimWrapper'
        assert wrapper['loss_scale'] == 'dynamic'
    else:
        assert wrapper['type'] == 'OptimWrapper'
    assert wrapper.get('clip_grad') == hook['grad_clip']
    assert wrapper.get('accumulative_counts', 1) == hook.get(
        'update_interval', 1
    )
    assert (
        cfg.get('find_unused_parameters', False)
        is (release['find_unused_parameters'])
    )

    # schedule: linear warm-up over 500 iterations, steps at 27 and 33, 36 epochs
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.train_cfg.max_epochs == RELEASE_MAX_EPOCHS
    warmup, steps = cfg.param_scheduler
    lr_config = RELEASE_LR_CONFIG
    assert warmup.type == 'LinearLR' and warmup.by_epoch is False
    assert (warmup.begin, warmup.end) == (0, lr_config['warmup_iters'])
    assert warmup.start_factor == lr_config['warmup_ratio']
    assert steps.type == 'MultiStepLR' and steps.by_epoch is True
    assert list(steps.milestones) == lr_config['step']
    assert steps.gamma == 0.1  # mmcv's step policy default
    assert (steps.begin, steps.end) == (0, RELEASE_MAX_EPOCHS)

    # batch: the release's images a GPU on 8 GPUs
    assert cfg.train_dataloader.batch_size == release['samples_per_gpu']
    assert cfg.train_dataloader.num_workers == release['samples_per_gpu']
    assert (
        cfg.auto_scale_lr.base_batch_size
        == RELEASE_GPUS * release['samples_per_gpu']
    )
    assert cfg.auto_scale_lr.enable is False


@pytest.mark.parametrize('path', CONFIGS, ids=name_of)
def test_pipelines_build(path):
    from mmdet.registry import TRANSFORMS
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = load(path)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        Compose([TRANSFORMS.build(t) for t in cfg[key].dataset.pipeline])


# ------------------------------------------------------------------- parameters

MMDET_CONFIGS = {
    # the only mmdet 3.3 Cascade config with the 4conv1fc GIoU SyncBN heads
    'cascade_rcnn': 'convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_'
    '4conv1fc-giou_amp-ms-crop-3x_coco.py',
    'atss': 'atss/atss_r50_fpn_1x_coco.py',
    'gfl': 'gfl/gfl_r50_fpn_ms-2x_coco.py',
    'sparse_rcnn': 'sparse_rcnn/sparse-rcnn_r50_fpn_300-proposals_crop-ms-480-800-3x_coco.py',
}
#: mmdet's configs/pvt/retinanet_pvtv2-b2_fpn_1x_coco.py backbone
MMDET_PVT_B2 = dict(
    type='PyramidVisionTransformerV2',
    embed_dims=64,
    num_layers=[3, 4, 6, 3],
    init_cfg=None,
)


def count(module):
    return sum(p.numel() for p in module.parameters())


_MMDET_COUNTS: dict = {}


def mmdet_count(family):
    """(detector, its backbone): parameters of mmdet's own config for ``family`` with
    mmdet's PVT-v2-b2 and FPN."""
    if family not in _MMDET_COUNTS:
        import mmdet
        from mmdet.registry import MODELS
        from mmengine.registry import init_default_scope

        path = osp.join(
            osp.dirname(mmdet.__file__),
            '.mim',
            'configs',
            MMDET_CONFIGS[family],
        )
        # (the ConvNeXt config imports mmpretrain for its backbone, replaced here)
        cfg = Config.fromfile(path, import_custom_modules=False)
        assert cfg.model.neck.type == 'FPN'
        cfg.model.backbone = MMDET_PVT_B2
        cfg.model.neck.in_channels = [64, 128, 320, 512]
        init_default_scope('mmdet')
        model = MODELS.build(cfg.model)
        _MMDET_COUNTS[family] = (count(model), count(model.backbone))
    return _MMDET_COUNTS[family]


def official_backbone_count(arch):
    return sum(math.prod(s) for s in backbone_shapes(arch).values())


_MODELS: dict = {}


def our_model(path):
    if path not in _MODELS:
        cfg = copy.deepcopy(load(path))
        cfg.model.backbone.init_cfg = None
        _MODELS[path] = build_model_from_config(cfg)
    return _MODELS[path]


def metafile_entry(path):
    with open(osp.join(osp.dirname(path), 'metafile.yml')) as f:
        models = yaml.safe_load(f)['Models']
    (entry,) = [m for m in models if m['Name'] == name_of(path)]
    return entry


@pytest.mark.parametrize('path', [model_param(p) for p in CONFIGS])
def test_parameters_equal_mmdets_detector(path):
    model = our_model(path)
    n = count(model)
    detector, backbone = mmdet_count(family_of(path))
    arch = RELEASE[name_of(path)]['arch']
    # mmdet's PVT-v2-b2 has the official b2's parameters (and so ours)
    assert backbone == official_backbone_count('b2')
    expected = detector - backbone + official_backbone_count(arch)
    assert n == expected, (n, expected)
    assert count(model.backbone) == official_backbone_count(arch)
    assert metafile_entry(path)['Metadata']['Parameters'] == n
    if arch == 'b2_li':
        import timm

        li = timm.create_model('pvt_v2_b2_li', pretrained=False, num_classes=0)
        assert count(li) == official_backbone_count('b2_li')


def test_gfl_b2_parameters_are_the_releases_printed_count():
    """detection/README.md: get_flops.py on gfl_pvt_v2_b2_fpn_3x_mstrain_fp16.py prints
    'Params: 33.11 M'."""
    detector, backbone = mmdet_count('gfl')
    assert round(detector / 1e6, 2) == 33.11


@pytest.mark.parametrize('path', [model_param(p) for p in CONFIGS])
def test_no_weight_decay_exactly_where_the_release_has_none(path):
    """The release's ``'norm'`` key exempts its backbone's LayerNorms (its official
    names: ``norm1`` / ``norm2`` / ``attn.norm`` / ``patch_embed*.norm`` / ``norm{i}``),
    nothing in the necks and heads (SyncBN ``bn``, GN ``gn``); ours must exempt as many
    parameters, all of them in the backbone."""
    from mmengine.optim import build_optim_wrapper

    cfg = load(path)
    release = RELEASE[name_of(path)]
    model = our_model(path)
    wrapper = copy.deepcopy(cfg.optim_wrapper.to_dict())
    wrapper['type'] = 'OptimWrapper'  # the same groups; no GPU needed
    wrapper.pop('loss_scale', None)
    groups = build_optim_wrapper(model, wrapper).optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = [
        names[id(p)]
        for g in groups
        if g['weight_decay'] == 0
        for p in g['params']
    ]
    if release['optimizer'].get('paramwise_cfg') is None:
        assert exempt == []
        return
    official = [
        k
        for k in backbone_shapes(release['arch'])
        if 'norm' in k  # the release's custom_keys match names by substring
    ]
    assert len(exempt) == len(official) == (106 if '-b2_' in path else 112)
    assert all(n.startswith('backbone.') for n in exempt)


# ------------------------------------------------------------------------ SyncBN


def test_syncbn_box_heads_work_in_one_process():
    """As in mmdet: the Cascade configs' SyncBN builds and trains without a process group
    (torch's SyncBatchNorm is then plain batch norm); mmengine's Runner reverts it to
    BatchNorm for non-distributed runs (the toy training below checks that), and the
    state dict is the same either way."""
    from mmengine.model import revert_sync_batchnorm

    path = next(p for p in CONFIGS if 'cascade-mask-rcnn_pvtv2-b2-li' in p)
    model = our_model(path)
    head = model.roi_head.bbox_head[0]
    assert isinstance(head.shared_convs[0].bn, nn.SyncBatchNorm)
    assert not torch.distributed.is_initialized()
    reverted = revert_sync_batchnorm(copy.deepcopy(head))
    assert type(reverted.shared_convs[0].bn) is not nn.SyncBatchNorm
    assert isinstance(
        reverted.shared_convs[0].bn, nn.modules.batchnorm._BatchNorm
    )
    assert list(reverted.state_dict()) == list(head.state_dict())
    rois = torch.rand(6, 256, 7, 7)
    head.train(), reverted.train()
    cls_a, reg_a = head(rois)
    cls_b, reg_b = reverted(rois)
    torch.testing.assert_close(cls_a, cls_b)
    torch.testing.assert_close(reg_a, reg_b)
    bn_a, bn_b = head.shared_convs[0].bn, reverted.shared_convs[0].bn
    torch.testing.assert_close(bn_a.running_mean, bn_b.running_mean)
    (cls_a.sum() + reg_a.sum()).backward()
    assert head.shared_convs[0].conv.weight.grad is not None


# ------------------------------------------------- the toy data: pipelines, learning


def shrink(pipeline, factor=8):
    """Every resize scale and crop size of ``pipeline`` divided by ``factor``: the
    release's transforms at the toy data's size."""
    for t in pipeline:
        for seq in t.get('transforms', []):
            shrink(seq, factor)
        if 'scales' in t:
            t['scales'] = [
                tuple(round(v / factor) for v in s) for s in t['scales']
            ]
        for key in ('scale', 'crop_size'):
            if key in t:
                t[key] = tuple(round(v / factor) for v in t[key])


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    from pvtfpn_tools.toy_data import write_toy_data

    root = tmp_path_factory.mktemp('toy3x')
    write_toy_data(
        str(root),
        num_train=2,
        num_val=1,
        img_size=64,
        seed=0,
        formats=('coco',),
    )
    return root / 'coco'


CLASSES = ('circle', 'square', 'triangle')
TOY_CONFIGS = [p for p in CONFIGS if '-b2-li_' in osp.basename(p)]


@pytest.mark.parametrize('path', TOY_CONFIGS, ids=family_of)
def test_recipe_train_pipeline_runs_on_the_toy_data(path, toy):
    """The learning run below resizes and flips only; the recipe's own training transforms
    (multi-scale resize, random crop), every size divided by 8, run here on toy images."""
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    dataset_cfg = copy.deepcopy(load(path).train_dataloader.dataset)
    shrink(dataset_cfg.pipeline)
    dataset_cfg.update(data_root=f'{toy}/', metainfo=dict(classes=CLASSES))
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == 2
    for i in range(len(dataset)):
        item = dataset[i]
        image, sample = item['inputs'], item['data_samples']
        # the recipe's (1333, 480..800) resizes, / 8: short side <= 100, long <= 167
        assert image.shape[0] == 3
        assert min(image.shape[1:]) <= 100 and max(image.shape[1:]) <= 167
        # (a crop may hold no object: the recipe allows negative crops)
        assert len(sample.gt_instances.bboxes) == len(sample.gt_instances)
        if family_of(path) == 'cascade_rcnn':
            assert len(sample.gt_instances.masks) == len(sample.gt_instances)


#: Each family's learning run (tests/_toy_learning.py ``learning_config``) and the floors
#: its COCO metrics on the toy val split must reach (chance: about 0).
LEARNING = {
    'atss': dict(
        run=dict(iters=80, lr=1e-3, size=128),
        floor=dict(bbox_mAP_50=0.12, bbox_mAP=0.05),
    ),
    'gfl': dict(
        run=dict(iters=100, lr=1e-3, size=128),
        floor=dict(bbox_mAP_50=0.10, bbox_mAP=0.03),
    ),
    'cascade_rcnn': dict(
        run=dict(iters=80, lr=1e-3, size=128, width=64),
        floor=dict(
            bbox_mAP_50=0.15, bbox_mAP=0.06, segm_mAP_50=0.15, segm_mAP=0.06
        ),
    ),
    'sparse_rcnn': dict(
        run=dict(
            iters=200,
            lr=1e-3,
            size=128,
            width=64,
            queries=20,
            num_train=8,
            eval_split='train',
        ),
        floor=dict(bbox_mAP_50=0.15, bbox_mAP=0.05),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize('path', TOY_CONFIGS, ids=family_of)
def test_toy_training_learns(path, learning_toy, tmp_path, one_thread):
    """Each family learns the toy shapes on the CPU: a short schedule of the config with a
    PVT-v2-b0 backbone from scratch (tests/_toy_learning.py says what changes and what the
    family keeps), then COCO evaluation against a floor well above chance.

    Measured (tests/_toy_learning.py runs; seeds 0 and 1, one thread, shared 2-core
    machine at load average 2.5-3.6; untrained: 0.000 on every metric), floor about half
    the worst run:

    ========  ======================  =====  ====  =====================  =====  =======
    family    model of the run        iters  px    measured (min-max)     floor  s / it
    ========  ======================  =====  ====  =====================  =====  =======
    ATSS      b0, 256-ch FPN / head   80     128   mAP_50 0.243-0.396     0.12   0.35-0.45
                                                   mAP 0.102-0.163        0.05
    GFL       b0, 256-ch FPN / head   100    128   mAP_50 0.213-0.500     0.10   0.35-0.56
                                                   mAP 0.068-0.176        0.03
    Cascade   b0, 64-ch, 64 props     80     128   bbox mAP_50 .294-.348  0.15   0.50-0.61
                                                   bbox mAP 0.128-0.130   0.06
                                                   segm mAP_50 .316-.393  0.15
                                                   segm mAP 0.136-0.176   0.06
    Sparse    b0, 64-ch, 20 props     200    128   mAP_50 0.311-0.622     0.15   0.22-0.32
                                                   mAP 0.102-0.226        0.05
    ========  ======================  =====  ====  =====================  =====  =======

    ATSS, GFL, Cascade: 64 training images, evaluated on the 16 validation images; Sparse
    R-CNN learns more slowly: 8 training images, evaluated on them (it learns at all).
    (Sparse R-CNN at 150 iterations: mAP_50 0.017 / 0.123, too close to chance.) Test
    times (seed 0, ``--durations``): ATSS 25 s, GFL 41 s, Cascade 50 s, Sparse R-CNN 74 s
    (ATSS at 100 iterations under more load: 53 s); the two-iteration trainings they
    replace took 5-28 s each, 77 s together.
    """
    from _toy_learning import learning_config
    from mmengine.logging import MessageHub

    from pvtfpn_mm.engine import CPUAmpOptimWrapper
    from pvtfpn_mm.engine.tasks import train

    spec = LEARNING[family_of(path)]
    run = dict(spec['run'])
    coco = learning_toy(run['size'], run.pop('num_train', 64))
    cfg = learning_config(
        osp.relpath(path, ROOT), coco, str(tmp_path / 'work'), **run
    )
    amp = cfg.optim_wrapper.type == 'AmpOptimWrapper'
    runner = train(cfg)
    assert runner.iter == run['iters']
    hub = MessageHub.get_current_instance()
    history = hub.get_scalar('train/loss').data[0]
    assert len(history) == run['iters']
    assert all(math.isfinite(v) for v in history), history
    losses = {
        k: v.current()
        for k, v in hub.log_scalars.items()
        if k.startswith('train/') and 'loss' in k
    }
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    # one CPU process: the AMP configs train in bfloat16 autocast (mmcv's nms /
    # RoIAlign in float32), Sparse R-CNN in fp32 with its gradient clipping
    wrapper = runner.optim_wrapper
    assert isinstance(wrapper, CPUAmpOptimWrapper) is amp
    if not amp:
        assert wrapper.clip_grad_kwargs == dict(max_norm=1, norm_type=2)
    # SyncBN (Cascade) was reverted to BatchNorm by mmengine: not distributed
    norms = {type(m) for m in runner.model.modules()}
    assert nn.SyncBatchNorm not in norms
    if family_of(path) == 'cascade_rcnn':
        assert any(
            issubclass(t, nn.modules.batchnorm._BatchNorm) for t in norms
        )
    metrics = {
        k[len('val/coco/') :]: v.current()
        for k, v in hub.log_scalars.items()
        if k.startswith('val/coco/')
    }
    for key, floor in spec['floor'].items():
        assert metrics[key] >= floor, (key, floor, metrics)
