# timm's pvt_v2_b2 (TimmFeatures, C1-C4: 64/128/320/512 channels at 1/4..1/32) + the
# design notes' FPN (1x1 laterals, bilinear top-down sum, 3x3 smoothing; 4 x 256
# channels): the backbone and neck of the notes' examples (../../examples/). Weights: a
# local file with timm's pvt_v2_b2 state dict (nothing is downloaded):
#   python -c "import timm, torch; torch.save(timm.create_model('pvt_v2_b2', \
#       pretrained=True).state_dict(), 'checkpoints/timm/pvt_v2_b2.pth')"
# An `_base_` assignment before the import keeps mmengine's classic .py parsing, where
# timm_channels runs (an import first would switch to lazy parsing, which cannot).
_base_ = []
from pvtfpn_mm.models.backbones import timm_channels  # noqa: E402 (after _base_)

custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
backbone_name = 'pvt_v2_b2'

model = dict(
    backbone=dict(
        type='TimmFeatures',
        model_name=backbone_name,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/timm/pvt_v2_b2.pth'
        ),
    ),
    neck=dict(
        type='TopDownFPN',
        in_channels=timm_channels(backbone_name),  # [64, 128, 320, 512]
        out_channels=256,
        num_outs=4,
        upsample_mode='bilinear',
    ),
)
