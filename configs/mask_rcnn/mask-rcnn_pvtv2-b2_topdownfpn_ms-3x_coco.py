# Mask R-CNN + PVT-v2-b2 + TopDownFPN, 3x schedule with multi-scale training, COCO
# (the recipe of mask-rcnn_pvtv2-b0_topdownfpn_ms-3x_coco.py with the b2 backbone).
_base_ = './mask-rcnn_pvtv2-b0_topdownfpn_ms-3x_coco.py'
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth'
)
model = dict(
    backbone=dict(arch='b2', init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 320, 512]),
)
