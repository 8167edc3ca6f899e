# Cascade Mask R-CNN + PVT-v2-b2 + TopDownFPN with 4conv1fc GIoU box heads: the model of
# the PVT v2 release's 3x Cascade Mask R-CNN (whai362/PVT detection/configs/
# cascade_mask_rcnn_pvt_v2_b2_fpn_3x_mstrain_fp16.py on _base_/models/
# cascade_mask_rcnn_pvtv2_b2_fpn.py). mmdet's cascade-mask-rcnn_r50_fpn model with
# - PVT-v2-b2 for ResNet-50 (ImageNet weights of the release; drop path 0.1);
# - TopDownFPN for its FPN in the equivalent setting: P2-P5 from C2-C5 (start_level=0),
#   P6 by stride-2 max-pooling (extra_source='pool' = mmdet's add_extra_convs=False);
# - the release's three box heads (= mmdet's convnext/cascade-mask-rcnn_convnext-t-p4-w7_
#   fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py): 4 shared 3x3 convs with SyncBN and one fc,
#   class-specific regression of decoded boxes with GIoU loss (weight 10); stage target
#   stds 0.1/0.2, 0.05/0.1, 0.033/0.067.
# SyncBN: mmengine's Runner turns it into BatchNorm when the run is not distributed (one
# GPU or CPU process); docs/model_zoo_3x.md. Other variants override `arch`,
# `checkpoint_file` + `init_cfg.checkpoint`.
_base_ = 'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth'
)

model = dict(
    backbone=dict(
        _delete_=True,
        type='PVTv2',
        arch='b2',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file),
    ),
    neck=dict(
        _delete_=True,
        type='TopDownFPN',
        in_channels=[64, 128, 320, 512],
        out_channels=256,
        start_level=0,
        num_outs=5,
        extra_source='pool',
    ),
    roi_head=dict(
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
                    target_stds=target_stds,
                ),
                reg_class_agnostic=False,
                reg_decoded_bbox=True,
                norm_cfg=dict(type='SyncBN', requires_grad=True),
                loss_cls=dict(
                    type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0
                ),
                loss_bbox=dict(type='GIoULoss', loss_weight=10.0),
            )
            for target_stds in (
                [0.1, 0.1, 0.2, 0.2],
                [0.05, 0.05, 0.1, 0.1],
                [0.033, 0.033, 0.067, 0.067],
            )
        ]
    ),
)
