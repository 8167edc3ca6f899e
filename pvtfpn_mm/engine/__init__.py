"""Training reliability for mmengine runs with our configs.

Importing it (``import pvtfpn_mm`` does) registers, in mmengine's root registries (so
mmdet and mmseg configs, and ``mim train`` / ``mim test``, find them by name):

* ``AtomicCheckpointHook`` (``HOOKS``): checkpoints written to a temporary file,
  fsynced, renamed into place, then ``last_checkpoint``, then old ones removed;
* ``StrictLoadHook`` (``HOOKS``): whole checkpoints (``load_from``, ``--resume``,
  ``tools/test.py``) must fit the model, or a short summary says what does not;
* ``SafeRunner`` (``RUNNERS``, via ``runner_type``): work-dir lock, no silent
  overwriting, resuming from the newest complete checkpoint, CPU AMP, dataset checks;
* ``CPUAmpOptimWrapper`` (``OPTIM_WRAPPERS``): bfloat16 autocast on the CPU.

It also registers :func:`pvtfpn_mm.weights.read_checkpoint` as mmengine's loader of
local checkpoint files (``CheckpointLoader``'s scheme ``''``): the same
``torch.load`` with safe loading, ``~`` expanded, and errors that name the file and say
what is wrong with it instead of suggesting to switch safe loading off. Only on torch
>= 2.5, where :mod:`pvtfpn_mm.checkpoint` can allowlist what mmengine's checkpoints
hold; older torch keeps mmengine's loader (see :mod:`pvtfpn_mm.compat`).
"""

from mmengine.runner.checkpoint import CheckpointLoader

from pvtfpn_mm.compat import HAS_SAFE_GLOBALS
from pvtfpn_mm.weights import read_checkpoint

from .amp import (
    CPUAmpOptimWrapper,
    accelerator_available,
    amp_optim_wrapper_type,
)
from .checkpoint_hook import AtomicCheckpointHook
from .data_checks import DatasetError
from .lock import WorkDirBusyError, WorkDirLock
from .runner import ExistingCheckpointsError, ResumeError, SafeRunner
from .strict_load import StrictLoadHook


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's local-file checkpoint loader, through :func:`read_checkpoint`."""
    return read_checkpoint(filename, map_location=map_location)


if HAS_SAFE_GLOBALS:
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True
    )

__all__ = [
    'AtomicCheckpointHook',
    'CPUAmpOptimWrapper',
    'DatasetError',
    'ExistingCheckpointsError',
    'ResumeError',
    'SafeRunner',
    'StrictLoadHook',
    'WorkDirBusyError',
    'WorkDirLock',
    'accelerator_available',
    'amp_optim_wrapper_type',
    'load_local_checkpoint',
]
