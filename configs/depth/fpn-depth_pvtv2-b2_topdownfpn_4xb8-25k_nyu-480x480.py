# PVT-v2-b2 + FPN + the design notes' depth head (fpn_design_notes.md, "Case 3") for
# mmseg's DepthEstimator on NYU Depth V2 (mmseg's NYUDataset layout; depth png in mm).
# depth = sigmoid(conv(concat of the resized FPN levels)) * max_depth, SiLog loss.
# Data pipeline of mmseg's NYU base without the Albu transforms (albumentations is not a
# dependency; PhotoMetricDistortion instead). AdamW lr 1e-4, wd 0.01, 1500-iteration
# warm-up, poly decay, 25k iterations, 4 GPUs x 8 images. No published reference numbers.
_base_ = [
    'mmseg::_base_/datasets/nyu.py',
    '../_base_/seg_runtime.py',
    'mmseg::_base_/schedules/schedule_25k.py',
]
custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth'
)

crop_size = (480, 480)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='DepthEstimator',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=0,
        size=crop_size,
    ),
    backbone=dict(
        type='PVTv2',
        arch='b2',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file),
    ),
    neck=dict(
        type='TopDownFPN',
        in_channels=[64, 128, 320, 512],
        out_channels=256,
        start_level=0,
        num_outs=4,
        upsample_mode='bilinear',
    ),
    decode_head=dict(
        type='FPNDepthHead',
        max_depth=10.0,
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        channels=256,
        dropout_ratio=0.0,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='SiLogLoss'),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
)

meta_keys = (
    'img_path',
    'depth_map_path',
    'ori_shape',
    'img_shape',
    'pad_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'category_id',
)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='RandomDepthMix', prob=0.25),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs', meta_keys=meta_keys),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.01
    ),
    paramwise_cfg=dict(custom_keys=dict(norm=dict(decay_mult=0.0))),
)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500
    ),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=1500,
        end=25000,
        by_epoch=False,
    ),
]
default_hooks = dict(
    checkpoint=dict(save_best='rmse', rule='less', max_keep_ckpts=1)
)
