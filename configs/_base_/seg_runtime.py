# The runtime of every mmseg config here (hooks, logging, environment): mmseg's
# default_runtime. The one place to change it for all segmentation and depth configs.
_base_ = 'mmseg::_base_/default_runtime.py'
