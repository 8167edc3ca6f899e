"""What differs between the oldest supported stack and the newest, in one place.

The oldest supported stack (requirements/constraints-oldest.txt: torch 2.1, timm 0.9.16,
numpy 1.26, mmengine 0.10.3) lacks a few things the newest one (requirements/
constraints.txt) has; each gap gets a fallback here that behaves the same (tests compare
them), its gap said where it is defined. docs/install.md lists them; docs/training_recipe.md
explains :data:`CPU_BF16_FLASH_SDPA_SAFE`, docs/models.md :func:`check_transformers_import`.
timm 0.9's ``load_state_dict`` takes no ``weights_only``: that gap is filled where files are
read (:func:`pvtfpn_mm.weights.timm_load_state_dict`). This module imports nothing of
pvtfpn_mm: everything else may import it.
"""

import os
import traceback
from collections.abc import Sequence
from contextlib import AbstractContextManager
from importlib import metadata

import torch
from packaging.version import Version

TORCH_VERSION = Version(torch.__version__.split('+')[0])

#: torch >= 2.5 lets safe loading (``weights_only=True``) allow globals under a name of our
#: choosing (``(obj, 'module.name')`` pairs), which the allowlist of
#: :mod:`pvtfpn_mm.weights.io` needs. Older torch loads with ``weights_only=False`` by
#: default, so mmengine's own loading needs no allowlist there; our own loading (always
#: ``weights_only=True``) refuses checkpoints holding mmengine's message hub there.
HAS_SAFE_GLOBALS = TORCH_VERSION >= Version('2.5')

try:  # True while torch.compile / dynamo traces
    from torch.compiler import is_compiling as is_compiling
except ImportError:  # torch < 2.3
    from torch._dynamo import is_compiling as is_compiling


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


def is_autocast_enabled(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)`` on every torch (cpu / cuda before 2.4)."""
    if TORCH_VERSION >= Version('2.4'):
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
        depths = [depths]
    rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu')
    if stagewise:
        return [x.tolist() for x in rates.split(list(depths))]
    return rates.tolist()


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
        for frame, _ in traceback.walk_tb(cause.__traceback__):
            filename = frame.f_code.co_filename
            if any(m in filename for m in _MMPRETRAIN_HF_MODULES):
                return True
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
