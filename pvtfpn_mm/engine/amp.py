"""Mixed precision on machines without a GPU: bfloat16 autocast on the CPU.

mmengine 0.10.7's ``AmpOptimWrapper`` (what ``--amp`` selects in mmdet's / mmseg's
``tools/train.py``) asserts that CUDA, NPU, MLU or MUSA is available. PyTorch's CPU
autocast runs matmuls and convolutions in bfloat16 while the parameters, their
gradients and the optimizer state stay float32; bfloat16 has float32's exponent range,
so no loss scaling is needed. :class:`CPUAmpOptimWrapper` is that, as an optimizer
wrapper; :func:`amp_optim_wrapper_type` picks it when no accelerator is present.

mmcv 2.1's CPU kernels of ``nms`` (float32 only) and ``RoIAlign`` (float16/32/64) refuse
the bfloat16 tensors autocast gives them (two-stage detectors: the RPN's proposals, the
RoI features); on a GPU their kernels take float16. Within a training step of
:class:`CPUAmpOptimWrapper` they get float32 copies (:func:`mmcv_ops_in_float32`).
"""

import importlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

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


def _float32_args(fn: Callable) -> Callable:
    """``fn`` called outside autocast with its bfloat16 tensor arguments as float32; a
    floating-point tensor result is given back in bfloat16 (as autocast would have it)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        cast = any(
            isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16
            for a in args
        )
        if not cast:
            return fn(*args, **kwargs)
        args = tuple(
            a.float()
            if isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16
            else a
            for a in args
        )
        with torch.autocast('cpu', enabled=False):
            out = fn(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            out = out.to(torch.bfloat16)
        return out

    wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapped


@contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    missing = object()
    before = owner.__dict__.get(name, missing)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if before is missing:
            delattr(owner, name)
        else:
            setattr(owner, name, before)


@contextmanager
def mmcv_ops_in_float32() -> Iterator[None]:
    """Within: mmcv's ``nms`` (``NMSop.apply``, which ``nms`` / ``batched_nms`` call)
    and ``roi_align`` (what ``RoIAlign`` modules call) take bfloat16 tensors as float32
    and run outside autocast; restored on exit. Nothing happens without mmcv's ops."""
    try:  # the modules (mmcv.ops exports functions of the same names)
        nms_module = importlib.import_module('mmcv.ops.nms')
        roi_align_module = importlib.import_module('mmcv.ops.roi_align')
    except ImportError:  # mmcv-lite: no ops to patch
        yield
        return
    with ExitStack() as stack:
        stack.enter_context(
            _patched(
                nms_module.NMSop,
                'apply',
                staticmethod(_float32_args(nms_module.NMSop.apply)),
            )
        )
        stack.enter_context(
            _patched(
                roi_align_module,
                'roi_align',
                _float32_args(roi_align_module.roi_align),
            )
        )
        yield


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
            mmcv_ops_in_float32(),
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
