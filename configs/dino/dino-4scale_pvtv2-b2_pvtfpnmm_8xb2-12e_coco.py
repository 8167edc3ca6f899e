# DINO (4 scales) + PVT-v2-b2, COCO, 12 epochs: mmdet 3.3's DINO recipe
# (configs/dino/dino-4scale_r50_8xb2-12e_coco.py) with PVT-v2-b2 for ResNet-50 (model:
# ../_base_/models/dino-4scale_pvtv2-b2.py; no TopDownFPN: DINO's ChannelMapper takes
# stages 2-4 and adds a fourth level). Beyond the PVT v2 release, which has no DINO: no
# published result exists for this model and none is claimed. As mmdet's config: flip,
# then either a resize of the short side to 480..800 (long side <= 1333) or a resize to
# 400/500/600, a random 384..600 crop and the 480..800 resize; AdamW lr 1e-4, wd 1e-4,
# backbone lr x0.1, gradient clipping at 0.1; 12 epochs, lr x0.1 after epoch 11;
# 8 GPUs x 2 images. Backbone drop-path 0.1 (the PVT v2 release's value). Multi-scale
# deformable attention runs on the CPU too (mmcv's PyTorch path).
_base_ = [
    '../_base_/models/dino-4scale_pvtv2-b2.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/det_runtime.py',
]

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[
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
                    keep_ratio=True,
                )
            ],
            [
                dict(
                    type='RandomChoiceResize',
                    # every COCO train image's aspect ratio is below 7 (mmdet)
                    scales=[(400, 4200), (500, 4200), (600, 4200)],
                    keep_ratio=True,
                ),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True,
                ),
                dict(
                    type='RandomChoiceResize',
                    scales=[
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
                    keep_ratio=True,
                ),
            ],
        ],
    ),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    dataset=dict(
        filter_cfg=dict(filter_empty_gt=False), pipeline=train_pipeline
    )
)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}),
)

max_epochs = 12
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1
)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[11],
        gamma=0.1,
    )
]
# base_batch_size = 8 GPUs x 2 images (enable scaling with --auto-scale-lr)
auto_scale_lr = dict(base_batch_size=16)
