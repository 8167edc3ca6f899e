# RetinaNet, ResNet-50 + the design notes' canonical FPN (C2-C5 = 256/512/1024/2048
# channels), 1x COCO: mmdet's retinanet_r50_fpn_1x_coco with its FPN replaced by our
# TopDownFPN in the equivalent setting -- P3-P5 from C3-C5 (start_level=1), P6/P7 from
# stride-2 3x3 convs on C5 (extra_source='input' = mmdet's add_extra_convs='on_input').
# Same parameters and state-dict layout as mmdet's model: its checkpoints load as they
# are (tests/test_resnet_fpn.py). The backbone is mmdet's ResNet-50 (torchvision
# ImageNet weights, downloaded by the runner; offline: backbone init_cfg=None).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)

model = dict(
    neck=dict(
        _delete_=True,
        type='TopDownFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        num_outs=5,
        extra_source='input'))
