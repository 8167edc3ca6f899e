# Mask R-CNN + PVT-v2-b5 + TopDownFPN, 1x COCO (see mask-rcnn_pvtv2-b0_topdownfpn_1x_coco.py).
_base_ = './mask-rcnn_pvtv2-b0_topdownfpn_1x_coco.py'
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b5.pth'
)
model = dict(
    backbone=dict(arch='b5', init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 320, 512]),
)

# The release's b5 recipe (detection/configs/mask_rcnn_pvt_v2_b5_fpn_1x_coco.py):
# 8 GPUs x 1 image, AdamW lr 2e-4 / 1.4.
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type='AdamW', lr=0.0002 / 1.4, weight_decay=0.0001
    )
)
train_dataloader = dict(batch_size=1, num_workers=1)
# auto_scale_lr's base: 8 GPUs x 1 image (enable it with --auto-scale-lr).
auto_scale_lr = dict(base_batch_size=8)
