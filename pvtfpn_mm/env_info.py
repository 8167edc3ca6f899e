"""Versions of the stack and the model types pvtfpn_mm registers."""

import importlib
from importlib import metadata

from .registry import DOWNSTREAM_SCOPES, MODELS, downstream_registry

STACK = (
    'torch',
    'torchvision',
    'mmengine',
    'mmcv',
    'mmdet',
    'mmsegmentation',
    'mmpretrain',
    'timm',
    'numpy',
    'pycocotools',
    'openmim',
)


def stack_versions() -> dict[str, str]:
    """Maps each distribution of the stack to its version ('missing' when not installed)."""
    versions = {}
    for name in STACK:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = 'missing'
    return versions


def registered_types() -> dict[str, list[str]]:
    """Maps each scope to the pvtfpn_mm types registered in it."""
    import pvtfpn_mm  # noqa: F401  (registers the models)

    ours = sorted(MODELS.module_dict)
    result = {'pvtfpn_mm': ours}
    for scope in DOWNSTREAM_SCOPES:
        registry = downstream_registry(scope)
        if registry is not None:
            result[scope] = [
                n for n in ours if registry.module_dict.get(n) is MODELS.get(n)
            ]
    return result


def mmcv_ops_compiled() -> bool:
    """True when mmcv's compiled extension (``mmcv._ext``) imports."""
    try:
        importlib.import_module('mmcv._ext')
    except ImportError:
        return False
    return True


def mmcv_cuda_ops() -> str:
    """The CUDA version mmcv's ops were compiled with, or why there are none.

    ``'not available'`` (mmcv's own words) means CPU-only ops: mmdet's focal loss, NMS and
    RoIAlign then fail on CUDA tensors. ``tools/setup_env.sh`` builds CUDA ops where it
    finds a usable NVIDIA GPU.
    """
    if not mmcv_ops_compiled():
        return 'no compiled ops'
    from mmcv.ops import get_compiling_cuda_version

    return get_compiling_cuda_version()


def torch_cuda() -> dict[str, str]:
    """torch's CUDA build and whether a GPU is usable."""
    import torch

    info = dict(
        build=torch.version.cuda or 'CPU only',
        available=str(torch.cuda.is_available()),
    )
    if torch.cuda.is_available():
        info['devices'] = ', '.join(
            '{} (sm {}.{})'.format(
                torch.cuda.get_device_name(i),
                *torch.cuda.get_device_capability(i),
            )
            for i in range(torch.cuda.device_count())
        )
    return info
