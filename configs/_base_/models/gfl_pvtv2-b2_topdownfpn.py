# GFL + PVT-v2-b2 + TopDownFPN: the model of the PVT v2 release's 3x GFL (whai362/PVT
# detection/configs/gfl_pvt_v2_b2_fpn_3x_mstrain_fp16.py), which is mmdet's
# gfl/gfl_r50_fpn_1x_coco.py model with PVT-v2-b2 and TopDownFPN as in
# ./atss_pvtv2-b2_topdownfpn.py (P3-P7, extra_source='output' = mmdet's
# add_extra_convs='on_output'). Head: ATSS's anchors and assignment, quality focal loss,
# distribution focal loss (weight 0.25, reg_max 16), GIoU loss (weight 2).
_base_ = './atss_pvtv2-b2_topdownfpn.py'

model = dict(
    type='GFL',
    bbox_head=dict(
        _delete_=True,
        type='GFLHead',
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
)
