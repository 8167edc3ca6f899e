"""mmengine extension points: training reliability, model building, train / test runs.

Importing it (``import pvtfpn_mm`` does) registers in mmengine's root registries, so that
mmdet and mmseg configs (and ``mim train`` / ``mim test``) find them by name:
``SafeRunner`` (``RUNNERS``), ``AtomicCheckpointHook``, ``StrictLoadHook`` and
``ChannelsLastHook`` (``HOOKS``), ``CPUAmpOptimWrapper`` (``OPTIM_WRAPPERS``). What each
does and the modules beside them: DEVELOPERS.md ("Layout"), docs/tools.md.
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
