"""mmengine extension points: training reliability, model building, train / test runs.

Importing it (``import pvtfpn_mm`` does) registers, in mmengine's root registries (so
mmdet and mmseg configs, and ``mim train`` / ``mim test``, find them by name):

* ``AtomicCheckpointHook`` (``HOOKS``): checkpoints written to a temporary file,
  fsynced, renamed into place, then ``last_checkpoint``, then old ones removed;
* ``StrictLoadHook`` (``HOOKS``): whole checkpoints (``load_from``, ``--resume``,
  ``tools/test.py``) must fit the model, or a short summary says what does not;
* ``SafeRunner`` (``RUNNERS``, via ``runner_type``): work-dir lock, no silent
  overwriting, resuming from the newest complete checkpoint (read safely, errors naming
  the file), CPU AMP, dataset checks;
* ``CPUAmpOptimWrapper`` (``OPTIM_WRAPPERS``): bfloat16 autocast on the CPU;
* ``ChannelsLastHook`` (``HOOKS``): the neck and heads in channels-last memory format on
  CUDA (the ``gpu_recipe`` lever ``channels_last``, :mod:`.recipe`).

Beside them: :mod:`.build` (a config's model outside a Runner), :mod:`.tasks` (train
and test any of our configs as mmdet's / mmseg's tools do), :mod:`.cpu_dist` (gloo
where there is no CUDA), :mod:`.flops` (the attention FLOP counter that
``import pvtfpn_mm`` adds to mmengine's analysis).
"""

from .amp import (
    CPUAmpOptimWrapper,
    accelerator_available,
    amp_optim_wrapper_type,
    resolve_amp_config,
)
from .checkpoint_hook import AtomicCheckpointHook
from .data_checks import DatasetError
from .lock import WorkDirBusyError, WorkDirLock
from .recipe import ChannelsLastHook, apply_gpu_recipe
from .runner import ExistingCheckpointsError, ResumeError, SafeRunner
from .strict_load import StrictLoadHook

__all__ = [
    'AtomicCheckpointHook',
    'CPUAmpOptimWrapper',
    'ChannelsLastHook',
    'DatasetError',
    'ExistingCheckpointsError',
    'ResumeError',
    'SafeRunner',
    'StrictLoadHook',
    'WorkDirBusyError',
    'WorkDirLock',
    'accelerator_available',
    'amp_optim_wrapper_type',
    'apply_gpu_recipe',
    'resolve_amp_config',
]
