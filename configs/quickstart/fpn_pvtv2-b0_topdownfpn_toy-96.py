# Quickstart: Semantic FPN + PVT-v2-b0 trained from scratch on the toy shapes dataset
# (tools/make_toy_data.py; ADE20K layout under data/toy/ade) on CPU in a few minutes.
# Differences from ../sem_fpn/fpn_pvtv2-b0_topdownfpn_8xb4-40k_ade20k-512x512.py, all for speed on
# CPU: 96x96 images, no pretrained weights, 64-channel FPN and head, BN instead of
# SyncBN, AdamW at lr 1e-3 and 400 iterations of 4 images. Labels: 0 = unlabelled
# (ignored), 1 = background, 2-4 = circle, square, triangle (reduce_zero_label, as
# ADE20K). About 0.1 s an iteration on 2 CPU cores; mIoU 90-93.
_base_ = '../sem_fpn/fpn_pvtv2-b0_topdownfpn_8xb4-40k_ade20k-512x512.py'

data_root = 'data/toy/ade/ADEChallengeData2016'
metainfo = dict(
    classes=('background', 'circle', 'square', 'triangle'),
    palette=[[120, 120, 120], [220, 60, 50], [60, 190, 70], [50, 90, 220]],
)
crop_size = (96, 96)
max_iters = 400
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(drop_path_rate=0.0, init_cfg=None),
    neck=dict(out_channels=64),
    decode_head=dict(
        in_channels=[64, 64, 64, 64],
        channels=64,
        num_classes=4,
        dropout_ratio=0.0,
        norm_cfg=norm_cfg,
    ),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True,
)
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        **dataset,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'
        ),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        **dataset,
        data_prefix=dict(
            img_path='images/validation', seg_map_path='annotations/validation'
        ),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=30,
        end=max_iters,
        by_epoch=False,
    ),
]
optim_wrapper = dict(optimizer=dict(lr=0.001, weight_decay=0.01))
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1),
    visualization=dict(interval=5),
)
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
