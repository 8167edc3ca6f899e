"""The design notes' segmentation head (Case 2): resize, concat, conv, classify."""

from collections.abc import Sequence
from typing import Any

import torch
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from torch import Tensor

from pvtfpn_mm.registry import register_model
from pvtfpn_mm.weights import parse_pretrained

from .._checks import (
    check_channels,
    check_choice,
    check_index,
    check_indices,
    check_positive_int,
)
from ..pretrained import StrictPretrainedMixin

#: Allowed values of ``interpolate_mode``: the modes ``F.interpolate`` has for 4-D maps.
INTERPOLATE_MODES = ('bilinear', 'nearest', 'bicubic', 'area', 'nearest-exact')
#: The modes that take ``align_corners``.
ALIGN_CORNERS_MODES = ('bilinear', 'bicubic')


def check_levels(
    name: str, in_channels: Any, in_index: Any, channels: Any
) -> None:
    """Checks ``in_channels`` / ``in_index`` / ``channels`` of a multi-level head as
    mmseg's multiple-select heads take them: lists (or tuples) of one entry per
    selected level, ``in_index`` with Python's indexing (negative from the end, any
    order, repeats); raises a TypeError / ValueError naming the argument and value."""
    channels_list = check_channels(f'{name}: in_channels', in_channels)
    indices = check_indices(f'{name}: in_index', in_index)
    if len(channels_list) != len(indices):
        raise ValueError(
            f'{name}: in_channels={channels_list} and in_index={list(indices)} must '
            'have one entry per selected level each'
        )
    check_positive_int(f'{name}: channels', channels)


@register_model(scopes=('mmseg',))  # an mmseg decode head
class FPNConcatHead(StrictPretrainedMixin, BaseDecodeHead):
    """Concat head over pyramid levels (``fpn_design_notes.md``, Case 2).

    Every selected level is resized to the size of the first selected one (list the
    finest first for the notes' head), the maps are concatenated along channels, fused by
    one 3x3 ConvModule (``sum(in_channels) -> channels``, with ``norm_cfg`` and
    ``act_cfg``) and classified per pixel by ``conv_seg`` (1x1, after dropout)::

        fusion = cat([P_a, up(P_b), up(P_c), ...])   # at P_a's size
        logits = conv_seg(dropout(ConvModule3x3(fusion)))

    The output is at the finest level's resolution (1/4 of the input for PVT-v2);
    mmseg resizes it to the label/image size in the loss and in prediction.

    Args:
        in_channels (Sequence[int]): Channels of each selected level. Defaults to
            ``[256] * 4`` (the four outputs of ``TopDownFPN``).
        channels (int): Channels of the fused feature before ``conv_seg``. Defaults
            to 256.
        in_index (Sequence[int]): Indices of the selected levels in the neck's
            outputs, as mmseg's heads take them: negative ones count from the end
            (``[-2, -1]``: the two coarsest), any order, repeats allowed; the output
            has the size of the first. Defaults to ``[0, 1, 2, 3]``.
        input_transform (str): Must be ``'multiple_select'`` (the head resizes and
            concatenates itself). Defaults to ``'multiple_select'``.
        interpolate_mode (str): How the other levels are resized: a mode of
            ``F.interpolate`` for 4-D maps (:data:`INTERPOLATE_MODES`; ``'bilinear'``
            and ``'bicubic'`` take ``align_corners`` from the ``align_corners``
            argument, default False). Defaults to ``'bilinear'``, as in the notes.
        **kwargs: The other arguments of mmseg's ``BaseDecodeHead`` (``num_classes``
            (required), ``dropout_ratio=0.1``, ``norm_cfg=None``,
            ``act_cfg=dict(type='ReLU')``, ``loss_decode``, ``align_corners=False``,
            ...).

    A ``Pretrained`` ``init_cfg`` loads strictly (:mod:`pvtfpn_mm.models.pretrained`).

    Raises:
        TypeError: ``in_channels`` / ``in_index`` not lists of ints (e.g. an int),
            ``channels`` not an int.
        ValueError: ``input_transform`` other than ``'multiple_select'``, a bad
            ``interpolate_mode``, ``in_index`` of another length than
            ``in_channels``, non-positive channels, or (in :meth:`forward`) an
            ``in_index`` outside the inputs or a selected input whose channels differ
            from ``in_channels``.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (256, 256, 256, 256),
        channels: int = 256,
        in_index: Sequence[int] = (0, 1, 2, 3),
        input_transform: str = 'multiple_select',
        interpolate_mode: str = 'bilinear',
        **kwargs: Any,
    ) -> None:
        if input_transform != 'multiple_select':
            raise ValueError(
                f"{type(self).__name__} needs input_transform='multiple_select' (it "
                f'resizes and concatenates the levels itself), got {input_transform!r}'
            )
        check_choice('interpolate_mode', interpolate_mode, INTERPOLATE_MODES)
        check_levels(type(self).__name__, in_channels, in_index, channels)
        for name in ('num_classes', 'out_channels'):
            if kwargs.get(name) is not None:
                check_positive_int(name, kwargs[name])
        # refuse a bad Pretrained init_cfg now
        parse_pretrained(kwargs.get('init_cfg'))
        super().__init__(
            in_channels=list(in_channels),
            channels=channels,
            in_index=list(in_index),
            input_transform=input_transform,
            **kwargs,
        )
        self.interpolate_mode = interpolate_mode
        self.fusion_conv = ConvModule(
            sum(self.in_channels),
            self.channels,
            3,
            padding=1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg,
        )

    def _fuse(self, inputs: Sequence[Tensor]) -> Tensor:
        """Selects, resizes to the first selected level, concatenates and fuses."""
        for i, index in enumerate(self.in_index):
            check_index(f'in_index[{i}]', index, len(inputs))
        feats: list[Tensor] = self._transform_inputs(inputs)
        # plain zip: torch 2.1's dynamo refuses zip(strict=...)
        for i, (x, ch) in enumerate(zip(feats, self.in_channels)):  # noqa: B905
            if x.shape[1] != ch:
                raise ValueError(
                    f'{type(self).__name__}: input {self.in_index[i]} has '
                    f'{x.shape[1]} channels, expected in_channels[{i}]={ch} '
                    f'(in_channels={self.in_channels}, in_index={self.in_index})'
                )
        size = feats[0].shape[2:]
        align_corners = (
            self.align_corners
            if self.interpolate_mode in ALIGN_CORNERS_MODES
            else None
        )
        feats = [feats[0]] + [
            resize(
                x,
                size=size,
                mode=self.interpolate_mode,
                align_corners=align_corners,
            )
            for x in feats[1:]
        ]
        return self.fusion_conv(torch.cat(feats, dim=1))

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Returns per-pixel class logits at the first selected level's size."""
        return self.cls_seg(self._fuse(inputs))
