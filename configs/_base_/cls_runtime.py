# The runtime of the mmpretrain (classification) config here: mmpretrain's
# default_runtime plus pvtfpn_mm's engine, as configs/_base_/det_runtime.py explains
# (mmpretrain's tools/train.py and test.py honour runner_type).
_base_ = 'mmpretrain::_base_/default_runtime.py'

runner_type = 'SafeRunner'
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='StrictLoadHook')]
