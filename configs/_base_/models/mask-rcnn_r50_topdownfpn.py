# Mask R-CNN, ResNet-50 + TopDownFPN: mmdet's Mask R-CNN model
# (models/mask-rcnn_r50_fpn.py) with its FPN replaced by TopDownFPN in the equivalent
# setting -- P2-P5 from C2-C5 (start_level=0), P6 by stride-2 max-pooling of P5
# (extra_source='pool' = mmdet's add_extra_convs=False). Other backbones: replace
# `backbone` and set the neck's `in_channels`.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)

model = dict(
    neck=dict(
        _delete_=True,
        type='TopDownFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=0,
        num_outs=5,
        extra_source='pool',
    )
)
