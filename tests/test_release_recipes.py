"""Every recipe config we ship, held against the recipe it follows, written out here.

The tables below are literals copied from the files that define each recipe -- never read
from our configs -- each with the file it came from:

* ``PVT``: the official PVT v2 release, github.com/whai362/PVT, branch ``v2`` (commit
  57e2dfaa5a46f9050d76f306a4fcd9a7c061f520; mmdet 2.13): RetinaNet and Mask R-CNN 1x,
  Mask R-CNN 3x (``detection/...``).
* ``SEG``: the official PVT v2 segmentation release, github.com/whai362/PVTv2-Seg, master
  (commit db8b6fe80819a17d0d9cd2992e73bfc282e8104a; mmseg 0.13): Semantic FPN.
* ``MMSEG``: mmsegmentation 1.2.2's configs (``mmseg/.mim/configs/...``): the release has
  no UPerNet recipe; ours follow mmseg's Swin-T UPerNet recipe.

Each resolved config (mmengine ``Config.fromfile``) is compared with its row: optimizer,
lr, weight decay, betas, paramwise settings (also by their effect on our model's
parameters), gradient clipping, fp16, batch per GPU and the GPU count (through
``auto_scale_lr``), schedule with warm-up, train / test scales, flip, normalization,
neck, heads, backbone drop-path and frozen stages. Where the release's mmdet 2.x / mmseg
0.x syntax differs from 3.x / 1.x the helpers below translate the *meaning* (e.g. mmcv's
``lr_config`` step policy with linear warm-up = ``LinearLR`` + ``MultiStepLR``); the
deliberate deviations are listed in ``DEVIATIONS`` and docs/recipes.md.
"""

import copy
import glob
import inspect
import logging
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PVT = 'whai362/PVT@57e2dfa (branch v2): '
SEG = 'whai362/PVTv2-Seg@db8b6fe: '
MMSEG = 'mmsegmentation 1.2.2 mmseg/.mim/configs/'

# ----------------------------------------------------------------------- the tables

#: GPUs of every release recipe: detection/README.md ("To train ... on a single node with
#: 8 gpus"); PVTv2-Seg README.md ("on a single node with 8 gpus") and its configs
#: ("gpu_multiples = 2  # we use 8 gpu instead of 4 in mmsegmentation").
GPUS = 8

#: The backbone, every release config: detection/pvt_v2.py (PVTv2-Seg: pvtv2.py): each
#: ``pvt_v2_bX.__init__(self, **kwargs)`` passes ``drop_path_rate=0.1`` and reads no
#: other key of the config (only ``pretrained``), so the ``frozen_stages=1`` /
#: ``norm_eval=True`` that the ResNet base dicts merge in have no effect: nothing is
#: frozen and the LayerNorms train.
BACKBONE = dict(
    src=PVT
    + 'detection/pvt_v2.py (class pvt_v2_b0 .. pvt_v2_b5, pvt_v2_b2_li)',
    drop_path_rate=0.1,
    frozen_stages=-1,  # none
    norm_eval=False,
)
#: Stage widths (embed_dims) of the release's classes, detection/pvt_v2.py.
EMBED_DIMS = {
    'b0': [32, 64, 160, 256],
    'b1': [64, 128, 320, 512],
    'b2': [64, 128, 320, 512],
    'b2_li': [64, 128, 320, 512],
    'b3': [64, 128, 320, 512],
    'b4': [64, 128, 320, 512],
    'b5': [64, 128, 320, 512],
}

#: detection/configs/_base_/schedules/schedule_1x.py (every release detection config
#: inherits it; the 3x ones override only ``step`` and the runner's ``max_epochs``).
#: ``gamma``: mmcv's StepLrUpdaterHook default (0.1), which no config sets.
SCHEDULE_1X = dict(
    src=PVT + 'detection/configs/_base_/schedules/schedule_1x.py',
    policy='step',
    warmup='linear',
    warmup_iters=500,
    warmup_ratio=0.001,
    step=[8, 11],
    gamma=0.1,
    max_epochs=12,
)

#: detection/configs/_base_/datasets/coco_detection.py / coco_instance.py: train and test
#: pipelines of the 1x configs and the test pipeline of every detection config.
COCO_1X_PIPELINE = dict(
    src=PVT
    + 'detection/configs/_base_/datasets/coco_instance.py (coco_detection.py)',
    train_img_scale=(1333, 800),
    keep_ratio=True,
    flip_ratio=0.5,
    test_img_scale=(1333, 800),
    test_flip=False,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    size_divisor=32,
)

#: The 3x train pipeline: detection/configs/mask_rcnn_pvt_v2_b2_fpn_3x_mstrain.py
#: ("augmentation strategy originates from DETR / Sparse RCNN"): RandomFlip(0.5), then
#: AutoAugment of two policies. mmcv 1.x reads a keep-ratio ``img_scale`` as (long, short)
#: whichever order it is written in, as mmcv 2.x does ``scale``: compared as sets of
#: (long, short).
MS_3X_PIPELINE = dict(
    src=PVT + 'detection/configs/mask_rcnn_pvt_v2_b2_fpn_3x_mstrain.py',
    flip_ratio=0.5,
    policy_1=[
        (480, 1333),
        (512, 1333),
        (544, 1333),
        (576, 1333),
        (608, 1333),
        (640, 1333),
        (672, 1333),
        (704, 1333),
        (736, 1333),
        (768, 1333),
        (800, 1333),
    ],
    policy_2_first=[(400, 1333), (500, 1333), (600, 1333)],
    crop=dict(
        crop_type='absolute_range',
        crop_size=(384, 600),
        allow_negative_crop=True,
    ),
    policy_2_last=[
        (480, 1333),
        (512, 1333),
        (544, 1333),
        (576, 1333),
        (608, 1333),
        (640, 1333),
        (672, 1333),
        (704, 1333),
        (736, 1333),
        (768, 1333),
        (800, 1333),
    ],
)

#: RetinaNet 1x: detection/configs/retinanet_pvt_v2_{arch}_fpn_1x_coco.py. Every one:
#: ``optimizer = dict(_delete_=True, type='AdamW', lr=..., weight_decay=0.0001)``,
#: ``optimizer_config = dict(grad_clip=None)``, no fp16, no paramwise_cfg, betas unset
#: (torch's AdamW default (0.9, 0.999)); ``samples_per_gpu``: the base dataset's 2 unless
#: the file sets ``data = dict(samples_per_gpu=1, workers_per_gpu=1)`` (b4, b5).
RETINANET_1X = {
    'b0': dict(file='retinanet_pvt_v2_b0_fpn_1x_coco.py', lr=0.0001, spg=2),
    'b1': dict(file='retinanet_pvt_v2_b1_fpn_1x_coco.py', lr=0.0001, spg=2),
    'b2': dict(file='retinanet_pvt_v2_b2_fpn_1x_coco.py', lr=0.0001, spg=2),
    'b2_li': dict(
        file='retinanet_pvt_v2_b2_li_fpn_1x_coco.py', lr=0.0001, spg=2
    ),
    'b3': dict(file='retinanet_pvt_v2_b3_fpn_1x_coco.py', lr=0.0001, spg=2),
    'b4': dict(
        file='retinanet_pvt_v2_b4_fpn_1x_coco.py', lr=0.0001 / 1.4, spg=1
    ),
    'b5': dict(
        file='retinanet_pvt_v2_b5_fpn_1x_coco.py', lr=0.0001 / 1.4, spg=1
    ),
}
#: The neck of every RetinaNet file (in_channels: EMBED_DIMS of the variant).
RETINANET_NECK = dict(
    type='FPN',
    out_channels=256,
    start_level=1,
    add_extra_convs='on_input',
    num_outs=5,
)

#: Mask R-CNN 1x: detection/configs/mask_rcnn_pvt_v2_{arch}_fpn_1x_coco.py. As RetinaNet,
#: but lr 2e-4 (b4 / b5: 2e-4 / 1.4 at 1 image per GPU).
MASK_RCNN_1X = {
    'b0': dict(file='mask_rcnn_pvt_v2_b0_fpn_1x_coco.py', lr=0.0002, spg=2),
    'b1': dict(file='mask_rcnn_pvt_v2_b1_fpn_1x_coco.py', lr=0.0002, spg=2),
    'b2': dict(file='mask_rcnn_pvt_v2_b2_fpn_1x_coco.py', lr=0.0002, spg=2),
    'b2_li': dict(
        file='mask_rcnn_pvt_v2_b2_li_fpn_1x_coco.py', lr=0.0002, spg=2
    ),
    'b3': dict(file='mask_rcnn_pvt_v2_b3_fpn_1x_coco.py', lr=0.0002, spg=2),
    'b4': dict(
        file='mask_rcnn_pvt_v2_b4_fpn_1x_coco.py', lr=0.0002 / 1.4, spg=1
    ),
    'b5': dict(
        file='mask_rcnn_pvt_v2_b5_fpn_1x_coco.py', lr=0.0002 / 1.4, spg=1
    ),
}
DET_1X_OPTIMIZER = dict(
    type='AdamW', weight_decay=0.0001, betas=(0.9, 0.999), eps=1e-8
)
#: The neck of every Mask R-CNN file (1x and 3x): start_level / add_extra_convs unset
#: (FPN defaults 0 / False: P6 by max-pooling P5).
MASK_RCNN_NECK = dict(
    type='FPN',
    out_channels=256,
    start_level=0,
    add_extra_convs=False,
    num_outs=5,
)

#: Mask R-CNN 3x: detection/configs/mask_rcnn_pvt_v2_b2_fpn_3x_mstrain.py, the release's
#: only fp32 3x Mask R-CNN (its b2_li twin uses apex O1 fp16; we ship no b2_li 3x). The
#: release has no b0 3x config (detection/README.md lists a b0 3x result, 41.6 / 38.2,
#: with no config); our b0 3x takes this b2 recipe.
MASK_RCNN_3X = dict(
    file='mask_rcnn_pvt_v2_b2_fpn_3x_mstrain.py',
    optimizer=dict(
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.05,
        eps=1e-8,
    ),
    custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.0),
        'relative_position_bias_table': dict(decay_mult=0.0),
        'norm': dict(decay_mult=0.0),
    },
    spg=2,
    step=[27, 33],
    max_epochs=36,
    # Parameters without weight decay in the release's b2 model: its backbone LayerNorms
    # only (patch_embedN.norm, blockN.M.norm1 / norm2 / attn.norm, normN), found by
    # building the release model (detection/pvt_v2.py) with mmcv 1.3.8's build_optimizer.
    no_decay_b2=106,
)

#: The heads of the release's RetinaNet: detection/configs/_base_/models/retinanet_r50_fpn.py
#: (no PVT-v2 file changes them). ``debug`` (gone in mmdet 3.x) left out.
RETINANET_HEADS = dict(
    src=PVT + 'detection/configs/_base_/models/retinanet_r50_fpn.py',
    bbox_head=dict(
        type='RetinaHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32, 64, 128],
        ),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[1.0, 1.0, 1.0, 1.0],
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
        allowed_border=-1,
        pos_weight=-1,
    ),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100,
    ),
)

#: The heads of the release's Mask R-CNN (1x and 3x):
#: detection/configs/_base_/models/mask_rcnn_r50_fpn.py. ``debug`` left out.
MASK_RCNN_HEADS = dict(
    src=PVT + 'detection/configs/_base_/models/mask_rcnn_r50_fpn.py',
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
        loss_bbox=dict(type='L1Loss', loss_weight=1.0),
    ),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0.0, 0.0, 0.0, 0.0],
                target_stds=[0.1, 0.1, 0.2, 0.2],
            ),
            reg_class_agnostic=False,
            loss_cls=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0
            ),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0),
        ),
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
            allowed_border=-1,
            pos_weight=-1,
        ),
        rpn_proposal=dict(
            nms_pre=2000,
            max_per_img=1000,
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
                num=512,
                pos_fraction=0.25,
                neg_pos_ub=-1,
                add_gt_as_proposals=True,
            ),
            mask_size=28,
            pos_weight=-1,
        ),
    ),
    test_cfg=dict(
        rpn=dict(
            nms_pre=1000,
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

#: Semantic FPN: PVTv2-Seg configs/sem_fpn/PVTv2/fpn_pvtv2_{arch}_ade20k_40k.py (b0 and b1
#: inherit the b2 file and change only the backbone and in_channels). Every one:
#: ``optimizer = dict(type='AdamW', lr=0.0001*gpu_multiples, weight_decay=0.0001)`` with
#: ``gpu_multiples = 2``, ``optimizer_config = dict()``, ``lr_config = dict(policy='poly',
#: power=0.9, min_lr=0.0, by_epoch=False)`` (no warm-up), ``max_iters=80000//2``.
SEM_FPN = dict(
    files={
        a: f'configs/sem_fpn/PVTv2/fpn_pvtv2_{a}_ade20k_40k.py'
        for a in ('b0', 'b1', 'b2', 'b2_li', 'b3', 'b4', 'b5')
    },
    optimizer=dict(
        type='AdamW',
        lr=0.0001 * 2,
        weight_decay=0.0001,
        betas=(0.9, 0.999),
        eps=1e-8,
    ),
    power=0.9,
    min_lr=0.0,
    max_iters=80000 // 2,
    # configs/_base_/datasets/ade20k.py
    spg=4,
    train_img_scale=(2048, 512),
    ratio_range=(0.5, 2.0),
    crop_size=(512, 512),
    cat_max_ratio=0.75,
    flip_prob=0.5,
    pad_val=0,
    seg_pad_val=255,
    reduce_zero_label=True,
    test_img_scale=(2048, 512),
    # test: AlignResize(keep_ratio=True, size_divisor=32) (align_resize.py: keep-ratio
    # rescale, then an image resize up to the next multiple of 32)
    test_align_divisor=32,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # configs/_base_/models/fpn_r50.py: FPN(num_outs=4) + FPNHead; the b2 file sets
    # decode_head num_classes=150
    neck=dict(
        type='FPN',
        out_channels=256,
        start_level=0,
        add_extra_convs=False,
        num_outs=4,
    ),
    decode_head=dict(
        type='FPNHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=128,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0
        ),
    ),
    test_mode='whole',
)

#: UPerNet: no release recipe (neither whai362/PVT nor whai362/PVTv2-Seg has a UPerNet
#: config). Ours follow mmseg 1.2.2's Swin-T UPerNet: the values below are copied from
#: swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py (optimizer,
#: schedule, batch), _base_/models/upernet_swin.py (heads), _base_/schedules/
#: schedule_160k.py (iterations) and _base_/datasets/ade20k.py (pipelines).
UPERNET = dict(
    src=MMSEG
    + 'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    optimizer=dict(
        type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01
    ),
    custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.0),
        'relative_position_bias_table': dict(decay_mult=0.0),
        'norm': dict(decay_mult=0.0),
    },
    param_scheduler=[
        dict(
            type='LinearLR',
            start_factor=1e-6,
            by_epoch=False,
            begin=0,
            end=1500,
        ),
        dict(
            type='PolyLR',
            eta_min=0.0,
            power=1.0,
            begin=1500,
            end=160000,
            by_epoch=False,
        ),
    ],
    max_iters=160000,  # _base_/schedules/schedule_160k.py
    batch_size=2,  # "By default, models are trained on 8 GPUs with 2 images per GPU"
    val_batch_size=1,
    crop_size=(512, 512),
    drop_path_rate=0.3,  # Swin-T's; see DEVIATIONS
    decode_head=dict(
        type='UPerHead',
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0
        ),
    ),
    auxiliary_head=dict(
        type='FCNHead',
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4
        ),
    ),
    test_mode='whole',
    # _base_/datasets/ade20k.py
    train_pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(
            type='RandomResize',
            scale=(2048, 512),
            ratio_range=(0.5, 2.0),
            keep_ratio=True,
        ),
        dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackSegInputs'),
    ],
    test_pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(2048, 512), keep_ratio=True),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs'),
    ],
)

#: Where we deliberately differ from the recipe we follow (docs/recipes.md says why).
#: Each is asserted below, so that a change shows here.
DEVIATIONS = {
    'upernet drop_path_rate': (
        '0.1, the PVT v2 release value for every downstream recipe '
        '(BACKBONE), not Swin-T\'s 0.3'
    ),
    'upernet in_channels': 'the PVT-v2 stage widths, not Swin-T\'s',
    'paramwise custom_keys': (
        'only "norm": the Swin keys absolute_pos_embed / '
        'relative_position_bias_table name no PVT-v2 parameter (checked: '
        'the same parameters lose weight decay)'
    ),
}

#: Our config -> (recipe, variant). Every config in these folders must be listed.
FOLDERS = ('retinanet', 'mask_rcnn', 'sem_fpn', 'upernet')
OURS = {
    **{
        f'configs/retinanet/retinanet_pvtv2-{a.replace("_", "-")}'
        f'_topdownfpn_1x_coco.py': ('retinanet_1x', a)
        for a in RETINANET_1X
    },
    **{
        f'configs/mask_rcnn/mask-rcnn_pvtv2-{a.replace("_", "-")}'
        f'_topdownfpn_1x_coco.py': ('mask_rcnn_1x', a)
        for a in MASK_RCNN_1X
    },
    'configs/mask_rcnn/mask-rcnn_pvtv2-b0_topdownfpn_ms-3x_coco.py': (
        'mask_rcnn_3x',
        'b0',
    ),
    'configs/mask_rcnn/mask-rcnn_pvtv2-b2_topdownfpn_ms-3x_coco.py': (
        'mask_rcnn_3x',
        'b2',
    ),
    **{
        f'configs/sem_fpn/fpn_pvtv2-{a}'
        f'_topdownfpn_8xb4-40k_ade20k-512x512.py': ('sem_fpn', a)
        for a in ('b0', 'b1', 'b2', 'b3', 'b4', 'b5')
    },
    **{
        f'configs/upernet/upernet_pvtv2-{a}'
        f'_pvtfpnmm_8xb2-160k_ade20k-512x512.py': ('upernet', a)
        for a in ('b0', 'b1', 'b2', 'b3', 'b4', 'b5')
    },
}

# ------------------------------------------------------------------------ helpers


def resolve(path: str) -> Config:
    return Config.fromfile(osp.join(ROOT, path))


def transforms(pipeline, name):
    return [t for t in pipeline if t['type'] == name]


def only(pipeline, name):
    found = transforms(pipeline, name)
    assert len(found) == 1, (name, pipeline)
    return found[0]


def long_short(scale):
    return (max(scale), min(scale))


def assert_subset(expected, actual, where=''):
    """Every key of ``expected`` (nested dicts, lists) has the same value in ``actual``;
    tuples and lists compare equal; keys of ``actual`` the release has not are allowed
    (mmdet 3.x spells out defaults, e.g. RetinaNet's PseudoSampler)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), (where, actual)
        for key, value in expected.items():
            assert key in actual, f'{where}.{key} missing'
            assert_subset(value, actual[key], f'{where}.{key}')
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)), (where, actual)
        assert len(expected) == len(actual), (where, expected, actual)
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_subset(e, a, f'{where}[{i}]')
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-12, abs=0), (
            where,
            expected,
            actual,
        )
    else:
        assert actual == expected, (where, expected, actual)


def check_optimizer(cfg, expected):
    wrapper = cfg.optim_wrapper
    # no fp16 (release: no fp16 / apex block), no gradient clipping (grad_clip=None)
    assert wrapper.get('type', 'OptimWrapper') == 'OptimWrapper', wrapper
    assert wrapper.get('clip_grad') is None, wrapper
    assert wrapper.get('accumulative_counts', 1) == 1
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == expected['type']
    assert opt.lr == pytest.approx(expected['lr'], rel=1e-12, abs=0), (
        opt.lr,
        expected['lr'],
    )
    assert opt.weight_decay == expected['weight_decay']
    # unset in the release: torch.optim.AdamW's defaults
    assert tuple(opt.get('betas', (0.9, 0.999))) == tuple(expected['betas'])
    assert opt.get('eps', 1e-8) == expected.get('eps', 1e-8)
    assert not opt.get('amsgrad', False)


def check_batch(cfg, samples_per_gpu):
    assert cfg.train_dataloader.batch_size == samples_per_gpu
    if cfg.default_scope == 'mmdet':
        # the total batch the lr belongs to (8 GPUs): mmdet's --auto-scale-lr reads it
        assert cfg.auto_scale_lr.base_batch_size == GPUS * samples_per_gpu


def check_step_schedule(cfg, step, max_epochs):
    """mmcv's ``lr_config`` step policy with linear warm-up (iterations), as mmengine's
    LinearLR (per iteration, from warmup_ratio to 1) + MultiStepLR (per epoch)."""
    warm, steps = cfg.param_scheduler
    assert warm.type == 'LinearLR' and not warm.by_epoch
    assert warm.get('begin', 0) == 0
    assert warm.end == SCHEDULE_1X['warmup_iters']
    assert warm.start_factor == SCHEDULE_1X['warmup_ratio']
    assert warm.get('end_factor', 1.0) == 1.0
    assert steps.type == 'MultiStepLR' and steps.by_epoch
    assert steps.get('begin', 0) == 0 and steps.end >= max_epochs
    assert list(steps.milestones) == step
    assert steps.get('gamma', 0.1) == SCHEDULE_1X['gamma']
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.train_cfg.max_epochs == max_epochs


#: TopDownFPN's extra_source for mmdet's / mmseg's FPN add_extra_convs.
EXTRA_SOURCE = {
    False: 'pool',
    'on_input': 'input',
    'on_lateral': 'lateral',
    'on_output': 'output',
}
#: FPN arguments the release configs leave at FPN's defaults, and TopDownFPN's name for
#: each (mmdet / mmseg FPN: relu_before_extra_convs=False, no norm / activation,
#: upsample_cfg=dict(mode='nearest'), Xavier-uniform init of the convs).
FPN_DEFAULTS = dict(
    relu_before_extra_convs=False,
    norm_cfg=None,
    act_cfg=None,
    conv_cfg=None,
    upsample_mode='nearest',
    init_cfg=dict(type='Xavier', layer='Conv2d', distribution='uniform'),
)


def check_neck(neck, release_neck, in_channels):
    from pvtfpn_mm.models.necks.top_down_fpn import TopDownFPN

    assert neck.type == 'TopDownFPN'
    assert list(neck.in_channels) == in_channels
    assert neck.out_channels == release_neck['out_channels']
    assert neck.get('start_level', 0) == release_neck['start_level']
    assert neck.num_outs == release_neck['num_outs']
    assert (
        neck.get('extra_source', 'pool')
        == EXTRA_SOURCE[release_neck['add_extra_convs']]
    )
    defaults = inspect.signature(TopDownFPN.__init__).parameters
    for key, value in FPN_DEFAULTS.items():
        assert neck.get(key, defaults[key].default) == value, key


def check_backbone(backbone, arch, drop_path_rate=BACKBONE['drop_path_rate']):
    from pvtfpn_mm.models.backbones.pvt_v2 import PVTv2

    assert backbone.type == 'PVTv2'
    assert backbone.arch == arch
    assert backbone.drop_path_rate == drop_path_rate
    defaults = inspect.signature(PVTv2.__init__).parameters
    for key in ('frozen_stages', 'norm_eval'):
        assert backbone.get(key, defaults[key].default) == BACKBONE[key], key
    assert tuple(backbone.get('out_indices', (0, 1, 2, 3))) == (0, 1, 2, 3)


def check_det_normalization(cfg):
    p = COCO_1X_PIPELINE
    pre = cfg.model.data_preprocessor
    assert list(pre.mean) == p['mean'] and list(pre.std) == p['std']
    assert pre.bgr_to_rgb == p['to_rgb']  # images are read BGR
    assert pre.pad_size_divisor == p['size_divisor']


def check_det_test_pipeline(cfg):
    p = COCO_1X_PIPELINE
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        pipeline = loader.dataset.pipeline
        resize = only(pipeline, 'Resize')
        assert long_short(resize.scale) == long_short(p['test_img_scale'])
        assert resize.keep_ratio
        assert not transforms(pipeline, 'RandomFlip')  # flip=False
        assert [t['type'] for t in pipeline] == [
            'LoadImageFromFile',
            'Resize',
            'LoadAnnotations',
            'PackDetInputs',
        ]


def check_det_1x_train_pipeline(cfg):
    p = COCO_1X_PIPELINE
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert [t['type'] for t in pipeline] == [
        'LoadImageFromFile',
        'LoadAnnotations',
        'Resize',
        'RandomFlip',
        'PackDetInputs',
    ]
    resize = only(pipeline, 'Resize')
    assert long_short(resize.scale) == long_short(p['train_img_scale'])
    assert resize.keep_ratio == p['keep_ratio']
    assert only(pipeline, 'RandomFlip').prob == p['flip_ratio']


def no_decay_names(cfg, custom_keys):
    """Names of our model's parameters that get weight decay 0 from mmengine's optimizer
    constructor with ``custom_keys`` (the release's and ours give the same set)."""
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from pvtfpn_mm.engine.build import build_model_from_config

    wrapper = copy.deepcopy(cfg.optim_wrapper.to_dict())
    wrapper['paramwise_cfg'] = dict(custom_keys=custom_keys)
    cfg_nopre = copy.deepcopy(cfg)
    cfg_nopre.model.backbone.init_cfg = None
    model = build_model_from_config(cfg_nopre)
    init_default_scope(cfg.default_scope)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # one INFO line a parameter otherwise
    try:
        optimizer = build_optim_wrapper(model, wrapper).optimizer
    finally:
        logger.setLevel(level)
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(p)]
        for group in optimizer.param_groups
        if group['weight_decay'] == 0
        for p in group['params']
    }


# ------------------------------------------------------------------------- the tests


def test_every_recipe_config_has_a_row():
    shipped = sorted(
        osp.relpath(p, ROOT)
        for d in FOLDERS
        for p in glob.glob(osp.join(ROOT, 'configs', d, '*.py'))
    )
    assert shipped == sorted(OURS), set(shipped) ^ set(OURS)
    # the release's variants are all covered where it has a recipe (Semantic FPN b2_li
    # has a release config without a published result, and no config of ours)
    assert {a for r, a in OURS.values() if r == 'mask_rcnn_1x'} == set(
        MASK_RCNN_1X
    )
    assert {a for r, a in OURS.values() if r == 'retinanet_1x'} == set(
        RETINANET_1X
    )


@pytest.mark.parametrize(
    'path', sorted(p for p, (r, _) in OURS.items() if r.endswith('_1x'))
)
def test_detection_1x_matches_the_release(path):
    recipe, arch = OURS[path]
    cfg = resolve(path)
    row = (RETINANET_1X if recipe == 'retinanet_1x' else MASK_RCNN_1X)[arch]
    check_optimizer(cfg, dict(DET_1X_OPTIMIZER, lr=row['lr']))
    assert not cfg.optim_wrapper.get('paramwise_cfg')  # release: none
    check_batch(cfg, row['spg'])
    check_step_schedule(cfg, SCHEDULE_1X['step'], SCHEDULE_1X['max_epochs'])
    check_det_1x_train_pipeline(cfg)
    check_det_test_pipeline(cfg)
    check_det_normalization(cfg)
    check_backbone(cfg.model.backbone, arch)
    heads = RETINANET_HEADS if recipe == 'retinanet_1x' else MASK_RCNN_HEADS
    neck = RETINANET_NECK if recipe == 'retinanet_1x' else MASK_RCNN_NECK
    check_neck(cfg.model.neck, neck, EMBED_DIMS[arch])
    for key, value in heads.items():
        if key != 'src':
            assert_subset(value, cfg.model[key].to_dict(), key)


@pytest.mark.parametrize(
    'path', sorted(p for p, (r, _) in OURS.items() if r == 'mask_rcnn_3x')
)
def test_mask_rcnn_3x_matches_the_release(path):
    arch = OURS[path][1]
    cfg = resolve(path)
    r = MASK_RCNN_3X
    check_optimizer(cfg, r['optimizer'])
    check_batch(cfg, r['spg'])
    # schedule_1x's warm-up (500 iterations, ratio 0.001) with step=[27, 33], 36 epochs
    check_step_schedule(cfg, r['step'], r['max_epochs'])
    check_det_test_pipeline(cfg)
    check_det_normalization(cfg)
    check_backbone(cfg.model.backbone, arch)
    check_neck(cfg.model.neck, MASK_RCNN_NECK, EMBED_DIMS[arch])
    for key, value in MASK_RCNN_HEADS.items():
        if key != 'src':
            assert_subset(value, cfg.model[key].to_dict(), key)

    p = MS_3X_PIPELINE
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert (
        [t['type'] for t in pipeline]
        == [
            'LoadImageFromFile',
            'LoadAnnotations',
            'RandomFlip',  # before the AutoAugment / RandomChoice, as in the release
            'RandomChoice',
            'PackDetInputs',
        ]
    )
    assert only(pipeline, 'RandomFlip').prob == p['flip_ratio']
    first, second = only(pipeline, 'RandomChoice').transforms
    assert [t['type'] for t in first] == ['RandomChoiceResize']
    assert [t['type'] for t in second] == [
        'RandomChoiceResize',
        'RandomCrop',
        'RandomChoiceResize',
    ]

    def scales(resize):
        assert resize['keep_ratio']
        return [long_short(s) for s in resize['scales']]

    assert scales(first[0]) == [long_short(s) for s in p['policy_1']]
    assert scales(second[0]) == [long_short(s) for s in p['policy_2_first']]
    assert_subset(p['crop'], second[1], 'RandomCrop')
    assert scales(second[2]) == [long_short(s) for s in p['policy_2_last']]


@pytest.mark.parametrize(
    'path', sorted(p for p, (r, _) in OURS.items() if r == 'mask_rcnn_3x')
)
def test_mask_rcnn_3x_weight_decay_exemptions_equal_the_releases(path):
    """The release's three custom_keys and our one ('norm') exempt the same parameters
    of our model: the backbone's LayerNorms, nothing in the neck or heads."""
    cfg = resolve(path)
    ours = cfg.optim_wrapper.paramwise_cfg.custom_keys.to_dict()
    assert ours == {'norm': dict(decay_mult=0.0)}
    release = no_decay_names(cfg, MASK_RCNN_3X['custom_keys'])
    assert no_decay_names(cfg, ours) == release
    assert release and all(n.startswith('backbone.') for n in release)
    assert all(
        '.norm' in n and n.endswith(('.weight', '.bias')) for n in release
    )
    if OURS[path][1] == 'b2':
        assert len(release) == MASK_RCNN_3X['no_decay_b2']


@pytest.mark.parametrize(
    'path', sorted(p for p, (r, _) in OURS.items() if r == 'sem_fpn')
)
def test_semantic_fpn_matches_the_release(path):
    arch = OURS[path][1]
    s = SEM_FPN
    cfg = resolve(path)
    check_optimizer(cfg, s['optimizer'])
    assert not cfg.optim_wrapper.get('paramwise_cfg')
    check_batch(cfg, s['spg'])
    # poly, no warm-up
    (poly,) = cfg.param_scheduler
    assert poly.type == 'PolyLR' and not poly.by_epoch
    assert poly.power == s['power'] and poly.eta_min == s['min_lr']
    assert poly.get('begin', 0) == 0 and poly.end == s['max_iters']
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == s['max_iters']

    check_backbone(cfg.model.backbone, arch)
    check_neck(cfg.model.neck, s['neck'], EMBED_DIMS[arch])
    assert_subset(s['decode_head'], cfg.model.decode_head.to_dict(), 'head')
    assert not cfg.model.get('auxiliary_head')
    assert cfg.model.test_cfg.mode == s['test_mode']

    pre = cfg.model.data_preprocessor
    assert list(pre.mean) == s['mean'] and list(pre.std) == s['std']
    assert pre.bgr_to_rgb  # to_rgb=True
    # Pad(size=crop_size, pad_val=0, seg_pad_val=255) of the train pipeline
    assert tuple(pre.size) == s['crop_size']
    assert pre.pad_val == s['pad_val'] and pre.seg_pad_val == s['seg_pad_val']

    train = cfg.train_dataloader.dataset.pipeline
    assert [t['type'] for t in train] == [
        'LoadImageFromFile',
        'LoadAnnotations',
        'RandomResize',
        'RandomCrop',
        'RandomFlip',
        'PhotoMetricDistortion',
        'PackSegInputs',
    ]
    assert only(train, 'LoadAnnotations').reduce_zero_label
    resize = only(train, 'RandomResize')
    assert tuple(resize.scale) == s['train_img_scale'] and resize.keep_ratio
    assert tuple(resize.ratio_range) == s['ratio_range']
    crop = only(train, 'RandomCrop')
    assert tuple(crop.crop_size) == s['crop_size']
    assert crop.cat_max_ratio == s['cat_max_ratio']
    assert only(train, 'RandomFlip').prob == s['flip_prob']

    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        test = loader.dataset.pipeline
        assert [t['type'] for t in test] == [
            'LoadImageFromFile',
            'Resize',
            'ResizeToMultiple',  # the release's AlignResize
            'LoadAnnotations',
            'PackSegInputs',
        ]
        resize = only(test, 'Resize')
        assert tuple(resize.scale) == s['test_img_scale'] and resize.keep_ratio
        to_multiple = only(test, 'ResizeToMultiple')
        assert to_multiple.size_divisor == s['test_align_divisor']
        assert to_multiple.get('interpolation') in (None, 'bilinear')
    # mmseg's inference_model reads the top-level test_pipeline
    assert cfg.test_pipeline == cfg.test_dataloader.dataset.pipeline


def test_resize_to_multiple_is_the_releases_align_resize():
    """AlignResize._align (PVTv2-Seg align_resize.py): ``align_h = ceil(h / 32) * 32``
    (and w), then ``mmcv.imresize`` (bilinear) of the image -- what ResizeToMultiple does."""
    import numpy as np
    from mmseg.datasets.transforms import ResizeToMultiple

    img = np.random.default_rng(0).integers(0, 256, (512, 683, 3), np.uint8)
    out = ResizeToMultiple(size_divisor=32).transform(dict(img=img))
    assert out['img'].shape == (512, 704, 3)  # ceil(683 / 32) * 32 = 704
    assert out['img_shape'] == (512, 704)


@pytest.mark.parametrize(
    'path', sorted(p for p, (r, _) in OURS.items() if r == 'upernet')
)
def test_upernet_follows_mmsegs_swin_upernet_recipe(path):
    arch = OURS[path][1]
    u = UPERNET
    cfg = resolve(path)
    check_optimizer(cfg, dict(u['optimizer'], eps=1e-8))
    assert [dict(s) for s in cfg.param_scheduler] == u['param_scheduler']
    assert cfg.train_cfg.max_iters == u['max_iters']
    assert cfg.train_dataloader.batch_size == u['batch_size']
    assert cfg.val_dataloader.batch_size == u['val_batch_size']
    assert tuple(cfg.model.data_preprocessor.size) == u['crop_size']
    assert_subset(u['decode_head'], cfg.model.decode_head.to_dict(), 'decode')
    assert_subset(
        u['auxiliary_head'], cfg.model.auxiliary_head.to_dict(), 'aux'
    )
    assert cfg.model.test_cfg.mode == u['test_mode']
    assert 'neck' not in cfg.model
    # the deviations (DEVIATIONS)
    check_backbone(cfg.model.backbone, arch, BACKBONE['drop_path_rate'])
    assert BACKBONE['drop_path_rate'] != u['drop_path_rate']
    assert list(cfg.model.decode_head.in_channels) == EMBED_DIMS[arch]
    assert cfg.model.auxiliary_head.in_channels == EMBED_DIMS[arch][2]
    # the pipelines: mmseg's ade20k.py ones, as in the Swin config
    assert_subset(u['train_pipeline'], cfg.train_dataloader.dataset.pipeline)
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert_subset(u['test_pipeline'], loader.dataset.pipeline)


@pytest.mark.slow  # builds two UPerNets (about 4 s each)
@pytest.mark.parametrize(
    'path',
    [
        'configs/upernet/upernet_pvtv2-b0_pvtfpnmm_8xb2-160k_ade20k-512x512.py',
        'configs/upernet/upernet_pvtv2-b2_pvtfpnmm_8xb2-160k_ade20k-512x512.py',
    ],
)
def test_upernet_weight_decay_exemptions_equal_swins_keys(path):
    cfg = resolve(path)
    ours = cfg.optim_wrapper.paramwise_cfg.custom_keys.to_dict()
    assert ours == {'norm': dict(decay_mult=0.0)}
    swin = no_decay_names(cfg, UPERNET['custom_keys'])
    assert no_decay_names(cfg, ours) == swin
    assert swin and all(n.startswith('backbone.') for n in swin)


def test_the_tables_are_not_our_configs():
    """The drift of issue 'recipes drift from the release' (Mask R-CNN 1x lr 1e-4, 2
    images per GPU for b4 / b5) fails these checks: the tables can catch it."""
    cfg = resolve('configs/mask_rcnn/mask-rcnn_pvtv2-b4_topdownfpn_1x_coco.py')
    cfg.optim_wrapper.optimizer.lr = 0.0001
    with pytest.raises(AssertionError):
        check_optimizer(
            cfg, dict(DET_1X_OPTIMIZER, lr=MASK_RCNN_1X['b4']['lr'])
        )
    cfg.train_dataloader.batch_size = 2
    with pytest.raises(AssertionError):
        check_batch(cfg, MASK_RCNN_1X['b4']['spg'])
    cfg = resolve('configs/retinanet/retinanet_pvtv2-b0_topdownfpn_1x_coco.py')
    cfg.model.neck.extra_source = 'output'
    with pytest.raises(AssertionError):
        check_neck(cfg.model.neck, RETINANET_NECK, EMBED_DIMS['b0'])
    cfg.model.bbox_head.anchor_generator.octave_base_scale = 8
    with pytest.raises(AssertionError):
        assert_subset(
            RETINANET_HEADS['bbox_head'], cfg.model.bbox_head.to_dict()
        )
