# RetinaNet, ResNet-50 + TopDownFPN: mmdet's RetinaNet model (models/retinanet_r50_fpn.py)
# with its FPN replaced by TopDownFPN in the equivalent setting -- P3-P5 from C3-C5
# (start_level=1), P6/P7 from stride-2 3x3 convs on C5 (extra_source='input' = mmdet's
# add_extra_convs='on_input'). Other backbones: replace `backbone` and set the neck's
# `in_channels`.
_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'
custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)

model = dict(
    neck=dict(
        _delete_=True,
        type='TopDownFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        num_outs=5,
        extra_source='input',
    )
)
