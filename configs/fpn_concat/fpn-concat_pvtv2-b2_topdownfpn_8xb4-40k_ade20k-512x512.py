# PVT-v2-b2 + FPN + the design notes' concat head (fpn_design_notes.md, "Case 2"), ADE20K
# 512x512: the four FPN levels (bilinear top-down upsampling, as in the notes) are resized
# to 1/4 of the input, concatenated, fused by a 3x3 conv and classified per pixel.
# Schedule and optimizer of the Semantic FPN recipe (AdamW lr 2e-4, wd 1e-4, poly, 40k
# iterations, 8 GPUs x 4 images). No published reference numbers.
_base_ = '../sem_fpn/fpn_pvtv2-b2_topdownfpn_8xb4-40k_ade20k-512x512.py'
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    neck=dict(upsample_mode='bilinear'),
    decode_head=dict(
        _delete_=True,
        type='FPNConcatHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        input_transform='multiple_select',
        channels=256,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0
        ),
    ),
)
