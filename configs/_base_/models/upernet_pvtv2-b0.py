# UPerNet + PVT-v2-b0 (no TopDownFPN: UPerHead has its own pyramid pooling and FPN):
# mmseg's transformer UPerNet model (models/upernet_swin.py) with PVT-v2-b0 (ImageNet
# weights of the official whai362/PVT release); UPerHead with pool scales 1, 2, 3, 6 and
# 512 channels on the four stages, auxiliary FCNHead on stage 3. Other variants override
# `arch`, `checkpoint_file` + `init_cfg.checkpoint` and the heads' `in_channels`.
_base_ = 'mmseg::_base_/models/upernet_swin.py'
custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b0.pth'
)

model = dict(
    backbone=dict(
        _delete_=True,
        type='PVTv2',
        arch='b0',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file),
    ),
    decode_head=dict(
        in_channels=[32, 64, 160, 256], pool_scales=(1, 2, 3, 6), channels=512
    ),
    auxiliary_head=dict(in_channels=160, in_index=2),
)
