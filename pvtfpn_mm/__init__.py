"""pvtfpn_mm: PVT-v2 backbones, an FPN neck and heads for mmdet 3.x / mmseg 1.x.

Importing the package (``custom_imports=dict(imports=['pvtfpn_mm'])``) registers its
models in the ``pvtfpn_mm`` scope and in mmdet's and mmseg's registries, and lets torch's
safe loading read mmengine checkpoints (see :mod:`pvtfpn_mm.checkpoint`) and mmengine's
complexity analysis count ``scaled_dot_product_attention`` (:mod:`pvtfpn_mm.benchmark.flops`).
"""

from .benchmark.flops import register_flop_counters
from .checkpoint import allow_mmengine_checkpoints
from .version import __version__

allow_mmengine_checkpoints()
register_flop_counters()  # scaled_dot_product_attention in mmengine's get_flops

# The models register first, then the engine (side-effect imports, in this order).
# isort: off
from . import models  # noqa: E402,F401  (registers the models)
from . import engine  # noqa: E402,F401  (registers the hooks, runner, AMP wrapper)
# isort: on

__all__ = ['__version__', 'allow_mmengine_checkpoints']
