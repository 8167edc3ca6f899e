"""The design notes' feature pyramid: 1x1 laterals, top-down sum, 3x3 smoothing, P6/P7.

The equations (``fpn_design_notes.md``, "FPN Equations")::

    L_i = Conv1x1_i(C_i)                          # lateral projection, every used level
    P_top = L_top
    P_i = L_i + Upsample(P_{i+1}, size=L_i.size)  # parameter-free, exact target size
    out_i = Conv3x3_i(P_i)                        # smoothing, stride 1, padding 1

plus the extra coarser levels that RetinaNet (P6/P7 from a stride-2 3x3 conv) and Mask
R-CNN (P6 from a stride-2 max-pool) need.
"""

import warnings
from collections.abc import Sequence
from typing import Any

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from pvtfpn_mm.registry import register_model
from pvtfpn_mm.weights import parse_pretrained

from .._checks import (
    check_channels,
    check_choice,
    check_flag,
    check_index,
    check_positive_int,
    is_int,
    refuse_unknown,
)
from ..pretrained import StrictPretrainedMixin

#: Allowed values of ``extra_source``.
EXTRA_SOURCES = ('pool', 'input', 'lateral', 'output')
#: Allowed values of ``upsample_mode``.
UPSAMPLE_MODES = ('nearest', 'bilinear')


#: Keywords of mmdet's / mmseg's ``FPN`` that ``TopDownFPN`` has not, with its own way.
FPN_KEYWORDS = {
    'add_extra_convs': "extra_source ('pool' for False, 'input' for 'on_input', ...)",
    'end_level': 'leave the coarse inputs out (the backbone\'s out_indices)',
    'upsample_cfg': "upsample_mode ('nearest' or 'bilinear')",
    'no_norm_on_lateral': None,
}


@register_model()
class TopDownFPN(StrictPretrainedMixin, BaseModule):
    """Feature pyramid of the design notes, with the extra levels detectors need.

    For every used input ``C_i`` (``in_channels[start_level:]``) a 1x1 lateral conv
    gives ``L_i``; going from the coarsest level down,
    ``P_i = L_i + Upsample(P_{i+1})``, where the upsample has no parameters, is
    ``upsample_mode`` interpolation (``align_corners=False`` for bilinear) and targets
    the exact spatial size of ``L_i`` (odd sizes work); each ``P_i`` then goes through
    its own 3x3 stride-1 smoothing conv. Outputs beyond the used inputs are extra,
    ever coarser levels (P6, P7, ...) made as ``extra_source`` says.

    The module layout (``lateral_convs``; ``fpn_convs`` = the smoothing convs followed
    by the extra convs) is that of mmdet's ``FPN``, so its state dict loads one in the
    equivalent setting (see the README's table of equivalences).

    Args:
        in_channels (Sequence[int]): Channels of every input feature map passed to
            :meth:`forward`, finest first (also the unused ones before
            ``start_level``).
        out_channels (int): Channels of every output level. Defaults to 256.
        start_level (int): Index of the first input used; inputs before it are
            ignored. Negative counts from the end, as a Python index (-3: the last
            three inputs). Defaults to 0.
        num_outs (int, optional): Number of output levels. It must be at least the
            number of used inputs (``len(in_channels) - start_level``); outputs beyond
            them are extra levels. Defaults to None: the number of used inputs, no
            extra level.
        extra_source (str): How each extra level is made. Defaults to ``'pool'``.

            - ``'pool'``: max-pool (kernel 1, stride 2) of the previous output
              (mmdet ``add_extra_convs=False``; Faster/Mask R-CNN).
            - ``'input'``: the first extra level is a 3x3 stride-2 conv on the last
              used input ``C_top`` (mmdet ``'on_input'``; RetinaNet).
            - ``'lateral'``: ... on the coarsest lateral ``L_top`` (mmdet
              ``'on_lateral'``).
            - ``'output'``: ... on the coarsest smoothed output (mmdet
              ``'on_output'``).

            With a conv source, every further extra level is a 3x3 stride-2 conv on
            the previous extra level.
        relu_before_extra_convs (bool): Apply ReLU to the previous extra level before
            the second and later extra convs (as mmdet; torchvision's
            ``LastLevelP6P7`` always does). With ``extra_source='pool'`` it has no
            effect (a warning says so; mmdet's FPN ignores it there too).
            Defaults to False.
        upsample_mode (str): ``'nearest'`` or ``'bilinear'`` (``align_corners=False``).
            Defaults to ``'nearest'``.
        conv_cfg (dict, optional): Conv layer config of every conv. Defaults to None
            (``Conv2d``).
        norm_cfg (dict, optional): Norm layer config, applied after every conv
            (laterals, smoothing and extra convs; convs with a norm have no bias).
            Defaults to None.
        act_cfg (dict, optional): Activation config, applied after every conv (and
            its norm). Defaults to None: the notes' linear FPN.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to
            ``dict(type='Xavier', layer='Conv2d', distribution='uniform')``, as
            mmdet's ``FPN``. A ``dict(type='Pretrained', checkpoint=..., prefix=...)``
            loads strictly (:mod:`pvtfpn_mm.models.pretrained`; ``allow_partial=True``
            to opt in to a partial load).
        **kwargs: Refused with a ``TypeError`` naming them; for mmdet's ``FPN``
            keywords (``add_extra_convs``, ``end_level``, ...) it says to use
            ``_delete_=True`` and what ``TopDownFPN`` calls them.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument of the right type but with a bad value.

    Example:
        >>> import torch
        >>> neck = TopDownFPN([32, 64, 160, 256], 64, start_level=1, num_outs=5,
        ...                   extra_source='input').eval()
        >>> feats = [torch.rand(1, c, 67 // s + 1, 93 // s + 1)
        ...          for c, s in zip([32, 64, 160, 256], [4, 8, 16, 32])]
        >>> [tuple(o.shape[2:]) for o in neck(feats)]
        [(9, 12), (5, 6), (3, 3), (2, 2), (1, 1)]
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 256,
        start_level: int = 0,
        num_outs: int | None = None,
        extra_source: str = 'pool',
        relu_before_extra_convs: bool = False,
        upsample_mode: str = 'nearest',
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        # mm style dict default: mmengine deep-copies it, never changes it (test)
        init_cfg: dict | list[dict] | None = dict(  # noqa: B006
            type='Xavier', layer='Conv2d', distribution='uniform'
        ),
        **kwargs: Any,
    ) -> None:
        refuse_unknown(
            'TopDownFPN',
            kwargs,
            FPN_KEYWORDS,
            "mmdet's / mmseg's FPN",
            "neck=dict(_delete_=True, type='TopDownFPN', ...)",
        )
        parse_pretrained(init_cfg)  # refuse a bad Pretrained init_cfg now
        super().__init__(init_cfg=init_cfg)
        in_channels = check_channels('in_channels', in_channels)
        out_channels = check_positive_int('out_channels', out_channels)
        # an index into the inputs (Python's: -k uses the last k inputs)
        start_level = check_index('start_level', start_level, len(in_channels))
        num_used = len(in_channels) - start_level
        if num_outs is None:
            num_outs = num_used
        elif not is_int(num_outs):
            raise TypeError(
                f'num_outs must be an int or None, got {num_outs!r} '
                f'({type(num_outs).__name__})'
            )
        elif num_outs < num_used:
            raise ValueError(
                f'num_outs must be at least the number of used inputs '
                f'(len(in_channels) - start_level = {num_used}), got {num_outs}; '
                'to drop coarse inputs, do not pass them (e.g. the backbone\'s '
                'out_indices)'
            )
        check_choice('extra_source', extra_source, EXTRA_SOURCES)
        relu_before_extra_convs = check_flag(
            'relu_before_extra_convs', relu_before_extra_convs
        )
        if relu_before_extra_convs and extra_source == 'pool':
            # mmdet's FPN takes it with add_extra_convs=False and ignores it
            warnings.warn(
                "TopDownFPN: relu_before_extra_convs=True has no effect with "
                "extra_source='pool' (the extra levels are max-pooled, not convolved)",
                stacklevel=2,
            )
        check_choice('upsample_mode', upsample_mode, UPSAMPLE_MODES)

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_ins = len(in_channels)
        self.start_level = start_level
        self.num_outs = num_outs
        self.extra_source = extra_source
        self.relu_before_extra_convs = relu_before_extra_convs
        self.upsample_mode = upsample_mode

        def conv(in_ch: int, kernel_size: int, stride: int = 1) -> ConvModule:
            return ConvModule(
                in_ch,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                inplace=False,
            )

        self.lateral_convs = nn.ModuleList(
            conv(in_channels[i], 1) for i in range(start_level, self.num_ins)
        )
        # Smoothing convs, one per used input, then the extra convs (mmdet's layout).
        self.fpn_convs = nn.ModuleList(
            conv(out_channels, 3) for _ in range(num_used)
        )
        if extra_source != 'pool':
            for i in range(num_outs - num_used):
                source_ch = (
                    in_channels[-1]
                    if (i == 0 and extra_source == 'input')
                    else out_channels
                )
                self.fpn_convs.append(conv(source_ch, 3, stride=2))

    def _check_inputs(self, inputs: Sequence[Tensor]) -> None:
        """Raises an error naming expected vs received for inputs that don't fit."""
        if isinstance(inputs, Tensor) or not isinstance(inputs, Sequence):
            raise TypeError(
                f'{type(self).__name__} expects a sequence of {self.num_ins} NCHW '
                f'tensors, got {type(inputs).__name__}'
            )
        if len(inputs) != self.num_ins:
            raise ValueError(
                f'{type(self).__name__} expected {self.num_ins} input feature maps '
                f'(in_channels={self.in_channels}), got {len(inputs)}'
            )
        for i, x in enumerate(inputs):
            if not isinstance(x, Tensor):
                raise TypeError(
                    f'{type(self).__name__} input {i} must be a Tensor, got '
                    f'{type(x).__name__}'
                )
            if x.dim() != 4:
                raise ValueError(
                    f'{type(self).__name__} input {i} must be a 4D NCHW tensor, got '
                    f'shape {tuple(x.shape)}'
                )
            if x.shape[1] != self.in_channels[i]:
                raise ValueError(
                    f'{type(self).__name__} input {i} has {x.shape[1]} channels, '
                    f'expected in_channels[{i}]={self.in_channels[i]} '
                    f'(in_channels={self.in_channels}, received channels='
                    f'{[int(t.shape[1]) for t in inputs]})'
                )
        shapes = [tuple(int(d) for d in t.shape) for t in inputs]
        for i in range(1, len(inputs)):
            if shapes[i][0] != shapes[0][0]:
                raise ValueError(
                    f'{type(self).__name__} inputs have different batch sizes: shapes '
                    f'{shapes}'
                )
            if (
                shapes[i][2] > shapes[i - 1][2]
                or shapes[i][3] > shapes[i - 1][3]
            ):
                raise ValueError(
                    f'{type(self).__name__} input {i} ({shapes[i][2]}x{shapes[i][3]}) is '
                    f'larger than input {i - 1} ({shapes[i - 1][2]}x{shapes[i - 1][3]}): '
                    f'inputs must come finest first (shapes {shapes})'
                )

    def _upsample(self, x: Tensor, size: Sequence[int]) -> Tensor:
        align_corners = False if self.upsample_mode == 'bilinear' else None
        return F.interpolate(
            x, size=size, mode=self.upsample_mode, align_corners=align_corners
        )

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Builds the pyramid.

        Args:
            inputs (Sequence[Tensor]): ``len(in_channels)`` NCHW feature maps, finest
                first, with ``in_channels[i]`` channels each.

        Returns:
            tuple[Tensor]: ``num_outs`` maps of ``out_channels`` channels, finest
            first: the smoothed ``P`` of every used input, then the extra levels.
        """
        self._check_inputs(inputs)
        used = inputs[self.start_level :]
        # plain zip (_check_inputs counted them): torch 2.1's dynamo refuses
        # zip(strict=...)
        laterals = [
            conv(x)
            for conv, x in zip(self.lateral_convs, used)  # noqa: B905
        ]
        # Top-down: P_i = L_i + Upsample(P_{i+1}) at L_i's exact size.
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self._upsample(
                laterals[i], laterals[i - 1].shape[2:]
            )
        num_used = len(laterals)
        outs = [self.fpn_convs[i](laterals[i]) for i in range(num_used)]

        if self.num_outs > num_used:
            if self.extra_source == 'pool':
                for _ in range(self.num_outs - num_used):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                source = {
                    'input': used[-1],
                    'lateral': laterals[-1],
                    'output': outs[-1],
                }[self.extra_source]
                outs.append(self.fpn_convs[num_used](source))
                for i in range(num_used + 1, self.num_outs):
                    prev = (
                        F.relu(outs[-1])
                        if self.relu_before_extra_convs
                        else outs[-1]
                    )
                    outs.append(self.fpn_convs[i](prev))
        return tuple(outs)
