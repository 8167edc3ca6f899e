# Mask R-CNN + timm's swin_tiny_patch4_window7_224 (TimmFeatures) + TopDownFPN, 1x COCO,
# with the optimizer of mmdet's mask-rcnn_swin-t-p4-w7_fpn_1x_coco. Swin's four stages are
# timm feature levels 0..3 (strides 4..32, 96/192/384/768 channels; TimmFeatures turns
# timm's NHWC maps into NCHW). dynamic_img_size=True lets timm's Swin take any input
# whose sides are multiples of 4 (mmdet pads to 32) instead of only 224 x 224 (timm >= 1.0;
# timm 0.9's Swin ignores it and refuses other sizes).
# Weights: a local file with timm's swin_tiny_patch4_window7_224 state dict:
#   python -c "import timm, torch; torch.save(timm.create_model( \
#       'swin_tiny_patch4_window7_224', pretrained=True).state_dict(), \
#       'checkpoints/timm/swin_tiny_patch4_window7_224.pth')"
_base_ = '../resnet/mask-rcnn_r50_topdownfpn_1x_coco.py'
from pvtfpn_mm.models.backbones import timm_channels  # noqa: E402 (after _base_)

custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
backbone_name = 'swin_tiny_patch4_window7_224'
out_indices = (0, 1, 2, 3)
timm_kwargs = dict(dynamic_img_size=True, drop_path_rate=0.2)

model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmFeatures',
        model_name=backbone_name,
        out_indices=out_indices,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/timm/swin_tiny_patch4_window7_224.pth',
        ),
        **timm_kwargs,
    ),
    neck=dict(
        in_channels=timm_channels(backbone_name, out_indices, **timm_kwargs)
    ),
)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.05,
    ),
    paramwise_cfg=dict(
        custom_keys=dict(
            absolute_pos_embed=dict(decay_mult=0.0),
            relative_position_bias_table=dict(decay_mult=0.0),
            norm=dict(decay_mult=0.0),
        )
    ),
)
