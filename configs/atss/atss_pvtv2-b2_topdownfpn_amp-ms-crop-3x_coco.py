# ATSS + PVT-v2-b2 + TopDownFPN, 3x schedule with multi-scale + crop training in mixed
# precision, COCO: the PVT v2 release's detection/configs/atss_pvt_v2_b2_fpn_3x_mstrain_fp16.py
# (49.9 box AP published) in mmdet 3.x syntax. Model: ../_base_/models/
# atss_pvtv2-b2_topdownfpn.py; data: the DETR-style ms + crop pipeline
# (../_base_/datasets/coco-detection_detr-ms-crop.py); schedule: AdamW 1e-4, wd 0.05 (none
# on norms), 36 epochs, steps at 27 and 33, warm-up 500 iterations, AMP
# (../_base_/schedules/adamw-amp_step-3x.py); 8 GPUs x 2 images. docs/model_zoo_3x.md.
_base_ = [
    '../_base_/models/atss_pvtv2-b2_topdownfpn.py',
    '../_base_/datasets/coco-detection_detr-ms-crop.py',
    '../_base_/schedules/adamw-amp_step-3x.py',
    '../_base_/det_runtime.py',
]
