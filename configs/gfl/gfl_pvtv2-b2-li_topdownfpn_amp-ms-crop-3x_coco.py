# GFL + PVT-v2-b2-li (linear spatial-reduction attention) + TopDownFPN, the PVT v2
# release's gfl_pvt_v2_b2_li_fpn_3x_mstrain_fp16.py (49.2 box AP published): the b2 recipe
# (./gfl_pvtv2-b2_topdownfpn_amp-ms-crop-3x_coco.py) with the b2-li backbone, as the
# release's two files differ.
_base_ = './gfl_pvtv2-b2_topdownfpn_amp-ms-crop-3x_coco.py'
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2_li.pth'
)
model = dict(
    backbone=dict(arch='b2_li', init_cfg=dict(checkpoint=checkpoint_file))
)
