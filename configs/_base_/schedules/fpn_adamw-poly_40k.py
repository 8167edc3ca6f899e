# The Semantic FPN recipe of the PVT papers (whai362/PVT segmentation/configs): AdamW
# lr 2e-4, wd 1e-4, poly decay (power 0.9, min lr 0) over mmseg's 40k-iteration schedule.
_base_ = 'mmseg::_base_/schedules/schedule_40k.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001),
    clip_grad=None,
)
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=40000,
        by_epoch=False,
    )
]
