# Mask R-CNN + PVT-v2-b0 + FPN, 1x COCO (PVT v2 paper recipe): FPN from C2
# (start_level=0), P6 by max-pool (extra_source='pool'), 5 outputs; AdamW lr 1e-4,
# wd 1e-4; 8 GPUs x 2 images.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
checkpoint_file = 'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b0.pth'  # noqa

model = dict(
    backbone=dict(
        _delete_=True,
        type='PVTv2',
        arch='b0',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(
        _delete_=True,
        type='TopDownFPN',
        in_channels=[32, 64, 160, 256],
        out_channels=256,
        start_level=0,
        num_outs=5,
        extra_source='pool'))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))
