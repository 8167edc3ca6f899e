# Semantic FPN + PVT-v2-b0 + TopDownFPN, ADE20K 512x512: the official release's recipe
# (whai362/PVTv2-Seg, configs/sem_fpn/PVTv2/fpn_pvtv2_b0_ade20k_40k.py; every variant the
# same): TopDownFPN (4 outputs, 256 channels) + FPNHead (128 channels) (model:
# ../_base_/models/fpn_pvtv2-b0_topdownfpn.py); AdamW lr 2e-4, wd 1e-4, poly (power 0.9,
# min lr 0), no warm-up, 40k iterations (../_base_/schedules/fpn_adamw-poly_40k.py);
# 8 GPUs x 4 images; tested at 2048x512 (keep ratio), then resized to a multiple of 32
# (the release's AlignResize = mmseg's ResizeToMultiple). (docs/recipes.md,
# tests/test_release_recipes.py)
_base_ = [
    '../_base_/models/fpn_pvtv2-b0_topdownfpn.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../_base_/seg_runtime.py',
    '../_base_/schedules/fpn_adamw-poly_40k.py',
]

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=150)
)
train_dataloader = dict(batch_size=4)

# The release's test resize (AlignResize(keep_ratio=True, size_divisor=32) in PVTv2-Seg's
# configs/_base_/datasets/ade20k.py): keep-ratio resize to 2048x512, then a resize of
# the image (not a pad) up to the next multiple of 32 -- mmseg 1.x's ResizeToMultiple,
# as mmseg's own port of this recipe (configs/poolformer/fpn_poolformer_s12_8xb4-40k_*)
# does. Predictions are resized back to the original image for evaluation.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
