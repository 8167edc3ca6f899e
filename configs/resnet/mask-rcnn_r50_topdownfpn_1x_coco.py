# Mask R-CNN, ResNet-50 + the design notes' canonical FPN (C2-C5 = 256/512/1024/2048
# channels -> P2-P5, 256 channels), 1x COCO: mmdet's mask-rcnn_r50_fpn_1x_coco with its
# FPN replaced by our TopDownFPN in the equivalent setting
# (../_base_/models/mask-rcnn_r50_topdownfpn.py) -- P2-P5 from C2-C5 (start_level=0),
# P6 by stride-2 max-pooling of P5 (extra_source='pool' = mmdet's add_extra_convs=False);
# mmdet's data, schedule and optimizer. Same parameters and state-dict layout as mmdet's
# model (tests/test_resnet_fpn.py). The backbone is mmdet's ResNet-50 (torchvision
# ImageNet weights, downloaded by the runner; offline: backbone init_cfg=None).
_base_ = [
    '../_base_/models/mask-rcnn_r50_topdownfpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    '../_base_/det_runtime.py',
]
