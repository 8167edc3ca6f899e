# RetinaNet + PVT-v2-b0 + TopDownFPN, 1x COCO: the official release's recipe (whai362/PVT,
# branch v2, detection/configs/retinanet_pvt_v2_b0_fpn_1x_coco.py; b1, b2, b2_li, b3 the
# same; also mmdet's configs/pvt/retinanet_pvtv2-b0_fpn_1x_coco.py) with our PVTv2 /
# TopDownFPN: FPN from C3 (start_level=1), P6/P7 from convs on C5 (extra_source='input'),
# 5 outputs (model: ../_base_/models/retinanet_pvtv2-b0_topdownfpn.py); AdamW lr 1e-4,
# wd 1e-4; 12 epochs, steps at 8 and 11, 500-iteration linear warm-up; 8 GPUs x 2 images.
# (docs/recipes.md, tests/test_release_recipes.py)
_base_ = [
    '../_base_/models/retinanet_pvtv2-b0_topdownfpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    '../_base_/det_runtime.py',
]

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001)
)
