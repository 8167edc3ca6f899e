# Mask2Former + PVT-v2-b2, COCO instance segmentation, 50 epochs: mmdet 3.3's Mask2Former
# instance recipe (configs/mask2former/mask2former_r50_8xb2-lsj-50e_coco.py; the
# optimizer's per-parameter settings as its transformer-backbone variant
# mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py) with PVT-v2-b2 for the backbone
# (model: ../_base_/models/mask2former_pvtv2-b2.py; no TopDownFPN: the pixel decoder takes
# the four stages). Beyond the PVT v2 release, which has no Mask2Former: no published
# result exists for this model and none is claimed. As mmdet's config: large-scale
# jittering (flip, resize of 1024x1024 by 0.1-2.0, 1024x1024 crop, padded to 1024x1024);
# AdamW lr 1e-4, wd 0.05, backbone lr x0.1, no weight decay on norms and on the query /
# level embeddings, gradient clipping at 0.01; 368750 iterations (50 epochs of 8 GPUs x 2
# images), lr x0.1 at 327778 and 355092. Backbone drop-path 0.1 (the PVT v2 release's
# value). Multi-scale deformable attention runs on the CPU too (mmcv's PyTorch path).
_base_ = [
    '../_base_/models/mask2former_pvtv2-b2.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/det_runtime.py',
]

image_size = (1024, 1024)
train_pipeline = [
    dict(
        type='LoadImageFromFile',
        to_float32=True,
        backend_args={{_base_.backend_args}},
    ),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    # large scale jittering
    dict(
        type='RandomResize',
        scale=image_size,
        ratio_range=(0.1, 2.0),
        resize_type='Resize',
        keep_ratio=True,
    ),
    dict(
        type='RandomCrop',
        crop_size=image_size,
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True,
    ),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        to_float32=True,
        backend_args={{_base_.backend_args}},
    ),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=(
            'img_id',
            'img_path',
            'ori_shape',
            'img_shape',
            'scale_factor',
        ),
    ),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# The backbone at lr x0.1; its LayerNorms (every '.norm' of PVTv2: patch embeddings, the
# blocks' norm1 / norm2 / attn.norm, the stage-final norms) and the query / level
# embeddings without weight decay; every other norm layer too (norm_decay_mult). A
# parameter that matches a custom key takes that key's settings and nothing else
# (mmengine), so the backbone norms are listed one by one, as mmdet's Swin config does.
depths = [3, 4, 6, 3]  # PVT-v2-b2's blocks per stage
backbone_norm_multi = dict(lr_mult=0.1, decay_mult=0.0)
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
custom_keys = {
    'backbone': dict(lr_mult=0.1, decay_mult=1.0),
    'query_embed': embed_multi,
    'query_feat': embed_multi,
    'level_embed': embed_multi,
}
custom_keys.update(
    {
        f'backbone.stages.{i}.patch_embed.norm': backbone_norm_multi
        for i in range(4)
    }
)
custom_keys.update(
    {f'backbone.stages.{i}.norm': backbone_norm_multi for i in range(4)}
)
custom_keys.update(
    {
        f'backbone.stages.{i}.blocks.{j}.{name}': backbone_norm_multi
        for i, depth in enumerate(depths)
        for j in range(depth)
        for name in ('norm', 'attn.norm')
    }
)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=0.0001,
        weight_decay=0.05,
        eps=1e-8,
        betas=(0.9, 0.999),
    ),
    paramwise_cfg=dict(custom_keys=custom_keys, norm_decay_mult=0.0),
    clip_grad=dict(max_norm=0.01, norm_type=2),
)

max_iters = 368750
param_scheduler = dict(
    type='MultiStepLR',
    begin=0,
    end=max_iters,
    by_epoch=False,
    milestones=[327778, 355092],
    gamma=0.1,
)
# evaluation every 5000 iterations, and at the end
interval = 5000
dynamic_intervals = [(max_iters // interval * interval + 1, max_iters)]
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=interval,
    dynamic_intervals=dynamic_intervals,
)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False, save_last=True, max_keep_ckpts=3, interval=interval
    )
)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
# base_batch_size = 8 GPUs x 2 images (enable scaling with --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=16)
