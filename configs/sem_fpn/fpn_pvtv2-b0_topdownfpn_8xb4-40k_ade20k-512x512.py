# Semantic FPN + PVT-v2-b0 + TopDownFPN, ADE20K 512x512 (the PVT / PVT v2 papers'
# recipe, whai362/PVT segmentation/configs): TopDownFPN (4 outputs, 256 channels) +
# FPNHead (128 channels) (model: ../_base_/models/fpn_pvtv2-b0_topdownfpn.py); AdamW
# lr 2e-4, wd 1e-4, poly (power 0.9, min lr 0), 40k iterations
# (../_base_/schedules/fpn_adamw-poly_40k.py); 8 GPUs x 4 images.
_base_ = [
    '../_base_/models/fpn_pvtv2-b0_topdownfpn.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../_base_/seg_runtime.py',
    '../_base_/schedules/fpn_adamw-poly_40k.py',
]

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=150)
)
train_dataloader = dict(batch_size=4)
