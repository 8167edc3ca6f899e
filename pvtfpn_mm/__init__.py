"""pvtfpn_mm: PVT-v2 backbones, an FPN neck and heads for mmdet 3.x / mmseg 1.x.

``custom_imports=dict(imports=['pvtfpn_mm'])`` in a config (or ``import pvtfpn_mm``)
does exactly these things, and nothing else (``tests/test_import_effects.py`` checks it
in a fresh process):

1. **Registers types.** Our models in the ``pvtfpn_mm`` scope and in the ``MODELS``
   registry of each installed codebase, so their configs build them by bare names (no
   name collides with theirs): ``PVTv2``, ``TimmFeatures`` and ``TopDownFPN`` in mmdet's,
   mmseg's and mmpretrain's, ``FPNConcatHead`` / ``FPNDepthHead`` in mmseg's,
   ``PyramidClsHead`` in mmpretrain's. (The heads subclass mmseg's / mmpretrain's, so
   their model packages are imported where installed, with their own import effects);
   our engine pieces (``SafeRunner``, ``AtomicCheckpointHook``, ``StrictLoadHook``,
   ``ChannelsLastHook``, ``CPUAmpOptimWrapper``) in mmengine's root ``RUNNERS`` / ``HOOKS`` /
   ``OPTIM_WRAPPERS``, so ``mim train`` / ``mim test`` runs of our configs use them.
2. **Lets resuming read mmengine's checkpoints safely** (torch >= 2.5): adds the
   globals those checkpoints hold (mmengine's ``HistoryBuffer``, numpy arrays and
   scalars, and a ``getattr`` restricted to ``HistoryBuffer``'s statistics) to torch's
   ``weights_only`` allowlist (:func:`pvtfpn_mm.weights.allow_mmengine_checkpoints`).
   Why: torch >= 2.6 loads with ``weights_only=True`` by default and mmengine 0.10
   calls ``torch.load`` without saying otherwise, so ``--resume`` fails without them;
   the alternative, switching safe loading off, is what we never do.
3. **Teaches mmengine's FLOP counter our attention**: a handle for
   ``aten::scaled_dot_product_attention`` in mmengine's default analyzer tables
   (:mod:`pvtfpn_mm.engine.flops`), added only where mmengine has none. Why: mmdet's /
   mmseg's ``get_flops`` tools would otherwise count PVT-v2 without its attention.
"""

from .compat import check_transformers_import

try:
    from . import engine, models  # 1. (registering is importing them)
except (ImportError, TypeError) as err:
    # mmpretrain 1.2 under transformers >= 4.52: one clear error, not BLIP's traceback
    check_transformers_import(err)
    raise
from .engine.flops import register_flop_counters
from .version import __version__
from .weights import allow_mmengine_checkpoints

allow_mmengine_checkpoints()  # 2.
register_flop_counters()  # 3.

__all__ = ['__version__', 'engine', 'models']
