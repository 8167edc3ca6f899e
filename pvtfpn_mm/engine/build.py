"""Building the model of one of our configs (mmdet, mmseg, mmpretrain) outside a Runner.

The config's ``custom_imports`` are honoured, its ``default_scope`` (checked by
:func:`task_of`, the one place that does) picks the registry, and nothing is downloaded
(building does not run ``init_weights``; :func:`drop_pretrained` removes what it would load).
"""

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch.nn as nn
from mmengine.config import Config

from pvtfpn_mm.weights.loading import is_pretrained_cfg

#: The codebases whose configs we build: their ``default_scope`` values.
TASKS = ('mmdet', 'mmseg', 'mmpretrain')


def task_of(cfg: Config, tasks: Sequence[str] = TASKS) -> str:
    """The codebase a config is for: its ``default_scope``, one of ``tasks``.

    Raises:
        ValueError: The config has another (or no) ``default_scope``; the message names
            the config and the value.
    """
    scope = cfg.get('default_scope')
    if scope not in tasks:
        raise ValueError(
            f'config {getattr(cfg, "filename", None)!r}: default_scope must be one of '
            f'{tuple(tasks)} (set by the codebase\'s default_runtime base config); '
            f'got {scope!r}'
        )
    return scope


def load_model_config(
    config: str | Config,
    cfg_options: dict | None = None,
    tasks: Sequence[str] = TASKS,
) -> Config:
    """Loads ``config`` (a path or a :class:`Config`), merges ``cfg_options`` and imports
    its ``custom_imports``; checks that it is a config of one of ``tasks`` (by default an
    mmdet, mmseg or mmpretrain config; :func:`task_of`)."""
    cfg = (
        config.copy()
        if isinstance(config, Config)
        else Config.fromfile(config)
    )
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    task_of(cfg, tasks)
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(**cfg['custom_imports'])
    return cfg


def build_model_from_config(
    config: str | Config, cfg_options: dict | None = None
) -> nn.Module:
    """The (uninitialized) model of ``config``, in train mode, on the CPU.

    As mmengine's ``Runner`` builds it: in the registry of the config's
    ``default_scope``, and a top-level ``data_preprocessor`` (mmpretrain's dataset configs
    put ``num_classes`` for Mixup / CutMix there) fills in the model's when the model
    names none.
    """
    from mmengine.registry import MODELS, init_default_scope

    cfg = load_model_config(config, cfg_options)
    init_default_scope(cfg.default_scope)
    model_cfg = copy.deepcopy(cfg.model)
    data_preprocessor = cfg.get('data_preprocessor')
    if isinstance(model_cfg, dict) and data_preprocessor is not None:
        model_cfg.setdefault(
            'data_preprocessor', copy.deepcopy(data_preprocessor)
        )
    return MODELS.build(model_cfg)


def drop_pretrained(node: Any) -> Any:
    """A model config without ``Pretrained`` init_cfgs, ``pretrained`` and
    ``checkpoint`` entries (a copy): its ``init_weights`` loads and downloads nothing."""
    if hasattr(node, 'to_dict'):
        node = node.to_dict()
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ('pretrained', 'checkpoint'):
                continue
            if key == 'init_cfg' and is_pretrained_cfg(value):
                out[key] = None
                continue
            if key == 'init_cfg' and isinstance(value, (list, tuple)):
                value = [c for c in value if not is_pretrained_cfg(c)] or None
            out[key] = drop_pretrained(value)
        return out
    if isinstance(node, (list, tuple)):
        return type(node)(drop_pretrained(v) for v in node)
    return node


def init_quietly(model: nn.Module) -> None:
    """``model.init_weights()`` without mmengine's log line for every parameter."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()  # type: ignore[operator]
    finally:
        logger.setLevel(level)
