# COCO boxes and masks with the 3x training augmentation of the PVT v2 release (whai362/PVT
# detection/configs/cascade_mask_rcnn_pvt_v2_*_fpn_3x_mstrain_fp16.py, also used by
# mask_rcnn_pvt_v2_*_fpn_3x_mstrain.py; "augmentation strategy originates from DETR /
# Sparse RCNN"): a random flip, then either a resize of the short side to one of 480..800
# (step 32, long side <= 1333) or a resize to 400/500/600, a random crop of 384..600 px a
# side and the 480..800 resize. In mmdet 3.x syntax as mmdet's own
# swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py writes it (scales as (w, h); with
# keep_ratio the order does not matter). Test: mmdet's single scale 1333x800.
_base_ = 'mmdet::_base_/datasets/coco_instance.py'

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[
                        (1333, 480),
                        (1333, 512),
                        (1333, 544),
                        (1333, 576),
                        (1333, 608),
                        (1333, 640),
                        (1333, 672),
                        (1333, 704),
                        (1333, 736),
                        (1333, 768),
                        (1333, 800),
                    ],
                    keep_ratio=True,
                )
            ],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(1333, 400), (1333, 500), (1333, 600)],
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
                        (1333, 480),
                        (1333, 512),
                        (1333, 544),
                        (1333, 576),
                        (1333, 608),
                        (1333, 640),
                        (1333, 672),
                        (1333, 704),
                        (1333, 736),
                        (1333, 768),
                        (1333, 800),
                    ],
                    keep_ratio=True,
                ),
            ],
        ],
    ),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
