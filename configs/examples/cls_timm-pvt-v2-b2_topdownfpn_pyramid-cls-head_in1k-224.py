# The design notes' Case 4, "classification from the pyramid", as an mmpretrain config:
#   timm pvt_v2_b2 features C1-C4 -> the notes' FPN (4 x 256 channels)
#   -> PyramidClsHead: global average pool of the coarsest level P4 (7 x 7 for 224 input),
#      linear layer -> class logits  (x = F.adaptive_avg_pool2d(P4, 1).flatten(1);
#      out = nn.Linear(256, num_classes)(x))
# ImageNet-1k with mmpretrain's Swin recipe (AdamW, RandAugment, Mixup / CutMix,
# label smoothing). Needs mmpretrain (part of the pinned stack). Backbone, neck and
# weights: ../_base_/models/timm-pvt-v2-b2_topdownfpn.py.
_base_ = [
    '../_base_/models/timm-pvt-v2-b2_topdownfpn.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    '../_base_/cls_runtime.py',
]

num_classes = 1000

model = dict(
    type='ImageClassifier',
    head=dict(
        type='PyramidClsHead',
        num_classes=num_classes,
        in_channels=256,
        in_index=-1,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'
        ),
        cal_acc=False,
    ),
    train_cfg=dict(
        augments=[
            dict(type='Mixup', alpha=0.8),
            dict(type='CutMix', alpha=1.0),
        ]
    ),
)
# P4 = smooth(lateral(C4)) sees only C4: the classifier trains the whole backbone but
# only the neck's coarsest lateral / smoothing convs, so distributed training must
# allow unused parameters.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True
)
