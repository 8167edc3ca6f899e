from .pvt_v2 import PVTv2  # noqa: F401
from .timm_features import TimmFeatures, timm_channels  # noqa: F401
