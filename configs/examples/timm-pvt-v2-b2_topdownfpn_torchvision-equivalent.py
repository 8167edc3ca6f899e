# The design notes' "timm + torchvision FeaturePyramidNetwork" example as model parts:
#   backbone = timm.create_model('pvt_v2_b2', features_only=True)
#   fpn = torchvision.ops.FeaturePyramidNetwork(backbone.feature_info.channels(), 256)
# TopDownFPN with these settings (no extra level, nearest upsampling to the exact size,
# no norm / activation) computes what torchvision's FeaturePyramidNetwork computes: with
# its weights (inner_blocks.i.0 -> lateral_convs.i.conv, layer_blocks.i.0 ->
# fpn_convs.i.conv) the outputs are equal -- four 256-channel maps at 56/28/14/7 for a
# 224 x 224 input (tests/test_notes_examples.py). Not a training config by itself: use it
# as a _base_ and add a detector / segmentor around `model.backbone` and `model.neck`.
# An `_base_` assignment before any import keeps mmengine's classic .py parsing, where
# the helper below runs (an import first would switch to lazy parsing, which cannot).
_base_ = []
from pvtfpn_mm.models.backbones import timm_channels  # noqa: E402 (after _base_)

custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
backbone_name = 'pvt_v2_b2'

model = dict(
    backbone=dict(
        type='TimmFeatures', model_name=backbone_name, out_indices=(0, 1, 2, 3)
    ),
    neck=dict(
        type='TopDownFPN',
        in_channels=timm_channels(backbone_name),  # [64, 128, 320, 512]
        out_channels=256,
        start_level=0,
        num_outs=4,
        upsample_mode='nearest',
    ),
)
