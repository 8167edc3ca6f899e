"""Case 4 of the design notes, classification from the pyramid: GAP + linear.

::

    cls_vector = GAP(P_coarsest)                   # F.adaptive_avg_pool2d(P, 1).flatten(1)
    logits = Linear(dropout(cls_vector))

:class:`PyramidClsHead` always works from Python (``head(pyramid) -> logits``). When
mmpretrain is installed it is also an mmpretrain head: it then derives from
mmpretrain's ``ClsHead`` (so ``loss`` / ``predict`` with ``DataSample``s, ``topk``,
``cal_acc`` and the ``loss`` config are mmpretrain's own) and is registered in
mmpretrain's ``MODELS``, for an ``ImageClassifier`` whose neck is a pyramid (e.g.
``TopDownFPN``) -- see ``configs/examples/``.
"""

from collections.abc import Sequence
from typing import Any

import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from pvtfpn_mm.compat import check_transformers_import
from pvtfpn_mm.registry import register_model
from pvtfpn_mm.weights import parse_pretrained

from .._checks import check_index, check_positive_int, check_rate
from ..pretrained import StrictPretrainedMixin

try:
    from mmpretrain.models.heads import ClsHead as _HeadBase

    #: Whether mmpretrain is importable (the head is then an mmpretrain ``ClsHead``).
    MMPRETRAIN_AVAILABLE = True
except ImportError as err:
    # installed but broken by its transformers: say so instead of going without it
    check_transformers_import(err)
    _HeadBase = BaseModule
    MMPRETRAIN_AVAILABLE = False

#: Arguments that only mmpretrain's ``ClsHead`` takes.
MMPRETRAIN_HEAD_ARGS = ('loss', 'topk', 'cal_acc')


@register_model(scopes=('mmpretrain',))
class PyramidClsHead(StrictPretrainedMixin, _HeadBase):
    """Global-average-pools one pyramid level (the coarsest by default) and classifies it.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the pooled level. Defaults to 256 (a
            ``TopDownFPN`` output).
        in_index (int): Which level of the input tuple to pool; levels come finest
            first, so -1 is the coarsest. Defaults to -1.
        dropout_ratio (float): Dropout before the linear layer, in [0, 1]. Defaults to
            0 (the notes' head).
        init_cfg (dict, optional): Initialization. Defaults to
            ``dict(type='Normal', layer='Linear', std=0.01)``, as mmpretrain's
            ``LinearClsHead``.
        **kwargs: With mmpretrain: the other arguments of its ``ClsHead`` --
            ``loss=dict(type='CrossEntropyLoss', loss_weight=1.0)``, ``topk=(1, )``,
            ``cal_acc=False``. Without mmpretrain none is accepted.

    Raises:
        TypeError: A non-int ``num_classes`` / ``in_channels`` / ``in_index`` or a
            non-number ``dropout_ratio``.
        ValueError: A non-positive ``num_classes`` / ``in_channels``, a
            ``dropout_ratio`` outside [0, 1], or (in :meth:`forward`) an ``in_index``
            outside the input or a level with other than ``in_channels`` channels.
        ImportError: mmpretrain's arguments without mmpretrain.

    Example:
        >>> import torch
        >>> head = PyramidClsHead(num_classes=10, in_channels=256)
        >>> pyramid = [torch.rand(2, 256, s, s) for s in (56, 28, 14, 7)]
        >>> head(pyramid).shape
        torch.Size([2, 10])
    """

    num_classes: int
    in_channels: int
    in_index: int
    dropout: nn.Module
    fc: nn.Linear

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        in_index: int = -1,
        dropout_ratio: float = 0.0,
        # mm style dict default: mmengine deep-copies it, never changes it (test)
        init_cfg: dict | None = dict(type='Normal', layer='Linear', std=0.01),  # noqa: B006
        **kwargs: Any,
    ) -> None:
        num_classes = check_positive_int('num_classes', num_classes)
        in_channels = check_positive_int('in_channels', in_channels)
        in_index = check_index('in_index', in_index)
        dropout_ratio = check_rate('dropout_ratio', dropout_ratio)
        # a Pretrained init_cfg loads strictly; refuse bad ones now
        parse_pretrained(init_cfg)
        if MMPRETRAIN_AVAILABLE:
            super().__init__(init_cfg=init_cfg, **kwargs)
        else:
            if kwargs:
                raise ImportError(
                    f'{sorted(kwargs)} are arguments of mmpretrain\'s ClsHead (loss, '
                    'predict); install mmpretrain to use them, or call the head on a '
                    'pyramid for logits'
                )
            super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.in_index = in_index
        self.dropout = (
            nn.Dropout(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        )
        self.fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Sequence[Tensor]) -> Tensor:
        """The pooled level, ``(N, in_channels)``."""
        if isinstance(feats, Tensor) or not isinstance(feats, Sequence):
            raise TypeError(
                f'{type(self).__name__} expects a sequence of NCHW pyramid levels, got '
                f'{type(feats).__name__}'
            )
        check_index('in_index', self.in_index, len(feats))
        x = feats[self.in_index]
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__}: level {self.in_index} has shape '
                f'{tuple(x.shape)}, expected (N, in_channels={self.in_channels}, H, W)'
            )
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """Class logits ``(N, num_classes)`` from a pyramid (finest first)."""
        return self.fc(self.dropout(self.pre_logits(feats)))
