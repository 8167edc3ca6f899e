"""Mixed precision on machines without a GPU: bfloat16 autocast on the CPU.

mmengine 0.10.7's ``AmpOptimWrapper`` (what ``--amp`` selects in mmdet's / mmseg's
``tools/train.py``) asserts that CUDA, NPU, MLU or MUSA is available. PyTorch's CPU
autocast runs matmuls and convolutions in bfloat16 while the parameters, their
gradients and the optimizer state stay float32; bfloat16 has float32's exponent range,
so no loss scaling is needed. :class:`CPUAmpOptimWrapper` is that, as an optimizer
wrapper; :func:`amp_optim_wrapper_type` picks it when no accelerator is present.
"""

from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.device import (
    is_cuda_available,
    is_mlu_available,
    is_musa_available,
    is_npu_available,
)
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


def accelerator_available() -> bool:
    """Whether mmengine's ``AmpOptimWrapper`` can run here (its own condition)."""
    return (
        is_cuda_available()
        or is_npu_available()
        or is_mlu_available()
        or is_musa_available()
    )


def amp_optim_wrapper_type() -> str:
    """``'AmpOptimWrapper'`` where an accelerator is present, else
    ``'CPUAmpOptimWrapper'``."""
    return (
        'AmpOptimWrapper' if accelerator_available() else 'CPUAmpOptimWrapper'
    )


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward passes run under ``torch.autocast('cpu',
    dtype=torch.bfloat16)``.

    Args:
        loss_scale (str | float | dict, optional): Accepted so that an
            ``AmpOptimWrapper`` config (``loss_scale='dynamic'``) works unchanged; not
            used, bfloat16 needs no loss scaling. Defaults to None.
        dtype (str | torch.dtype, optional): Only ``'bfloat16'`` (CPU autocast supports
            no other). Defaults to None (bfloat16).
        **kwargs: ``OptimWrapper``'s arguments (``optimizer``, ``accumulative_counts``,
            ``clip_grad``).

    Raises:
        ValueError: Another ``dtype``.
    """

    def __init__(
        self,
        loss_scale: str | float | dict | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs,
    ):
        if dtype not in (None, 'bfloat16', torch.bfloat16):
            raise ValueError(
                f'CPUAmpOptimWrapper: CPU autocast runs in bfloat16 only, got '
                f'dtype={dtype!r}'
            )
        super().__init__(**kwargs)
        self.loss_scale = loss_scale
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module):
        with (
            super().optim_context(model),
            torch.autocast('cpu', dtype=self.cast_dtype),
        ):
            yield

    def load_state_dict(self, state_dict: dict) -> None:
        """As ``OptimWrapper``; the loss scaler of an ``AmpOptimWrapper`` checkpoint (a
        run resumed on a machine without GPU) is dropped."""
        state_dict = dict(state_dict)
        state_dict.pop('loss_scaler', None)
        super().load_state_dict(state_dict)

    def __repr__(self) -> str:  # pragma: no cover - for logs
        return (
            f'CPUAmpOptimWrapper(dtype=bfloat16, optimizer={self.optimizer!r})'
        )


def cpu_amp_config(optim_wrapper: dict) -> dict | None:
    """The ``CPUAmpOptimWrapper`` version of an ``AmpOptimWrapper`` config dict when no
    accelerator is present; None when nothing is to change."""
    if not isinstance(optim_wrapper, dict) or accelerator_available():
        return None
    if optim_wrapper.get('type') not in (
        'AmpOptimWrapper',
        'mmengine.AmpOptimWrapper',
    ):
        return None
    out = type(optim_wrapper)(optim_wrapper)
    out['type'] = 'CPUAmpOptimWrapper'
    return out
