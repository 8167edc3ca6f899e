"""pvtfpn_mm: PVT-v2 backbones, an FPN neck and heads for mmdet 3.x / mmseg 1.x.

Importing the package (``custom_imports=dict(imports=['pvtfpn_mm'])``) registers its
models in the ``pvtfpn_mm`` scope and in mmdet's and mmseg's registries, and lets torch's
safe loading read mmengine checkpoints (see :mod:`pvtfpn_mm.checkpoint`).
"""
from .checkpoint import allow_mmengine_checkpoints
from .version import __version__

allow_mmengine_checkpoints()

from . import models  # noqa: E402,F401  (registers the models)
from . import engine  # noqa: E402,F401  (registers the hooks, runner, AMP wrapper)

__all__ = ['__version__', 'allow_mmengine_checkpoints']
