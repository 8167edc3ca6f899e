# RetinaNet + timm's resnet50 (TimmFeatures) + TopDownFPN, 1x COCO:
# ../resnet/retinanet_r50_topdownfpn_1x_coco.py (mmdet's retinanet_r50_fpn_1x_coco recipe)
# with the backbone taken from timm; the neck keeps its setting. ResNet levels in
# timm: 0 = stem (stride 2), 1..4 = layer1..4, so C2..C5 are out_indices=(1, 2, 3, 4)
# and frozen_stages=1 freezes the stem and layer1, as mmdet's ResNet does.
# Weights: a local file with timm's resnet50 state dict (nothing is downloaded), e.g.
#   python -c "import timm, torch; torch.save(timm.create_model('resnet50', \
#       pretrained=True).state_dict(), 'checkpoints/timm/resnet50.pth')"
# on a machine with internet access. The file is read when the runner initializes
# the model (training); testing from a trained checkpoint does not need it.
_base_ = '../resnet/retinanet_r50_topdownfpn_1x_coco.py'
from pvtfpn_mm.models.backbones import timm_channels  # noqa: E402 (after _base_)

custom_imports = dict(imports=['pvtfpn_mm'], allow_failed_imports=False)
backbone_name = 'resnet50'
out_indices = (1, 2, 3, 4)

model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmFeatures',
        model_name=backbone_name,
        out_indices=out_indices,
        frozen_stages=1,
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/timm/resnet50.pth'
        ),
    ),
    # [256, 512, 1024, 2048]
    neck=dict(in_channels=timm_channels(backbone_name, out_indices)),
)
