# Quickstart: RetinaNet + PVT-v2-b0 + FPN trained from scratch on the toy shapes dataset
# (tools/make_toy_data.py; COCO format under data/toy/coco) on CPU in a few minutes.
# Differences from ../retinanet/retinanet_pvtv2-b0_topdownfpn_1x_coco.py, all for speed on CPU:
# 96x96 images, no pretrained weights, a 64-channel FPN with the three levels the
# objects (21-43 px) need (P3-P5, strides 8-32), a 2-conv 64-channel head, anchors
# scaled to the objects (24-136 px), AdamW at lr 1e-3 with gradient clipping, and
# 800 iterations of 4 images (warm-up, cosine decay). About 0.1 s an iteration on
# 2 CPU cores; bbox mAP 0.75-0.85 on the 50 validation images.
_base_ = '../retinanet/retinanet_pvtv2-b0_topdownfpn_1x_coco.py'

data_root = 'data/toy/coco/'
metainfo = dict(
    classes=('circle', 'square', 'triangle'),
    palette=[(220, 60, 50), (60, 190, 70), (50, 90, 220)],
)
img_scale = (96, 96)
max_iters = 800

model = dict(
    backbone=dict(drop_path_rate=0.0, init_cfg=None),
    neck=dict(
        out_channels=64, start_level=1, num_outs=3, extra_source='input'
    ),
    bbox_head=dict(
        num_classes=3,
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        anchor_generator=dict(
            octave_base_scale=3, scales_per_octave=2, strides=[8, 16, 32]
        ),
    ),
    test_cfg=dict(nms_pre=200, max_per_img=20),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=(
            'img_id',
            'img_path',
            'ori_shape',
            'img_shape',
            'scale_factor',
        ),
    ),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters,
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=False,
        begin=50,
        end=max_iters,
    ),
]
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.001, weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2),
)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(
        type='AtomicCheckpointHook',
        by_epoch=False,
        interval=max_iters,
        max_keep_ckpts=1,
    ),
)
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
