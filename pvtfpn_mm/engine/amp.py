"""Mixed precision: the autocast dtype chosen by the machine, and bfloat16 on the CPU.

mmengine 0.10.7's ``AmpOptimWrapper`` (what ``--amp`` selects) asserts that CUDA, NPU, MLU
or MUSA is available, and takes one fixed ``dtype``. :class:`CPUAmpOptimWrapper` is CPU
autocast in bfloat16 (float32's exponent range: no loss scaling; parameters, gradients and
optimizer state stay float32); :func:`resolve_amp_config` picks it, or the dtype of
``dtype='auto'``. The choices and the float32 islands: docs/training_recipe.md.
"""

import copy
import functools
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn
from mmengine.device import (
    get_device,
    is_cuda_available,
    is_mlu_available,
    is_musa_available,
    is_npu_available,
)
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict
from mmengine.registry import OPTIM_WRAPPERS

from pvtfpn_mm.compat import (
    CPU_BF16_FLASH_SDPA_SAFE,
    is_autocast_enabled,
    math_sdpa,
)


def accelerator_available() -> bool:
    """Whether mmengine's ``AmpOptimWrapper`` can run here (its own condition)."""
    return (
        is_cuda_available()
        or is_npu_available()
        or is_mlu_available()
        or is_musa_available()
    )


#: ``optim_wrapper.type`` values that mean mmengine's ``AmpOptimWrapper``.
AMP_WRAPPER_TYPES = ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper')
#: ``dtype`` values :func:`resolve_amp_config` knows (besides ``torch.dtype``\ s).
AMP_DTYPES = ('auto', 'float16', 'bfloat16')


def cuda_bf16_supported() -> bool:
    """Whether the current CUDA GPU computes in bfloat16 natively (compute capability
    >= 8.0); torch >= 2.3's ``is_bf16_supported()`` also counts emulation (slow)."""
    if not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 counts native support only
        return bool(torch.cuda.is_bf16_supported())


def _dtype_name(dtype) -> str | None:
    if dtype is None or isinstance(dtype, str):
        return dtype
    if isinstance(dtype, torch.dtype):
        return str(dtype).replace('torch.', '')
    raise TypeError(
        f'optim_wrapper.dtype must be a string or a torch.dtype, got {dtype!r}'
    )


def resolve_amp_config(optim_wrapper) -> tuple[dict, str] | None:
    """The ``AmpOptimWrapper`` config ``optim_wrapper`` made what this machine runs, and
    a line for the log; None when it is no ``AmpOptimWrapper`` config.

    * no accelerator: ``CPUAmpOptimWrapper`` (bfloat16 autocast on the CPU; ``dtype``
      ``'auto'`` or ``'bfloat16'``, float16 is refused by the wrapper);
    * ``dtype='auto'``: bfloat16 on a CUDA GPU that computes in it, without loss scaling
      (``loss_scale=dict(enabled=False)`` unless a float or dict is given), else float16
      with the config's ``loss_scale`` (mmengine's default: dynamic);
    * ``dtype='bfloat16'`` on a CUDA GPU without native bfloat16: ``ValueError``.
    """
    if (
        not isinstance(optim_wrapper, dict)
        or optim_wrapper.get('type') not in AMP_WRAPPER_TYPES
    ):
        return None
    dtype = _dtype_name(optim_wrapper.get('dtype'))
    out = copy.copy(optim_wrapper)
    if not accelerator_available():
        out['type'] = 'CPUAmpOptimWrapper'
        if dtype == 'auto':
            out.pop('dtype')
        return out, (
            'AMP without a GPU: training with CPUAmpOptimWrapper (bfloat16 '
            'autocast on the CPU) instead of AmpOptimWrapper'
        )
    if dtype == 'auto':
        bf16 = get_device() == 'cuda' and cuda_bf16_supported()
        dtype = out['dtype'] = 'bfloat16' if bf16 else 'float16'
        why = (
            'the GPU computes in bfloat16'
            if dtype == 'bfloat16'
            else 'no native bfloat16 here'
        )
        if dtype == 'bfloat16' and not isinstance(
            out.get('loss_scale'), float | dict
        ):
            out['loss_scale'] = dict(enabled=False)
            scaling = 'no loss scaling'
        else:
            scaling = f'loss_scale={out.get("loss_scale", "dynamic")!r}'
        return out, f"AMP dtype='auto': {dtype} ({why}), {scaling}"
    if (
        dtype == 'bfloat16'
        and get_device() == 'cuda'
        and not cuda_bf16_supported()
    ):
        raise ValueError(
            "optim_wrapper.dtype='bfloat16', but this GPU "
            f'({torch.cuda.get_device_name()}) does not compute in bfloat16 '
            "(compute capability < 8.0); use dtype='auto' (float16 here, with "
            "dynamic loss scaling) or 'float16'"
        )
    return out, f'AMP: AmpOptimWrapper, dtype={dtype or "float16"}'


def amp_optim_wrapper_type() -> str:
    """``'AmpOptimWrapper'`` where an accelerator is present, else
    ``'CPUAmpOptimWrapper'``."""
    return (
        'AmpOptimWrapper' if accelerator_available() else 'CPUAmpOptimWrapper'
    )


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward passes run under ``torch.autocast('cpu',
    dtype=torch.bfloat16)``; attention through the math backend where the CPU flash one
    is not known safe (:data:`pvtfpn_mm.compat.CPU_BF16_FLASH_SDPA_SAFE`).

    Args:
        loss_scale (str | float | dict, optional): Accepted so that an
            ``AmpOptimWrapper`` config (``loss_scale='dynamic'``) works unchanged; not
            used, bfloat16 needs no loss scaling. Defaults to None.
        dtype (str | torch.dtype, optional): Only ``'bfloat16'`` or ``'auto'`` (CPU
            autocast supports no other). Defaults to None (bfloat16).
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
        if dtype not in (None, 'auto', 'bfloat16', torch.bfloat16):
            raise ValueError(
                f'CPUAmpOptimWrapper: CPU autocast runs in bfloat16 only, got '
                f'dtype={dtype!r}'
            )
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module):
        with (
            super().optim_context(model),
            torch.autocast('cpu', dtype=self.cast_dtype),
            nullcontext() if CPU_BF16_FLASH_SDPA_SAFE else math_sdpa(),
        ):
            yield

    def load_state_dict(self, state_dict: dict) -> None:
        """As ``OptimWrapper``; the loss scaler of an ``AmpOptimWrapper`` checkpoint (a
        run resumed on a machine without GPU) is dropped."""
        state_dict = dict(state_dict)
        state_dict.pop('loss_scaler', None)
        super().load_state_dict(state_dict)


# ------------------------------------------------------------ fp32 under AMP


def uses_amp(optim_wrapper) -> bool:
    """Whether a built optimizer wrapper (or any of an ``OptimWrapperDict``'s) trains
    under autocast."""
    if isinstance(optim_wrapper, OptimWrapperDict):
        return any(uses_amp(w) for w in optim_wrapper.values())
    return isinstance(optim_wrapper, AmpOptimWrapper | CPUAmpOptimWrapper)


#: Marks a method already wrapped by :func:`keep_fp32_islands`.
_FP32_MARK = '_pvtfpn_fp32'


def _to_float(value):
    if isinstance(value, torch.Tensor):
        return (
            value.float()
            if value.dtype in (torch.float16, torch.bfloat16)
            else value
        )
    if isinstance(value, list | tuple):
        return type(value)(_to_float(v) for v in value)
    return value


def _first_tensor(value) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, list | tuple):
        for v in value:
            found = _first_tensor(v)
            if found is not None:
                return found
    return None


def _run_in_fp32(method, cast_back: bool):
    """``method`` with autocast off and its half-precision tensor arguments (also in
    lists / tuples) made float32; ``cast_back``: the result back to the dtype of the
    first tensor argument."""

    @functools.wraps(method)
    def fp32_method(*args, **kwargs):
        first = _first_tensor(args)
        if first is None or not is_autocast_enabled(first.device.type):
            return method(*args, **kwargs)
        with torch.autocast(first.device.type, enabled=False):
            out = method(
                *_to_float(args),
                **{k: _to_float(v) for k, v in kwargs.items()},
            )
        if (
            cast_back
            and isinstance(out, torch.Tensor)
            and out.is_floating_point()
        ):
            out = out.to(first.dtype)
        return out

    setattr(fp32_method, _FP32_MARK, True)
    return fp32_method


def keep_fp32_islands(model: nn.Module) -> list[str]:
    """Under autocast, runs an mmdet detector's RoI extractors (their output back in the
    features' dtype) and dense heads' ``predict_by_feat`` in float32, as mmdet 2.x's
    ``@force_fp32`` did (why: docs/training_recipe.md, "Mixed precision and the release").
    Wraps the methods of these module instances (nothing global); a no-op for models
    without them and outside autocast. Returns the names of the modules wrapped.
    """
    try:
        from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
        from mmdet.models.roi_heads.roi_extractors.base_roi_extractor import (
            BaseRoIExtractor,
        )
    except ImportError:  # pragma: no cover - mmseg-only installs
        return []
    done = []
    for name, module in model.named_modules():
        if isinstance(module, BaseRoIExtractor):
            method, cast_back = 'forward', True
        elif isinstance(module, BaseDenseHead):
            method, cast_back = 'predict_by_feat', False
        else:
            continue
        bound = getattr(module, method)
        if getattr(bound, _FP32_MARK, False):
            continue
        setattr(module, method, _run_in_fp32(bound, cast_back))
        done.append(name)
    return done
