"""The design notes' depth head (Case 3), for mmseg 1.x's ``DepthEstimator``."""

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from mmseg.models.utils import resize
from mmseg.utils import SampleList
from torch import Tensor

from pvtfpn_mm.registry import register_model

from .._checks import is_number
from .fpn_concat_head import FPNConcatHead


@register_model(scopes=('mmseg',))  # an mmseg decode head
class FPNDepthHead(FPNConcatHead):
    """Depth regression over pyramid levels (``fpn_design_notes.md``, Case 3).

    Fuses the levels exactly like :class:`FPNConcatHead` (resize to the first
    selected level, concatenate, 3x3 ConvModule) and regresses one channel::

        depth = sigmoid(conv_seg(dropout(fusion))) * max_depth     # in (0, max_depth)

    It is meant for mmseg's ``DepthEstimator`` segmentor and behaves like mmseg's
    ``VPDDepthHead`` there: ``forward`` returns the depth map (N, 1, h, w) at the
    finest level's size; ``loss`` resizes it (bilinear) to ``gt_depth_map`` and applies
    ``loss_decode`` (default mmseg's ``SiLogLoss``, which ignores pixels with target
    depth <= its eps, e.g. zero padding); ``predict`` resizes it to the padded input
    size and ``DepthEstimator`` crops the padding and resizes to ``ori_shape``, giving
    ``pred_depth_map`` for mmseg's ``DepthMetric``. Depth targets come from mmseg's
    ``LoadDepthAnnotation`` (e.g. ``NYUDataset``) in the same unit as ``max_depth``.

    Args:
        max_depth (float): Upper bound of the predicted depth (e.g. 10 for NYU in
            metres). Defaults to 10.0.
        in_channels (Sequence[int]): Channels of each selected level. Defaults to
            ``[256] * 4``.
        channels (int): Channels of the fused feature. Defaults to 256.
        in_index (Sequence[int]): Selected levels (as :class:`FPNConcatHead`).
            Defaults to
            ``[0, 1, 2, 3]``.
        dropout_ratio (float): Dropout2d before ``conv_seg``. Defaults to 0.0 (no
            dropout in the regression path, as mmseg's ``VPDDepthHead``).
        loss_decode (dict | Sequence[dict]): Depth loss(es), called as
            ``loss(pred, target)`` on (N, 1, H, W) maps. Defaults to
            ``dict(type='SiLogLoss')``.
        **kwargs: The other arguments of :class:`FPNConcatHead` and mmseg's
            ``BaseDecodeHead`` (``interpolate_mode='bilinear'``, ``norm_cfg=None``,
            ``act_cfg=dict(type='ReLU')``, ``align_corners=False``, ...), except
            ``num_classes`` / ``out_channels``, which are 1.

    Raises:
        ValueError: a non-positive or non-finite ``max_depth``, or ``num_classes`` /
            ``out_channels`` other than 1.
        TypeError: a non-numeric ``max_depth``.
    """

    max_depth: float

    def __init__(
        self,
        max_depth: float = 10.0,
        in_channels: Sequence[int] = (256, 256, 256, 256),
        channels: int = 256,
        in_index: Sequence[int] = (0, 1, 2, 3),
        dropout_ratio: float = 0.0,
        # mm style dict default: mmseg builds a copy, never changes it (test)
        loss_decode: dict | Sequence[dict] = dict(type='SiLogLoss'),  # noqa: B006
        **kwargs: Any,
    ) -> None:
        if not is_number(max_depth):
            raise TypeError(f'max_depth must be a number, got {max_depth!r}')
        if not (math.isfinite(max_depth) and max_depth > 0):
            raise ValueError(
                f'max_depth must be a finite positive number (e.g. 10 for NYU '
                f'in metres), got {max_depth}'
            )
        for key in ('num_classes', 'out_channels'):
            value = kwargs.pop(key, 1)
            if value != 1:
                raise ValueError(
                    f'{type(self).__name__} regresses one depth channel; {key} must be '
                    f'1 (or left out), got {value!r}'
                )
        with warnings.catch_warnings():
            # BaseDecodeHead warns about a missing binary-segmentation threshold when
            # out_channels == 1; there is no threshold in depth regression.
            warnings.filterwarnings(
                'ignore', message='threshold is not defined'
            )
            super().__init__(
                in_channels=in_channels,
                channels=channels,
                in_index=in_index,
                dropout_ratio=dropout_ratio,
                num_classes=1,
                out_channels=1,
                loss_decode=loss_decode,
                **kwargs,
            )
        self.max_depth = float(max_depth)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Returns the depth map (N, 1, h, w) in (0, max_depth) at the finest size."""
        return torch.sigmoid(self.cls_seg(self._fuse(inputs))) * self.max_depth

    def _stack_batch_gt(self, batch_data_samples: SampleList) -> Tensor:
        return torch.stack(
            [
                data_sample.gt_depth_map.data
                for data_sample in batch_data_samples
            ],
            dim=0,
        )

    def loss_by_feat(
        self, pred_depth_map: Tensor, batch_data_samples: SampleList
    ) -> dict:
        """Depth losses of ``pred_depth_map`` resized to the ``gt_depth_map`` size.

        Args:
            pred_depth_map (Tensor): Output of :meth:`forward`, (N, 1, h, w).
            batch_data_samples (list[SegDataSample]): With ``gt_depth_map``.

        Returns:
            dict[str, Tensor]: One entry per ``loss_decode`` loss name.
        """
        gt_depth_map = self._stack_batch_gt(batch_data_samples)
        pred_depth_map = resize(
            pred_depth_map,
            size=gt_depth_map.shape[2:],
            mode='bilinear',
            align_corners=self.align_corners,
        )
        losses_decode: Any = (  # mmseg's loss modules
            self.loss_decode
            if isinstance(self.loss_decode, nn.ModuleList)
            else [self.loss_decode]
        )
        loss: dict[str, Tensor] = dict()
        for loss_decode in losses_decode:
            value = loss_decode(pred_depth_map, gt_depth_map)
            name = loss_decode.loss_name
            loss[name] = loss[name] + value if name in loss else value
        return loss
