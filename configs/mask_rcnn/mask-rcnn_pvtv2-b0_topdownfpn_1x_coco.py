# Mask R-CNN + PVT-v2-b0 + TopDownFPN, 1x COCO (PVT v2 paper recipe): FPN from C2
# (start_level=0), P6 by max-pool (extra_source='pool'), 5 outputs (model:
# ../_base_/models/mask-rcnn_pvtv2-b0_topdownfpn.py); AdamW lr 1e-4, wd 1e-4;
# 8 GPUs x 2 images.
_base_ = [
    '../_base_/models/mask-rcnn_pvtv2-b0_topdownfpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    '../_base_/det_runtime.py',
]

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001)
)
