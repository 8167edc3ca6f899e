"""Strict ``init_cfg=dict(type='Pretrained', ...)`` for our necks and heads.

mmengine's ``PretrainedInit`` loads with ``strict=False``: a checkpoint that matches none
of a module's tensors only gives a warning. :class:`StrictPretrainedMixin` makes a
module load its ``Pretrained`` init_cfg itself, strictly (a mismatch raises
:class:`~pvtfpn_mm.weights.StateDictMismatchError` with a short summary), after the
other initializers of its ``init_cfg`` and of its children ran, as mmengine orders it.
``allow_partial=True`` in the dict is the explicit opt-in to load what fits; it logs
what was loaded.

``dict(type='Pretrained', checkpoint=PATH_OR_URL, prefix=None, map_location='cpu',
allow_partial=False)``: ``prefix`` selects the keys under it (``'neck.'`` of a whole
detector checkpoint; a missing trailing dot is added, as mmengine does).
"""

from typing import TYPE_CHECKING, Any

import torch.nn as nn
from mmengine.logging import print_log

from pvtfpn_mm.weights import (
    CheckpointFormatError,
    load_state_dict_partial,
    load_state_dict_strict,
    read_checkpoint,
)

if TYPE_CHECKING:  # the mixin goes before BaseModule: type-check it as one
    from mmengine.model import BaseModule as _MixinBase
else:
    _MixinBase = object

#: Keys a ``Pretrained`` init_cfg of our modules takes.
PRETRAINED_KEYS = (
    'type',
    'checkpoint',
    'prefix',
    'map_location',
    'allow_partial',
)


def split_pretrained(init_cfg: Any) -> tuple[dict | None, list]:
    """``(the Pretrained dict or None, the other init_cfg dicts)``; raises ValueError for
    more than one Pretrained entry or unknown keys in it."""
    cfgs: list = (
        []
        if init_cfg is None
        else (
            list(init_cfg)
            if isinstance(init_cfg, (list, tuple))
            else [init_cfg]
        )
    )
    pretrained = [
        c
        for c in cfgs
        if isinstance(c, dict) and c.get('type') == 'Pretrained'
    ]
    others = [
        c
        for c in cfgs
        if not (isinstance(c, dict) and c.get('type') == 'Pretrained')
    ]
    if len(pretrained) > 1:
        raise ValueError(
            f'init_cfg={init_cfg!r} has {len(pretrained)} Pretrained entries; '
            'give one'
        )
    if not pretrained:
        return None, others
    cfg = dict(pretrained[0])
    unknown = sorted(set(cfg) - set(PRETRAINED_KEYS))
    if unknown:
        raise ValueError(
            f"init_cfg=dict(type='Pretrained') takes {PRETRAINED_KEYS[1:]}, got "
            f'unknown keys {unknown} in {cfg!r}'
        )
    if not cfg.get('checkpoint'):
        raise ValueError(f'init_cfg={cfg!r} names no checkpoint')
    if not isinstance(cfg.get('allow_partial', False), bool):
        raise TypeError(
            f'init_cfg allow_partial must be True or False, got '
            f'{cfg["allow_partial"]!r}'
        )
    return cfg, others


def load_pretrained_strict(module: nn.Module, cfg: dict) -> None:
    """Loads ``cfg['checkpoint']`` (under ``cfg['prefix']``) into ``module``: strictly, or
    with ``allow_partial=True`` what fits (logged)."""
    path = cfg['checkpoint']
    checkpoint = read_checkpoint(
        path, map_location=cfg.get('map_location', 'cpu')
    )
    source = f'checkpoint {path!r}'
    state = checkpoint
    if isinstance(state, dict):
        for key in ('state_dict', 'model'):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise CheckpointFormatError(
            f'{source} holds a {type(state).__name__}, not a state dict'
        )
    prefix = cfg.get('prefix')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {
            k[len(prefix) :]: v
            for k, v in state.items()
            if k.startswith(prefix)
        }
        source += f' (prefix {prefix!r})'
        if not state:
            raise CheckpointFormatError(
                f'{source}: the checkpoint has no key under the prefix'
            )
    name = type(module).__name__
    if cfg.get('allow_partial', False):
        print_log(
            f'{name}: '
            + load_state_dict_partial(module, state, source=source),
            logger='current',
        )
    else:
        load_state_dict_strict(
            module,
            state,
            source=f'{source} for {name}',
            hint="To load only what fits (and see what), add allow_partial=True to the "
            "init_cfg dict",
        )


class StrictPretrainedMixin(_MixinBase):
    """Put before ``BaseModule`` (or a subclass) in the bases: ``init_weights`` then
    loads a ``Pretrained`` init_cfg strictly (see the module doc)."""

    init_cfg: dict | list | None  # BaseModule's

    def init_weights(self) -> None:
        pretrained, others = split_pretrained(self.init_cfg)
        if pretrained is None or getattr(self, '_is_init', False):
            super().init_weights()
            return
        full = self.init_cfg
        self.init_cfg = others or None
        try:
            super().init_weights()  # children and the other initializers
        finally:
            self.init_cfg = full
        load_pretrained_strict(self, pretrained)
