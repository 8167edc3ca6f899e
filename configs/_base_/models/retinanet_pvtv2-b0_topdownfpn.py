# RetinaNet + PVT-v2-b0 + TopDownFPN (./retinanet_r50_topdownfpn.py with PVT-v2-b0 for
# ResNet-50; ImageNet weights of the official whai362/PVT release). Other variants
# override `arch`, `checkpoint_file` + `init_cfg.checkpoint` and the neck's `in_channels`.
_base_ = './retinanet_r50_topdownfpn.py'
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
    neck=dict(in_channels=[32, 64, 160, 256]),
)
