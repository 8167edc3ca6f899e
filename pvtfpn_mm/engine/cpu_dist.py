"""Data-parallel training on CPUs (gloo) with mmengine 0.10's Runner.

mmengine 0.10 assumes a GPU per process when launched with ``--launcher pytorch``: its
``init_dist`` calls ``torch.cuda.set_device(LOCAL_RANK)`` and its ``wrap_model`` passes
``device_ids=[LOCAL_RANK]`` to ``DistributedDataParallel``; both fail without CUDA.
:func:`prepare_cpu_distributed` works around both, only when CUDA is unavailable: it
initialises the gloo process group itself (the Runner then skips ``init_dist``) and has
the model wrapped by :class:`CPUDistributedDataParallel`, which drops ``device_ids``.
"""

from datetime import timedelta
from typing import Any

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for a model on the CPU: ``device_ids`` is ignored."""

    def __init__(self, module, device_ids=None, **kwargs):
        kwargs.setdefault('broadcast_buffers', False)
        super().__init__(module=module, device_ids=None, **kwargs)


def prepare_cpu_distributed(cfg: Config) -> None:
    """For ``cfg.launcher == 'pytorch'`` without CUDA: gloo, process group, wrapper."""
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='CPUDistributedDataParallel',
            find_unused_parameters=cfg.get('find_unused_parameters', False),
        )
    if not torch_dist.is_initialized():
        timeout = cfg.env_cfg.dist_cfg.get('timeout')
        kwargs: dict[str, Any] = (
            {} if timeout is None else dict(timeout=timedelta(seconds=timeout))
        )
        # env:// from torchrun
        torch_dist.init_process_group(backend='gloo', **kwargs)
