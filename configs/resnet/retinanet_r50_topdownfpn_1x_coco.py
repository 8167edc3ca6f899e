# RetinaNet, ResNet-50 + the design notes' canonical FPN (C2-C5 = 256/512/1024/2048
# channels), 1x COCO: mmdet's retinanet_r50_fpn_1x_coco with its FPN replaced by our
# TopDownFPN in the equivalent setting (../_base_/models/retinanet_r50_topdownfpn.py) --
# P3-P5 from C3-C5 (start_level=1), P6/P7 from stride-2 3x3 convs on C5
# (extra_source='input' = mmdet's add_extra_convs='on_input'); mmdet's data, schedule,
# test-time augmentation and SGD optimizer. Same parameters and state-dict layout as
# mmdet's model: its checkpoints load as they are (tests/test_resnet_fpn.py). The
# backbone is mmdet's ResNet-50 (torchvision ImageNet weights, downloaded by the runner;
# offline: backbone init_cfg=None).
_base_ = [
    '../_base_/models/retinanet_r50_topdownfpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    '../_base_/det_runtime.py',
    'mmdet::retinanet/retinanet_tta.py',
]

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
)
