"""Building the model of one of our configs (mmdet, mmseg, mmpretrain) outside a Runner.

The converter's ``--config`` check, the benchmark and the ONNX exporter build models
this way: the config's ``custom_imports`` are honoured, its ``default_scope`` picks the
registry, and nothing is downloaded (building does not run ``init_weights``).
"""

import copy

import torch.nn as nn
from mmengine.config import Config

TASKS = ('mmdet', 'mmseg', 'mmpretrain')


def load_model_config(
    config: str | Config, cfg_options: dict | None = None
) -> Config:
    """Loads ``config`` (a path or a :class:`Config`), merges ``cfg_options`` and imports
    its ``custom_imports``; checks that it is an mmdet, mmseg or mmpretrain config."""
    cfg = (
        config.copy()
        if isinstance(config, Config)
        else Config.fromfile(config)
    )
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('default_scope') not in TASKS:
        raise ValueError(
            f'config {getattr(cfg, "filename", config)!r}: default_scope must be one of '
            f'{TASKS} (set by the codebase\'s default_runtime base config); got '
            f'{cfg.get("default_scope")!r}'
        )
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(**cfg['custom_imports'])
    return cfg


def build_model_from_config(
    config: str | Config, cfg_options: dict | None = None
) -> nn.Module:
    """The (uninitialized) model of ``config``, in train mode, on the CPU.

    As mmengine's ``Runner`` builds it: a top-level ``data_preprocessor`` (mmpretrain's
    dataset configs put ``num_classes`` for Mixup / CutMix there) fills in the model's
    when the model names none.
    """
    from mmengine.registry import init_default_scope

    cfg = load_model_config(config, cfg_options)
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    elif cfg.default_scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    data_preprocessor = cfg.get('data_preprocessor')
    if isinstance(model_cfg, dict) and data_preprocessor is not None:
        model_cfg.setdefault(
            'data_preprocessor', copy.deepcopy(data_preprocessor)
        )
    return MODELS.build(model_cfg)
