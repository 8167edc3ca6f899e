# The runtime of every mmseg config here (hooks, logging, environment): mmseg's
# default_runtime, plus pvtfpn_mm's engine (pvtfpn_mm/engine, registered by the
# configs' custom_imports=['pvtfpn_mm']):
# - runner_type: SafeRunner, used by mmseg's tools/train.py (so also `mim train`) and
#   ours: one training per work dir (a lock), no training over the checkpoints of an
#   earlier run without --resume, --resume from the newest complete checkpoint, --amp on
#   CPU as bfloat16 autocast, clear errors for empty datasets; it saves with
#   AtomicCheckpointHook (a checkpoint is complete on disk before last_checkpoint names
#   it and before older ones are removed), replacing the CheckpointHook that mmseg's
#   schedules put in default_hooks (this file is listed beside them, so it cannot set
#   default_hooks itself);
# - StrictLoadHook: load_from / --resume / test checkpoints must fit the model, also
#   under mmseg's tools/test.py (`mim test`), which ignores runner_type
#   (--cfg-options allow_partial_load=True loads what fits and logs what did not).
# The one place to change it for all segmentation and depth configs.
_base_ = 'mmseg::_base_/default_runtime.py'

runner_type = 'SafeRunner'
custom_hooks = [dict(type='StrictLoadHook')]
