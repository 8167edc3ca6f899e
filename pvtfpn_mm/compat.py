"""What differs between the oldest supported stack and the newest, in one place.

The oldest supported stack (requirements/constraints-oldest.txt: torch 2.1, timm 0.9.16,
numpy 1.26, mmengine 0.10.3) lacks a few things the newest one (requirements/
constraints.txt) has; each gap gets a fallback here that behaves the same:

* timm 0.9 has no ``timm.layers.calculate_drop_path_rates`` (a timm 1.0 addition): our
  own :func:`calculate_drop_path_rates` gives the same values (tests compare them).
* torch < 2.5 has no ``torch.serialization.add_safe_globals`` taking named entries:
  :data:`HAS_SAFE_GLOBALS` gates the allowlist of :mod:`pvtfpn_mm.weights.io` (torch < 2.6
  loads with ``weights_only=False`` by default, so mmengine's own loading needs no
  allowlist there; our own loading passes ``weights_only=True`` on every version, so on
  torch < 2.5 it refuses checkpoints holding mmengine's message hub (``HistoryBuffer``):
  read their weights on a newer torch).
* torch 2.1's CPU flash attention corrupts memory in its bfloat16 backward pass with more
  than one thread (pytorch#132871: "double free or corruption"; seen here with torch
  2.1.2, not with 2.14.1): :data:`CPU_BF16_FLASH_SDPA_SAFE` says where it is known to be
  safe, and :func:`math_sdpa` routes ``scaled_dot_product_attention`` to its math backend
  elsewhere (:class:`pvtfpn_mm.engine.CPUAmpOptimWrapper` does under CPU autocast).
* torch < 2.3 has no ``torch.compiler.is_compiling`` and torch < 2.4 no
  ``torch.is_autocast_enabled(device_type)``: :func:`is_compiling` and
  :func:`is_autocast_enabled` ask what those versions have (the fast paths of
  :mod:`pvtfpn_mm.models.backbones.pvt_v2` use them to step aside).

* mmpretrain 1.2's multimodal models (BLIP, BLIP-2, OFA, RAM; imported by
  ``mmpretrain.models`` and so by ``mmdet.models``) import names that transformers
  >= 4.52 no longer has: transformers 4.52-4.55 fail with an ``ImportError`` (OFA's
  ``GenerationMixin`` from ``transformers.modeling_utils``), 4.56 and 5.x with BLIP's
  ``TypeError: NoneType takes no arguments``. :func:`check_transformers_import` turns
  either into one :class:`IncompatibleTransformersError` naming the installed versions
  and the fix (:data:`TRANSFORMERS_PIN`, the release pinned in
  ``requirements/constraints.txt``); ``import pvtfpn_mm`` and the mmpretrain head use it.

timm 0.9's ``load_state_dict`` takes no ``weights_only``; that gap is filled where files
are read (:func:`pvtfpn_mm.weights.timm_load_state_dict`). This module imports nothing
of pvtfpn_mm: everything else may import it.
"""

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from importlib import metadata

import torch
from packaging.version import Version

TORCH_VERSION = Version(torch.__version__.split('+')[0])

#: torch >= 2.4 lets safe loading (``weights_only=True``) allow more globals, and from 2.5
#: under a name of our choosing (``(obj, 'module.name')`` pairs), which the allowlist of
#: :mod:`pvtfpn_mm.weights.io` needs. Older torch loads with ``weights_only=False`` by
#: default, so mmengine's own loading needs no allowlist there.
HAS_SAFE_GLOBALS = hasattr(
    torch.serialization, 'add_safe_globals'
) and TORCH_VERSION >= Version('2.5')


_found = getattr(getattr(torch, 'compiler', None), 'is_compiling', None)
if _found is not None:
    _is_compiling: Callable[[], bool] = _found
else:  # torch < 2.3
    from torch._dynamo import is_compiling as _dynamo_is_compiling

    _is_compiling = _dynamo_is_compiling


def is_compiling() -> bool:
    """True while torch.compile / dynamo traces (``torch.compiler.is_compiling``)."""
    return bool(_is_compiling())


#: Whether the CPU flash-attention backward is safe in bfloat16: known broken on torch 2.1.2,
#: known good on 2.14.1 (the two stacks tested here); the versions between count as unsafe.
CPU_BF16_FLASH_SDPA_SAFE = TORCH_VERSION >= Version('2.14')


def math_sdpa() -> AbstractContextManager:
    """A context in which ``scaled_dot_product_attention`` runs its math backend (plain
    matmul and softmax ops) on every device."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return torch.backends.cuda.sdp_kernel(
            enable_flash=False, enable_math=True, enable_mem_efficient=False
        )
    return sdpa_kernel([SDPBackend.MATH])


try:
    torch.is_autocast_enabled('cpu')
    _AUTOCAST_TAKES_DEVICE = True
except TypeError:  # torch < 2.4: no device argument
    _AUTOCAST_TAKES_DEVICE = False


def is_autocast_enabled(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)`` on every torch (cpu / cuda before 2.4)."""
    if _AUTOCAST_TAKES_DEVICE:
        return torch.is_autocast_enabled(device_type)
    if device_type == 'cpu':
        return torch.is_autocast_cpu_enabled()
    if device_type == 'cuda':
        return torch.is_autocast_enabled()
    raise ValueError(
        f'device_type must be cpu or cuda on torch {TORCH_VERSION}, '
        f'got {device_type!r}'
    )


def _drop_path_rates(
    drop_path_rate: float, depths: int | Sequence[int], stagewise: bool = False
) -> list[float] | list[list[float]]:
    """timm's ``calculate_drop_path_rates`` (timm 1.0), for older timm.

    Linearly from 0 to ``drop_path_rate`` over all blocks; ``stagewise`` splits the list
    by the stage ``depths`` (a list of lists), as timm's PVT-v2 and Swin use it.
    """
    if isinstance(depths, int):
        if stagewise:
            raise ValueError(
                'stagewise=True requires depths to be a list of stage depths'
            )
        return [
            x.item()
            for x in torch.linspace(0, drop_path_rate, depths, device='cpu')
        ]
    rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu')
    if stagewise:
        return [x.tolist() for x in rates.split(list(depths))]
    return [x.item() for x in rates]


try:
    from timm.layers import calculate_drop_path_rates
except ImportError:  # timm 0.9
    calculate_drop_path_rates = _drop_path_rates


#: The newest transformers release mmpretrain 1.2's multimodal models import with (also
#: pinned in requirements/constraints.txt): 4.52 dropped names they import.
TRANSFORMERS_PIN = '4.51.3'
#: mmpretrain's modules that import transformers (where its import fails).
_MMPRETRAIN_HF_MODULES = tuple(
    os.path.join('mmpretrain', 'models', *parts)
    for parts in (
        ('multimodal', ''),
        ('utils', 'huggingface.py'),
        ('utils', 'tokenizer.py'),
    )
)


class IncompatibleTransformersError(ImportError):
    """mmpretrain's multimodal models (and so mmdet's and pvtfpn_mm's import) fail with
    the installed transformers."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return 'not installed'


def _raised_in_mmpretrain_hf_modules(err: BaseException) -> bool:
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        tb = cause.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if any(m in filename for m in _MMPRETRAIN_HF_MODULES):
                return True
            tb = tb.tb_next
        cause = cause.__cause__ or cause.__context__
    return False


def check_transformers_import(err: BaseException) -> None:
    """Raises :class:`IncompatibleTransformersError` in place of ``err`` (an import's
    error, raised in mmpretrain's multimodal models while transformers is installed);
    returns for any other error, which the caller re-raises.

    The message names the installed transformers and mmpretrain and the fix; the
    original traceback (BLIP's) is left out, its last line kept.
    """
    transformers = _version('transformers')
    if transformers == 'not installed' or not _raised_in_mmpretrain_hf_modules(
        err
    ):
        return
    detail = (str(err).splitlines() or [''])[0][:200]
    raise IncompatibleTransformersError(
        f'mmpretrain {_version("mmpretrain")} cannot import its multimodal models '
        f'(BLIP, OFA, ...; mmdet imports them too) with transformers {transformers}: '
        'they import names that transformers 4.52 and later no longer have. Install '
        f'the tested release: pip install "transformers=={TRANSFORMERS_PIN}" (any '
        'transformers < 4.52 works; or uninstall transformers). '
        f"(mmpretrain's error: {type(err).__name__}: {detail})"
    ) from None
