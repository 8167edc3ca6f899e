# UPerNet + PVT-v2-b0, ADE20K 512x512, 160k iterations. The PVT v2 release has no
# UPerNet recipe: this is mmseg 1.2.2's Swin-T UPerNet recipe
# (configs/swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py;
# Twins PCPVT-B / L UPerNet: the same optimizer and schedule): UPerHead (pool scales
# 1, 2, 3, 6; 512 channels) on the four backbone stages, auxiliary FCNHead on stage 3
# (loss weight 0.4)
# (model: ../_base_/models/upernet_pvtv2-b0.py; no TopDownFPN); AdamW lr 6e-5, wd 0.01
# (none on norms), 1500-iteration linear warm-up then poly (power 1.0); 8 GPUs x 2
# images. Differences: drop-path 0.1 (the PVT v2 release's value in all its downstream
# recipes; Swin-T's 0.3 is Swin-T's), and of Swin's weight-decay keys only 'norm' (the
# other two name Swin parameters). (docs/recipes.md, tests/test_release_recipes.py)
_base_ = [
    '../_base_/models/upernet_pvtv2-b0.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../_base_/seg_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150),
)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01
    ),
    paramwise_cfg=dict(custom_keys=dict(norm=dict(decay_mult=0.0))),
)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500
    ),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=160000,
        by_epoch=False,
    ),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
