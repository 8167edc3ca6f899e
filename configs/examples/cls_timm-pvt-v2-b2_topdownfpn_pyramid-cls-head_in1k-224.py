# The design notes' Case 4, "classification from the pyramid", as an mmpretrain config:
#   timm pvt_v2_b2 features C1-C4 -> the notes' FPN (4 x 256 channels)
#   -> PyramidClsHead: global average pool of the coarsest level P4 (7 x 7 for 224 input),
#      linear layer -> class logits  (x = F.adaptive_avg_pool2d(P4, 1).flatten(1);
#      out = nn.Linear(256, num_classes)(x))
# ImageNet-1k with mmpretrain's Swin recipe (AdamW, RandAugment, Mixup / CutMix,
# label smoothing). Needs mmpretrain (part of the pinned stack). Weights: a local file
# with timm's pvt_v2_b2 state dict (nothing is downloaded):
#   python -c "import timm, torch; torch.save(timm.create_model('pvt_v2_b2', \
#       pretrained=True).state_dict(), 'checkpoints/timm/pvt_v2_b2.pth')"
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
from pvtfpn_mm.models.backbones import timm_channels  # noqa: E402 (after _base_)

custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
backbone_name = 'pvt_v2_b2'
num_classes = 1000

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='TimmFeatures',
        model_name=backbone_name,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/timm/pvt_v2_b2.pth')),
    neck=dict(
        type='TopDownFPN',
        in_channels=timm_channels(backbone_name),  # [64, 128, 320, 512]
        out_channels=256,
        num_outs=4,
        upsample_mode='bilinear'),
    head=dict(
        type='PyramidClsHead',
        num_classes=num_classes,
        in_channels=256,
        in_index=-1,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))
# P4 = smooth(lateral(C4)) sees only C4: the classifier trains the whole backbone but
# only the neck's coarsest lateral / smoothing convs, so distributed training must
# allow unused parameters.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
