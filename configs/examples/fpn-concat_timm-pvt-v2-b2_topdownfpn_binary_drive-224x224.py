# The design notes' "PVT-v2 + FPN segmentation" example as an mmseg config:
#   timm pvt_v2_b2 features C1-C4 (64/128/320/512 channels at 1/4..1/32)
#   -> the notes' FPN (1x1 laterals, bilinear top-down sum, 3x3 smoothing; 4 x 256 ch)
#   -> the concat head (P2-P4 resized to P1, concatenated, fused, classified)
#   -> one logit channel, resized to the input: 1 x 1 x 224 x 224 for a 224 x 224 image
#      (tests/test_notes_examples.py).
# One class against background is mmseg's binary segmentation: num_classes=2
# (background, foreground), out_channels=1, sigmoid BCE, foreground where
# sigmoid(logit) > threshold. Data: DRIVE retinal vessels (prepare it as in mmseg's
# dataset docs, under data/DRIVE), trained on 224 x 224 crops, tested by sliding 224 x 224
# windows. Backbone, neck and weights: ../_base_/models/timm-pvt-v2-b2_topdownfpn.py.
_base_ = [
    '../_base_/models/timm-pvt-v2-b2_topdownfpn.py',
    'mmseg::_base_/datasets/drive.py',
    '../_base_/seg_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]

crop_size = (224, 224)

data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size,
)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    decode_head=dict(
        type='FPNConcatHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        channels=256,
        dropout_ratio=0.1,
        num_classes=2,
        out_channels=1,
        threshold=0.5,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0
        ),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(170, 170)),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(584, 565),
        ratio_range=(0.5, 2.0),
        keep_ratio=True,
    ),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.01),
    clip_grad=None,
)
