# UPerNet + PVT-v2-b5, ADE20K, 160k (see upernet_pvtv2-b0_pvtfpnmm_8xb2-160k_ade20k-512x512.py).
_base_ = './upernet_pvtv2-b0_pvtfpnmm_8xb2-160k_ade20k-512x512.py'
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b5.pth'
)
model = dict(
    backbone=dict(arch='b5', init_cfg=dict(checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320),
)
