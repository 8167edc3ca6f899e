# Mask R-CNN + PVT-v2-b2 + TopDownFPN, 1x COCO (see mask-rcnn_pvtv2-b0_topdownfpn_1x_coco.py).
_base_ = './mask-rcnn_pvtv2-b0_topdownfpn_1x_coco.py'
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth'
)
model = dict(
    backbone=dict(arch='b2', init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 320, 512]),
)
