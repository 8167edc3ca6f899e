# Mask R-CNN, ResNet-50 + the design notes' canonical FPN (C2-C5 = 256/512/1024/2048
# channels -> P2-P5, 256 channels), 1x COCO: mmdet's mask-rcnn_r50_fpn_1x_coco with its
# FPN replaced by our TopDownFPN in the equivalent setting -- P2-P5 from C2-C5
# (start_level=0), P6 by stride-2 max-pooling of P5 (extra_source='pool' = mmdet's
# add_extra_convs=False). Same parameters and state-dict layout as mmdet's model
# (tests/test_resnet_fpn.py). The backbone is mmdet's ResNet-50 (torchvision ImageNet
# weights, downloaded by the runner; offline: backbone init_cfg=None).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)

model = dict(
    neck=dict(
        _delete_=True,
        type='TopDownFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=0,
        num_outs=5,
        extra_source='pool'))
