# The runtime of every mmdet config here (hooks, logging, environment): mmdet's
# default_runtime, plus pvtfpn_mm's engine (pvtfpn_mm/engine, registered by the
# configs' custom_imports=['pvtfpn_mm']), which mmdet's tools/train.py and test.py (so
# also `mim train` / `mim test`) use through runner_type:
# - SafeRunner: one training per work dir (a lock), no training over the checkpoints of
#   an earlier run without --resume, --resume from the newest complete checkpoint,
#   --amp on CPU as bfloat16 autocast, clear errors for empty datasets;
# - AtomicCheckpointHook: a checkpoint is complete on disk before last_checkpoint names
#   it and before older ones are removed (SIGKILL at any moment leaves a resumable run);
# - StrictLoadHook: load_from / --resume / test checkpoints must fit the model
#   (--cfg-options allow_partial_load=True loads what fits and logs what did not).
# The one place to change it for all detection configs.
_base_ = 'mmdet::_base_/default_runtime.py'

runner_type = 'SafeRunner'
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='StrictLoadHook')]
