import importlib.util

__all__ = []

# The heads are mmseg decode heads: only import them where mmseg is installed, so a
# detection-only install (mmdet without mmseg) can still import pvtfpn_mm.
if importlib.util.find_spec('mmseg') is not None:
    from .fpn_concat_head import FPNConcatHead
    from .fpn_depth_head import FPNDepthHead

    __all__ += ['FPNConcatHead', 'FPNDepthHead']

# Case 4 (classification): plain PyTorch/mmengine; an mmpretrain head if mmpretrain is there.
from .pyramid_cls_head import PyramidClsHead

__all__ += ['PyramidClsHead']
