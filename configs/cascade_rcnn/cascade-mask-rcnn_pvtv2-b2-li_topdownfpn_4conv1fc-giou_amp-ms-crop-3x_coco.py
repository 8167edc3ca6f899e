# Cascade Mask R-CNN + PVT-v2-b2-li (linear spatial-reduction attention) + TopDownFPN, the
# PVT v2 release's cascade_mask_rcnn_pvt_v2_b2_li_fpn_3x_mstrain_fp16.py (50.9 box / 44.0
# mask AP published): the b2 recipe (./cascade-mask-rcnn_pvtv2-b2_topdownfpn_4conv1fc-
# giou_amp-ms-crop-3x_coco.py) with the b2-li backbone, as the release's two files differ.
_base_ = './cascade-mask-rcnn_pvtv2-b2_topdownfpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2_li.pth'
)
model = dict(
    backbone=dict(arch='b2_li', init_cfg=dict(checkpoint=checkpoint_file))
)
