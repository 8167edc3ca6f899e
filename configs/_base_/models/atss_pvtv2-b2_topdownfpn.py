# ATSS + PVT-v2-b2 + TopDownFPN: the model of the PVT v2 release's 3x ATSS (whai362/PVT
# detection/configs/atss_pvt_v2_b2_fpn_3x_mstrain_fp16.py), which is mmdet's
# atss/atss_r50_fpn_1x_coco.py model with
# - PVT-v2-b2 for ResNet-50 (ImageNet weights of the release; drop path 0.1);
# - TopDownFPN for its FPN in the equivalent setting: P3-P5 from C3-C5 (start_level=1),
#   P6 and P7 by stride-2 3x3 convs on the smoothed P5 (extra_source='output' = mmdet's
#   add_extra_convs='on_output'), 5 levels.
# Head: 4 GN convs per branch, one square anchor of 8 x stride per location, focal loss,
# GIoU loss (weight 2), centerness; ATSS assignment (top 9). Other variants override
# `arch`, `checkpoint_file` + `init_cfg.checkpoint`.
custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth'
)

model = dict(
    type='ATSS',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
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
        start_level=1,
        num_outs=5,
        extra_source='output',
    ),
    bbox_head=dict(
        type='ATSSHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=[8, 16, 32, 64, 128],
        ),
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
