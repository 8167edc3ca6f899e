"""Versions of the stack and the model types pvtfpn_mm registers."""

import importlib
import importlib.util
import subprocess
import sys
from importlib import metadata

from pvtfpn_mm.registry import DOWNSTREAM_SCOPES, MODELS, downstream_registry

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

    mmcv's ``get_compiling_cuda_version`` runs in a child process: with mmcv 2.1.0 built
    for CUDA 13 (torch 2.11, gcc 13) it crashed the interpreter (SIGSEGV) although the ops
    themselves ran. A crash is reported with what the extension links against instead.
    """
    if not mmcv_ops_compiled():
        return 'no compiled ops'
    code = (
        'from mmcv.ops import get_compiling_cuda_version as v; '
        'print(v(), end="")'
    )
    try:
        child = subprocess.run(
            [sys.executable, '-c', code],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        return 'unknown (mmcv\'s CUDA version query did not return in 300 s)'
    if child.returncode == 0 and child.stdout:
        return child.stdout.strip()
    how = (
        f'crashed with signal {-child.returncode}'
        if child.returncode < 0
        else f'failed: {child.stderr.strip().splitlines()[-1:] or child.returncode}'
    )
    links = (
        'links the CUDA runtime'
        if _ext_links_cuda()
        else 'links no CUDA runtime'
    )
    return f'unknown (mmcv\'s CUDA version query {how}; mmcv._ext {links})'


def _ext_links_cuda() -> bool:
    """Whether mmcv's compiled extension names CUDA libraries (its ELF strings)."""
    spec = importlib.util.find_spec('mmcv._ext')
    if spec is None or spec.origin is None:
        return False
    with open(spec.origin, 'rb') as f:
        data = f.read()
    return b'libcudart' in data or b'libc10_cuda' in data


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
