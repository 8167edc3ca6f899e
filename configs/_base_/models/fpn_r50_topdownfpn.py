# Semantic FPN, ResNet-50 + TopDownFPN: mmseg's Semantic FPN model (models/fpn_r50.py,
# FPNHead) with its FPN replaced by TopDownFPN in the equivalent setting -- P2-P5 from
# C2-C5, 4 outputs of 256 channels. Other backbones: replace `backbone` and set the
# neck's `in_channels`.
_base_ = 'mmseg::_base_/models/fpn_r50.py'
custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)

model = dict(
    neck=dict(
        _delete_=True,
        type='TopDownFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=0,
        num_outs=4,
    )
)
