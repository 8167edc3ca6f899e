"""Strict ``init_cfg=dict(type='Pretrained', ...)`` for our necks and heads.

mmengine's ``PretrainedInit`` loads with ``strict=False``: a checkpoint that matches none
of a module's tensors only gives a warning. :class:`StrictPretrainedMixin` makes a
module load its ``Pretrained`` init_cfg itself (parsed by
:func:`pvtfpn_mm.weights.parse_pretrained`, loaded by
:func:`pvtfpn_mm.weights.load_pretrained_cfg`), strictly -- a mismatch raises
:class:`~pvtfpn_mm.weights.StateDictMismatchError` with a short summary -- after the
other initializers of its ``init_cfg`` and of its children ran, as mmengine orders it.
``allow_partial=True`` in the dict is the explicit opt-in to load what fits; it logs
what was loaded.
"""

from typing import TYPE_CHECKING

from pvtfpn_mm.weights import load_pretrained_cfg, parse_pretrained

if TYPE_CHECKING:  # the mixin goes before BaseModule: type-check it as one
    from mmengine.model import BaseModule as _MixinBase
else:
    _MixinBase = object


class StrictPretrainedMixin(_MixinBase):
    """Put before ``BaseModule`` (or a subclass) in the bases: ``init_weights`` then
    loads a ``Pretrained`` init_cfg strictly (see the module doc).

    A ``Pretrained`` init_cfg with unknown keys or no checkpoint is refused when the
    module is built (``__init__`` of the class using the mixin calls
    :func:`~pvtfpn_mm.weights.parse_pretrained`).
    """

    init_cfg: dict | list | None  # BaseModule's

    def init_weights(self) -> None:
        pretrained, others = parse_pretrained(self.init_cfg)
        if pretrained is None or getattr(self, '_is_init', False):
            super().init_weights()
            return
        full = self.init_cfg
        self.init_cfg = others or None
        try:
            super().init_weights()  # children and the other initializers
        finally:
            self.init_cfg = full
        load_pretrained_cfg(self, pretrained)
