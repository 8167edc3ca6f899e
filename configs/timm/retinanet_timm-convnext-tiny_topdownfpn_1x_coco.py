# RetinaNet + timm's convnext_tiny (TimmFeatures) + TopDownFPN, 1x COCO. ConvNeXt's four
# stages are timm feature levels 0..3 (strides 4..32, 96/192/384/768 channels); the FPN
# starts at C3 (start_level=1) with P6/P7 from convs on C5, as mmdet's RetinaNet; AdamW
# as in mmdet's ConvNeXt detection configs.
# Weights: a local file with timm's convnext_tiny state dict (nothing is downloaded):
#   python -c "import timm, torch; torch.save(timm.create_model('convnext_tiny', \
#       pretrained=True).state_dict(), 'checkpoints/timm/convnext_tiny.pth')"
_base_ = '../resnet/retinanet_r50_topdownfpn_1x_coco.py'
from pvtfpn_mm.models.backbones import timm_channels  # noqa: E402 (after _base_)

custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
backbone_name = 'convnext_tiny'
out_indices = (0, 1, 2, 3)

model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmFeatures',
        model_name=backbone_name,
        out_indices=out_indices,
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/timm/convnext_tiny.pth'
        ),
    ),
    # [96, 192, 384, 768]
    neck=dict(in_channels=timm_channels(backbone_name, out_indices)),
)

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
