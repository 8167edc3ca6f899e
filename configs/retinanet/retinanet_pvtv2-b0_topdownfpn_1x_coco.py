# RetinaNet + PVT-v2-b0 + TopDownFPN, 1x COCO (PVT v2 paper recipe; mmdet's
# configs/pvt/retinanet_pvtv2-b0_fpn_1x_coco.py with our PVTv2 / TopDownFPN):
# FPN from C3 (start_level=1), P6/P7 from convs on C5 (extra_source='input'), 5 outputs
# (model: ../_base_/models/retinanet_pvtv2-b0_topdownfpn.py); AdamW lr 1e-4, wd 1e-4;
# 8 GPUs x 2 images.
_base_ = [
    '../_base_/models/retinanet_pvtv2-b0_topdownfpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    '../_base_/det_runtime.py',
]

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001)
)
