# Semantic FPN + PVT-v2-b4, ADE20K, 40k (see fpn_pvtv2-b0_topdownfpn_8xb4-40k_ade20k-512x512.py).
_base_ = './fpn_pvtv2-b0_topdownfpn_8xb4-40k_ade20k-512x512.py'
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b4.pth'
)
model = dict(
    backbone=dict(arch='b4', init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 320, 512]),
)
