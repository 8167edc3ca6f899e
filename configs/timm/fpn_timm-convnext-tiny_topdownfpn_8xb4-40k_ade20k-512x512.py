# Semantic FPN (mmseg's FPNHead) + timm's convnext_tiny (TimmFeatures) + TopDownFPN,
# ADE20K 512x512, 40k iterations: the recipe of ../sem_fpn/ with the backbone from timm
# (model: ../_base_/models/fpn_r50_topdownfpn.py with TimmFeatures for ResNet-50).
# Weights: a local file with timm's convnext_tiny state dict (nothing is downloaded):
#   python -c "import timm, torch; torch.save(timm.create_model('convnext_tiny', \
#       pretrained=True).state_dict(), 'checkpoints/timm/convnext_tiny.pth')"
_base_ = [
    '../_base_/models/fpn_r50_topdownfpn.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../_base_/seg_runtime.py',
    '../_base_/schedules/fpn_adamw-poly_40k.py',
]
from pvtfpn_mm.models.backbones import timm_channels  # noqa: E402 (after _base_)

custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
backbone_name = 'convnext_tiny'
out_indices = (0, 1, 2, 3)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='TimmFeatures',
        model_name=backbone_name,
        out_indices=out_indices,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/timm/convnext_tiny.pth'
        ),
    ),
    # [96, 192, 384, 768]
    neck=dict(in_channels=timm_channels(backbone_name, out_indices)),
    decode_head=dict(num_classes=150),
)
train_dataloader = dict(batch_size=4)

# The Semantic FPN test resize of ../sem_fpn/ (keep-ratio to 2048x512, then up to a
# multiple of 32; see ../sem_fpn/fpn_pvtv2-b0_topdownfpn_8xb4-40k_ade20k-512x512.py).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
