# The runtime of every mmdet config here (hooks, logging, environment): mmdet's
# default_runtime. The one place to change it for all detection configs.
_base_ = 'mmdet::_base_/default_runtime.py'
