# Sparse R-CNN (300 proposals) + PVT-v2-b2-li (linear spatial-reduction attention) +
# TopDownFPN, the PVT v2 release's
# sparse_rcnn_pvt_v2_b2_li_fpn_300_proposals_crop_mstrain_480-800_3x_coco.py (48.9 box AP
# published): the b2 recipe (./sparse-rcnn_pvtv2-b2_topdownfpn_300-proposals_crop-ms-480-
# 800-3x_coco.py) with the b2-li backbone and, as the release's file has, AdamW at lr 2.5e-5
# with 8 GPUs x 2 images (b2: lr 2.5e-5 / 1.4, 8 x 1).
_base_ = './sparse-rcnn_pvtv2-b2_topdownfpn_300-proposals_crop-ms-480-800-3x_coco.py'
checkpoint_file = (
    'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2_li.pth'
)
model = dict(
    backbone=dict(arch='b2_li', init_cfg=dict(checkpoint=checkpoint_file))
)
optim_wrapper = dict(optimizer=dict(lr=0.000025))
train_dataloader = dict(batch_size=2, num_workers=2)
auto_scale_lr = dict(base_batch_size=16)
