# The 3x schedule and optimizer of the PVT v2 release's Cascade Mask R-CNN, ATSS and GFL
# (whai362/PVT detection/configs/*_pvt_v2_*_fpn_3x_mstrain_fp16.py on its
# _base_/schedules/schedule_1x.py): AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05,
# none on the parameters whose name holds 'norm' (the release's paramwise_cfg, verbatim:
# its Swin keys match nothing in PVT-v2); 36 epochs, lr x 0.1 after epochs 27 and 33, a
# linear warm-up over the first 500 iterations from 0.001 x lr (inherited from the
# release's schedule_1x; mmdet's Swin / ConvNeXt 3x configs warm up over 1000); no
# gradient clipping. The release trains in mixed precision with apex O1 (dynamic loss
# scale; runner EpochBasedRunnerAmp, DistOptimizerHook(use_fp16=True)): here mmengine's
# AmpOptimWrapper (torch autocast, dynamic loss scale; without a GPU our SafeRunner uses
# bfloat16 autocast on the CPU). Batch: 8 GPUs x 2 images.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500
    ),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1,
    ),
]
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.05,
    ),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
            'norm': dict(decay_mult=0.0),
        }
    ),
)
# The release's apex block sets it; DDP looks for parameters without gradients.
find_unused_parameters = True
