"""PVT-v2 backbone (`PVT v2: Improved Baselines with Pyramid Vision Transformer
<https://arxiv.org/abs/2106.13797>`_) for mmdet and mmseg.

Small parts first (patch embedding, spatial-reduction attention, depthwise-conv MLP,
block, stage), then :class:`PVTv2`. The variants are data: :data:`ARCH_SETTINGS`.

Tokens travel between the parts as contiguous ``(B, N, C)`` tensors, which are also
the memory of an ``(B, H, W, C)`` image. Wherever a convolution needs ``NCHW`` it gets
the *channels-last view* ``x.reshape(B, H, W, C).permute(0, 3, 1, 2)``: oneDNN then
convolves in channels-last, returns channels-last, and ``flatten(2).transpose(1, 2)``
turns the result back into tokens without a copy. (timm's ``transpose(1, 2).view(...)``
gives the same strides except for a batch of one, where the size-1 batch dimension's
stride makes PyTorch miss the channels-last layout and copy to ``NCHW`` -- and then
convolve depthwise several times slower -- twice per block.)

State-dict layout (``'ours'`` in :mod:`pvtfpn_mm.weights`): ``stages.{i}.patch_embed``,
``stages.{i}.blocks.{j}`` (``norm1, attn.{q,kv,proj,sr,norm}, norm2,
mlp.{fc1,dwconv,fc2}``) and ``stages.{i}.norm``. The parameters are exactly timm's
``pvt_v2_*`` (without the classifier head), only named per stage.
"""

import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule, initialize
from timm.layers import DropPath, trunc_normal_

from pvtfpn_mm.compat import (
    calculate_drop_path_rates,
    is_autocast_enabled,
    is_compiling,
)
from pvtfpn_mm.models.backbones.mixffn_fused import (
    FUSED_AUTOGRAD_MIN_BYTES,
    FUSED_MIN_BYTES,
    ONEDNN_MIN_BYTES,
    MixFFNFunction,
    any_global_module_hook,
    has_hooks,
    mixffn_forward,
    use_onednn_matmul,
)
from pvtfpn_mm.models.backbones.onednn_ops import (
    ATTENTION_MIN_SCORES,
    onednn_attention,
    onednn_linear,
)
from pvtfpn_mm.registry import register_model
from pvtfpn_mm.weights import load_pretrained, parse_pretrained

from .._checks import (
    check_flag,
    check_frozen_stages,
    check_indices,
    check_per_stage,
    check_positive_int,
    check_rate,
    is_int,
    is_number,
    refuse_unknown,
)

#: Per-variant settings, as in timm's and the official ``pvt_v2_*`` constructors.
ARCH_SETTINGS: dict[str, dict] = {
    'b0': dict(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
    'b1': dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 2, 2)),
    'b2': dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3)),
    'b3': dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3)),
    'b4': dict(embed_dims=(64, 128, 320, 512), depths=(3, 8, 27, 3)),
    'b5': dict(
        embed_dims=(64, 128, 320, 512),
        depths=(3, 6, 40, 3),
        mlp_ratios=(4, 4, 4, 4),
    ),
    'b2_li': dict(
        embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3), linear=True
    ),
}
#: Settings every variant shares unless its entry in :data:`ARCH_SETTINGS` says otherwise.
ARCH_DEFAULTS = dict(
    num_heads=(1, 2, 5, 8),
    sr_ratios=(8, 4, 2, 1),
    mlp_ratios=(8, 8, 4, 4),
    linear=False,
)
#: LayerNorm eps of the blocks' and the stages' norms (official, timm and mmdet alike).
NORM_EPS = 1e-6
#: Output size of the average pooling in linear spatial-reduction attention (b2_li).
LINEAR_SR_POOL_SIZE = 7


def arch_settings(arch: str) -> dict:
    """The full per-stage settings of a variant of :data:`ARCH_SETTINGS`.

    Raises:
        ValueError: ``arch`` is not a key of :data:`ARCH_SETTINGS`.
    """
    if not isinstance(arch, str) or arch not in ARCH_SETTINGS:
        raise ValueError(
            f'Unknown PVT-v2 arch {arch!r}; expected one of {sorted(ARCH_SETTINGS)}'
        )
    return {**ARCH_DEFAULTS, **ARCH_SETTINGS[arch]}


def _nhwc_as_nchw(x: torch.Tensor, hw_shape: tuple[int, int]) -> torch.Tensor:
    """``(B, N, C)`` tokens as a channels-last ``(B, C, H, W)`` view (no copy)."""
    return x.reshape(x.shape[0], hw_shape[0], hw_shape[1], x.shape[2]).permute(
        0, 3, 1, 2
    )


def _nchw_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` as ``(B, H*W, C)`` tokens (a view when ``x`` is channels-last)."""
    return x.flatten(2).transpose(1, 2)


def _cpu_kernels_allowed(x: torch.Tensor) -> bool:
    """Whether our CPU kernels (the blocked MLP, oneDNN's linear layers) may stand in for
    module calls, as far as the whole process is concerned: not tracing or compiling,
    a plain CPU tensor, no autocast, no functorch transform, no global module hook."""
    return not (
        # Tracing first: torch 2.1's dynamo cannot evaluate type(x) below.
        is_compiling()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or type(x) is not torch.Tensor
        or x.device.type != 'cpu'
        or is_autocast_enabled('cpu')
        or torch._C._are_functorch_transforms_active()
        or any_global_module_hook()
    )


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: a strided convolution and a LayerNorm.

    Args:
        in_channels (int): Input channels.
        embed_dims (int): Output channels.
        patch_size (int): Kernel size; the padding is ``patch_size // 2``.
        stride (int): Stride.
        norm_eps (float): LayerNorm eps. Defaults to 1e-5.
    """

    def __init__(
        self,
        in_channels: int,
        embed_dims: int,
        patch_size: int,
        stride: int,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            in_channels,
            embed_dims,
            patch_size,
            stride=stride,
            padding=patch_size // 2,
        )
        self.norm = nn.LayerNorm(embed_dims, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B, C, H, W)`` -> ``(B, H'*W', C')`` tokens and ``(H', W')``."""
        if x.device.type == 'cpu' and not x.is_contiguous(
            memory_format=torch.channels_last
        ):
            # The images (stage 0): a channels-last copy makes oneDNN return channels-last,
            # whose tokens the LayerNorm takes as they are (an NCHW output it would copy).
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.proj(x)
        hw_shape = (x.shape[2], x.shape[3])
        return self.norm(_nchw_to_tokens(x)), hw_shape


class SpatialReductionAttention(nn.Module):
    """Multi-head attention whose keys and values come from a spatially reduced input.

    With ``linear=False`` the reduction is a ``sr_ratio`` x ``sr_ratio`` strided
    convolution (none when ``sr_ratio == 1``); with ``linear=True`` (PVT-v2-li) it is an
    adaptive average pooling to 7 x 7, a 1 x 1 convolution and a GELU. The attention is
    :func:`torch.nn.functional.scaled_dot_product_attention`.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Attention heads; must divide ``embed_dims``.
        sr_ratio (int): Spatial-reduction ratio. Defaults to 1.
        linear (bool): Linear spatial-reduction attention. Defaults to False.
        qkv_bias (bool): Bias in the query and key/value projections. Defaults to True.
        attn_drop (float): Dropout on the attention weights. Defaults to 0.
        proj_drop (float): Dropout after the output projection. Defaults to 0.
        norm_eps (float): eps of the LayerNorm after the reduction. Defaults to 1e-5.
    """

    # None without a spatial reduction (sr_ratio 1, not linear): set together
    sr: nn.Conv2d | None
    norm: nn.LayerNorm | None
    #: Let oneDNN compute ``q``, ``kv``, ``proj`` (see :meth:`_linear`) and, without
    #: attention dropout and with at least :data:`.onednn_ops.ATTENTION_MIN_SCORES`
    #: scores per head, the attention (:func:`.onednn_ops.onednn_attention`) on the CPU
    #: (set False on a module or the class to compare).
    onednn: bool = True

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        sr_ratio: int = 1,
        linear: bool = False,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.attn_drop = attn_drop
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.kv = nn.Linear(embed_dims, embed_dims * 2, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        self.pool = (
            nn.AdaptiveAvgPool2d(LINEAR_SR_POOL_SIZE) if linear else None
        )
        self.act = nn.GELU() if linear else None
        if linear or sr_ratio > 1:
            kernel = 1 if linear else sr_ratio
            self.sr = nn.Conv2d(embed_dims, embed_dims, kernel, stride=kernel)
            self.norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        else:
            self.sr = None
            self.norm = None

    def _linear(
        self, layer: nn.Module, x: torch.Tensor, onednn: bool
    ) -> torch.Tensor:
        """``layer(x)``; by oneDNN's matmul (:func:`.onednn_ops.onednn_linear`, about
        twice MKL's rate on AMD CPUs) where nobody could tell: ``onednn`` (see
        :meth:`forward`), a stock ``nn.Linear`` without hooks."""
        if onednn and type(layer) is nn.Linear and not has_hooks(layer):
            return onednn_linear(x, layer.weight, layer.bias)
        return layer(x)

    def forward(
        self, x: torch.Tensor, hw_shape: tuple[int, int]
    ) -> torch.Tensor:
        B, N, C = x.shape
        onednn = (
            self.onednn and _cpu_kernels_allowed(x) and use_onednn_matmul(x)
        )
        q = (
            self._linear(self.q, x, onednn)
            .view(B, N, self.num_heads, self.head_dims)
            .transpose(1, 2)
        )
        if self.sr is not None:
            assert self.norm is not None  # built with sr
            x = _nhwc_as_nchw(x, hw_shape)
            if self.pool is not None:
                x = self.pool(x)
            x = self.norm(_nchw_to_tokens(self.sr(x)))
            if self.act is not None:
                x = self.act(x)
        kv = (
            self._linear(self.kv, x, onednn)
            .view(B, -1, 2, self.num_heads, self.head_dims)
            .permute(2, 0, 3, 1, 4)
        )
        k, v = kv.unbind(0)
        dropout = self.attn_drop if self.training else 0.0
        if (
            onednn
            and dropout == 0.0
            and N * k.shape[2] >= ATTENTION_MIN_SCORES
        ):
            x = onednn_attention(q, k, v)
        else:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self._linear(self.proj, x, onednn))


class MixFFN(nn.Module):
    """MLP with a 3 x 3 depthwise convolution between its two linear layers.

    On the CPU, :func:`~.mixffn_fused.mixffn_forward` computes it by blocks of image
    rows that stay in the cache (the hidden tensor is 4-8 times the input; see
    :mod:`.mixffn_fused`), where the hidden tensors of the batch are large
    (:data:`~.mixffn_fused.FUSED_MIN_BYTES`); with autograd, where they are larger
    still (:data:`~.mixffn_fused.FUSED_AUTOGRAD_MIN_BYTES`),
    :class:`~.mixffn_fused.MixFFNFunction` does the same and recomputes them block by
    block in the backward pass instead of keeping them. Where those kernels multiply
    with oneDNN (:func:`~.mixffn_fused.use_onednn_matmul`: fp32, twice MKL's rate on
    AMD CPUs), a smaller limit applies to both
    (:data:`~.mixffn_fused.ONEDNN_MIN_BYTES`). That path calls no submodule,
    so it is taken only when nothing could tell the difference: no hook on ``fc1``,
    ``relu``, ``dwconv``, ``act``, ``drop``, ``fc2`` (nor a global module hook), the
    submodules of the stock types, dropout inactive, no autocast, no functorch
    transform, not tracing or compiling. Otherwise (and with :attr:`fused` set to
    False) the submodules are called one after another.

    Args:
        embed_dims (int): Input and output channels.
        hidden_dims (int): Hidden channels.
        drop (float): Dropout after the activation and after ``fc2``. Defaults to 0.
        extra_relu (bool): ReLU after ``fc1`` (PVT-v2-li). Defaults to False.
    """

    #: Allow the row-blocked CPU path (set False on a module or the class to compare).
    fused: bool = True

    def __init__(
        self,
        embed_dims: int,
        hidden_dims: int,
        drop: float = 0.0,
        extra_relu: bool = False,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.relu = nn.ReLU() if extra_relu else nn.Identity()
        self.dwconv = nn.Conv2d(
            hidden_dims, hidden_dims, 3, padding=1, groups=hidden_dims
        )
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dims, embed_dims)

    def _fused_path(self, x: torch.Tensor) -> str | None:
        """``'no_grad'`` or ``'autograd'`` when the row-blocked CPU path gives what the
        module calls would, to every observer (see the class docstring); else None."""
        if (
            not self.fused
            or not _cpu_kernels_allowed(x)
            or (self.training and self.drop.p > 0)
        ):
            return None
        children = (
            self.fc1,
            self.relu,
            self.dwconv,
            self.act,
            self.drop,
            self.fc2,
        )
        if any(has_hooks(m) for m in children):
            return None
        dw = self.dwconv
        if not (
            type(self.fc1) is nn.Linear
            and type(self.fc2) is nn.Linear
            and type(self.relu) in (nn.ReLU, nn.Identity)
            and type(self.act) is nn.GELU
            and self.act.approximate == 'none'
            and type(dw) is nn.Conv2d
            and dw.padding_mode == 'zeros'
            and dw.kernel_size == (3, 3)
            and dw.stride == (1, 1)
            and dw.padding == (1, 1)
            and dw.dilation == (1, 1)
            and dw.groups == dw.in_channels == dw.out_channels
        ):
            return None
        # Blocks pay only where the hidden tensors are too large for the cache (and,
        # with autograd, where that outweighs recomputing fc1 in the backward pass),
        # or where the kernels multiply with oneDNN (twice MKL's rate on some CPUs).
        hidden_bytes = (
            x.shape[0] * x.shape[1] * self.fc1.out_features * x.element_size()
        )
        onednn = use_onednn_matmul(x)
        if not torch.is_grad_enabled() or not (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        ):
            limit = FUSED_MIN_BYTES
            if onednn:
                limit = min(limit, ONEDNN_MIN_BYTES)
            return 'no_grad' if hidden_bytes >= limit else None
        limit = FUSED_AUTOGRAD_MIN_BYTES
        if onednn:
            limit = min(limit, ONEDNN_MIN_BYTES)
        return 'autograd' if hidden_bytes >= limit else None

    def forward(
        self, x: torch.Tensor, hw_shape: tuple[int, int]
    ) -> torch.Tensor:
        path = self._fused_path(x)
        if path is not None:
            args = (
                x,
                hw_shape,
                self.fc1.weight,
                self.fc1.bias,
                self.dwconv.weight,
                self.dwconv.bias,
                self.fc2.weight,
                self.fc2.bias,
                type(self.relu) is nn.ReLU,
            )
            return (
                mixffn_forward(*args)
                if path == 'no_grad'
                else MixFFNFunction.apply(*args)
            )
        x = self.relu(self.fc1(x))
        x = self.act(_nchw_to_tokens(self.dwconv(_nhwc_as_nchw(x, hw_shape))))
        return self.drop(self.fc2(self.drop(x)))


class PVTBlock(nn.Module):
    """Pre-norm transformer block: spatial-reduction attention, then :class:`MixFFN`.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Attention heads.
        mlp_ratio (float): Hidden channels of the MLP over ``embed_dims``.
        sr_ratio (int): Spatial-reduction ratio of the attention.
        linear (bool): Linear spatial-reduction attention (and the MLP's extra ReLU).
        qkv_bias (bool): Bias in the query and key/value projections. Defaults to True.
        drop (float): Dropout after the projections. Defaults to 0.
        attn_drop (float): Dropout on the attention weights. Defaults to 0.
        drop_path (float): Stochastic-depth rate of both branches. Defaults to 0.
        embed_norm_eps (float): eps of the attention's reduction LayerNorm.
            Defaults to 1e-5.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        mlp_ratio: float,
        sr_ratio: int,
        linear: bool,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        embed_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims, eps=NORM_EPS)
        self.attn = SpatialReductionAttention(
            embed_dims,
            num_heads,
            sr_ratio=sr_ratio,
            linear=linear,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=drop,
            norm_eps=embed_norm_eps,
        )
        self.norm2 = nn.LayerNorm(embed_dims, eps=NORM_EPS)
        self.mlp = MixFFN(
            embed_dims,
            int(embed_dims * mlp_ratio),
            drop=drop,
            extra_relu=linear,
        )
        self.drop_path = (
            DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        )

    def forward(
        self, x: torch.Tensor, hw_shape: tuple[int, int]
    ) -> torch.Tensor:
        # Out of place: what attn / mlp / drop_path returned stays as they returned it.
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape))
        return x + self.drop_path(self.mlp(self.norm2(x), hw_shape))


class PVTStage(nn.Module):
    """A patch embedding, ``depth`` blocks and a LayerNorm.

    Args:
        in_channels (int): Input channels.
        embed_dims (int): Channels of the stage.
        depth (int): Number of blocks.
        patch_size (int): Kernel size of the patch embedding.
        stride (int): Stride of the patch embedding.
        drop_path (Sequence[float]): Stochastic-depth rate of each block.
        with_cp (bool): Gradient checkpointing of each block. Defaults to False.
        embed_norm_eps (float): eps of the patch-embedding and spatial-reduction
            LayerNorms. Defaults to 1e-5.
        **block_kwargs: :class:`PVTBlock` arguments.
    """

    def __init__(
        self,
        in_channels: int,
        embed_dims: int,
        depth: int,
        patch_size: int,
        stride: int,
        drop_path: Sequence[float],
        with_cp: bool = False,
        embed_norm_eps: float = 1e-5,
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.patch_embed = OverlapPatchEmbed(
            in_channels,
            embed_dims,
            patch_size,
            stride,
            norm_eps=embed_norm_eps,
        )
        self.blocks = nn.ModuleList(
            PVTBlock(
                embed_dims,
                drop_path=drop_path[j],
                embed_norm_eps=embed_norm_eps,
                **block_kwargs,
            )
            for j in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dims, eps=NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C', H', W')``, a channels-last view."""
        x, hw_shape = self.patch_embed(x)
        for block in self.blocks:
            if self.with_cp and torch.is_grad_enabled():
                # The block's __call__ (hooks fire as without checkpointing); a
                # module itself trips torch 2.1's dynamo (NNModuleVariable.get_name).
                x = cp.checkpoint(
                    block.__call__, x, hw_shape, use_reentrant=False
                )
            else:
                x = block(x, hw_shape)
        return _nhwc_as_nchw(self.norm(x), hw_shape)


#: Keywords of other backbones that reach ``PVTv2`` when a config replaces a ``_base_``
#: backbone without ``_delete_=True`` (mmdet's ResNet and PyramidVisionTransformerV2),
#: with what ``PVTv2`` calls them.
FOREIGN_KEYWORDS = {
    'num_layers': 'depths',
    'pretrained': "init_cfg=dict(type='Pretrained', checkpoint=...)",
    'convert_weights': None,
    'pretrain_img_size': None,
    'num_stages': 'len(depths)',
    'patch_sizes': None,
    'strides': None,
    'paddings': None,
    'use_abs_pos_embed': None,
    'norm_after_stage': None,
    'use_conv_ffn': None,
    'act_cfg': None,
    'norm_cfg': None,
    'depth': 'arch',
    'style': None,
    'stem_channels': None,
    'base_channels': None,
    'deep_stem': None,
    'avg_down': None,
    'dilations': None,
    'dcn': None,
    'stage_with_dcn': None,
    'plugins': None,
    'zero_init_residual': None,
}


def _padding(conv: nn.Conv2d) -> tuple[int, ...]:
    """The padding of a convolution built with numbers (not ``'same'`` / ``'valid'``)."""
    return cast('tuple[int, ...]', conv.padding)


def _tracing() -> bool:
    """Whether torch.jit / torch.compile / torch.export is tracing (input checks on
    symbolic sizes would only add guards there)."""
    is_compiling = getattr(
        getattr(torch, 'compiler', None), 'is_compiling', None
    )
    return torch.jit.is_tracing() or bool(
        is_compiling is not None and is_compiling()
    )


@register_model()
class PVTv2(BaseModule):
    """PVT-v2 backbone (`PVT v2: Improved Baselines with Pyramid Vision Transformer
    <https://arxiv.org/abs/2106.13797>`_).

    One class for every variant: ``arch`` picks the per-stage settings of
    :data:`ARCH_SETTINGS`, and any of them can be overridden. Given the same weights,
    the features equal timm's ``pvt_v2_*`` (``features_only=True``); with
    ``embed_norm_eps=1e-6`` they equal mmdet's ``PyramidVisionTransformerV2``.

    Args:
        arch (str): ``'b0'`` ... ``'b5'`` or ``'b2_li'``. Defaults to ``'b0'``.
        embed_dims (Sequence[int], optional): Channels of each stage.
            Defaults to None (from ``arch``).
        depths (Sequence[int], optional): Blocks in each stage; its length is the
            number of stages. Defaults to None (from ``arch``).
        num_heads (Sequence[int], optional): Attention heads of each stage.
            Defaults to None (from ``arch``).
        sr_ratios (Sequence[int], optional): Spatial-reduction ratio of each stage.
            Defaults to None (from ``arch``).
        mlp_ratios (Sequence[float], optional): MLP hidden-channel ratio of each stage.
            Defaults to None (from ``arch``).
        linear (bool, optional): Linear spatial-reduction attention (PVT-v2-li).
            Defaults to None (from ``arch``: True for ``'b2_li'`` only).
        in_channels (int): Input channels. Defaults to 3.
        qkv_bias (bool): Bias in the query and key/value projections. Defaults to True.
        drop_rate (float): Dropout after the attention and MLP projections.
            Defaults to 0.
        attn_drop_rate (float): Dropout on the attention weights. Defaults to 0.
        drop_path_rate (float): Stochastic-depth rate, rising linearly over all blocks
            from 0 to this value. Defaults to 0.
        out_indices (Sequence[int] | int): Stages whose outputs :meth:`forward` returns,
            in stage order whatever the order given; negative indices count from the
            last stage; an int selects one stage. Defaults to (0, 1, 2, 3).
        frozen_stages (int): Stages ``0 .. frozen_stages`` (patch embedding, blocks and
            norm) are frozen: eval mode, no gradients. -1 (or less) freezes nothing.
            Defaults to -1.
        norm_eval (bool): Keep the normalization layers in eval mode while training.
            PVT-v2 has only LayerNorms, which behave the same in both modes; the
            option is accepted for the mmdet backbone interface. Defaults to False.
        with_cp (bool): Gradient checkpointing of every block: recompute the block's
            activations in the backward pass instead of storing them. Defaults to False.
        embed_norm_eps (float): eps of the LayerNorms in the patch embeddings and in
            the spatial-reduction attention. 1e-5 as in the official model and timm;
            1e-6 reproduces mmdet's ``PyramidVisionTransformerV2``. Defaults to 1e-5.
        init_cfg (dict | list[dict], optional): ``dict(type='Pretrained',
            checkpoint=PATH_OR_URL, prefix=None, allow_partial=False)`` loads an
            ImageNet or detector checkpoint in any format of
            :mod:`pvtfpn_mm.weights.formats`, strictly (``allow_partial=True``: what
            fits, logged). None initializes like timm. As in every mmengine
            ``BaseModule``, this happens in :meth:`init_weights` (which the runner
            calls), not in the constructor. Defaults to None.
        **kwargs: Refused with a ``TypeError`` that names them; keywords of mmdet's
            ResNet / ``PyramidVisionTransformerV2`` (``num_layers``, ``depth``,
            ``pretrained``, ...) mean a config replaced a ``_base_`` backbone without
            ``_delete_=True``, and the message says so.

    Attributes:
        min_input_size (int): The smallest input side the model takes, from its
            convolutions: 29 for every variant but ``b2_li`` (1).

    Raises:
        TypeError: An argument of the wrong type (bools are not indices, strings not
            switches).
        ValueError: A value out of range: rates outside [0, 1], non-positive per-stage
            entries, out-of-range ``out_indices``, ``frozen_stages`` past the last
            stage. (The checks: :mod:`pvtfpn_mm.models._checks`.)
    """

    def __init__(
        self,
        arch: str = 'b0',
        embed_dims: Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
        sr_ratios: Sequence[int] | None = None,
        mlp_ratios: Sequence[float] | None = None,
        linear: bool | None = None,
        in_channels: int = 3,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        out_indices: Sequence[int] | int = (0, 1, 2, 3),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        with_cp: bool = False,
        embed_norm_eps: float = 1e-5,
        init_cfg: dict | None = None,
        **kwargs: Any,
    ) -> None:
        refuse_unknown(
            'PVTv2',
            kwargs,
            FOREIGN_KEYWORDS,
            "mmdet's ResNet / PyramidVisionTransformerV2 backbones",
            "backbone=dict(_delete_=True, type='PVTv2', ...)",
        )
        super().__init__(init_cfg=init_cfg)
        settings = arch_settings(arch)
        overrides = dict(
            embed_dims=embed_dims,
            depths=depths,
            num_heads=num_heads,
            sr_ratios=sr_ratios,
            mlp_ratios=mlp_ratios,
            linear=linear,
        )
        settings.update({k: v for k, v in overrides.items() if v is not None})
        self.arch = arch
        self.depths = check_per_stage('depths', settings['depths'], None)
        self.num_stages = len(self.depths)
        for name in ('embed_dims', 'num_heads', 'sr_ratios', 'mlp_ratios'):
            setattr(
                self,
                name,
                check_per_stage(
                    name,
                    settings[name],
                    self.num_stages,
                    kind='number' if name == 'mlp_ratios' else 'int',
                ),
            )
        self.linear = check_flag('linear', settings['linear'])
        for dims, heads in zip(self.embed_dims, self.num_heads, strict=True):
            if dims % heads:
                raise ValueError(
                    f'num_heads={self.num_heads} does not divide embed_dims='
                    f'{self.embed_dims}: {heads} does not divide {dims}'
                )
        self.in_channels = check_positive_int('in_channels', in_channels)
        qkv_bias = check_flag('qkv_bias', qkv_bias)
        norm_eval = check_flag('norm_eval', norm_eval)
        with_cp = check_flag('with_cp', with_cp)
        drop_rate = check_rate('drop_rate', drop_rate)
        attn_drop_rate = check_rate('attn_drop_rate', attn_drop_rate)
        drop_path_rate = check_rate('drop_path_rate', drop_path_rate)
        if not is_number(embed_norm_eps) or not 0 < embed_norm_eps < 1:
            raise (TypeError if not is_number(embed_norm_eps) else ValueError)(
                f'embed_norm_eps must be a number in (0, 1), got {embed_norm_eps!r}'
            )
        out_indices = self._check_out_indices(out_indices)
        frozen_stages = check_frozen_stages(frozen_stages, self.num_stages)
        parse_pretrained(self.init_cfg)  # refuse a bad Pretrained init_cfg now
        self.out_indices = out_indices
        # forward returns the stages in order, whatever the order of out_indices
        self.out_channels: list[int] = [
            self.embed_dims[i]
            for i in range(self.num_stages)
            if i in out_indices
        ]
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        drop_paths = cast(
            'list[list[float]]',  # stagewise: one list per stage
            calculate_drop_path_rates(
                drop_path_rate, list(self.depths), stagewise=True
            ),
        )
        self.stages = nn.ModuleList()
        for i in range(self.num_stages):
            self.stages.append(
                PVTStage(
                    in_channels=in_channels
                    if i == 0
                    else self.embed_dims[i - 1],
                    embed_dims=self.embed_dims[i],
                    depth=self.depths[i],
                    patch_size=7 if i == 0 else 3,
                    stride=4 if i == 0 else 2,
                    drop_path=drop_paths[i],
                    with_cp=with_cp,
                    embed_norm_eps=embed_norm_eps,
                    num_heads=self.num_heads[i],
                    mlp_ratio=self.mlp_ratios[i],
                    sr_ratio=self.sr_ratios[i],
                    linear=self.linear,
                    qkv_bias=qkv_bias,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                )
            )
        self._freeze_stages()
        #: The smallest input side (pixels) the model takes.
        self.min_input_size = self._compute_min_input_size()

    def _check_out_indices(self, out_indices: Any) -> tuple[int, ...]:
        """The selected stages, in stage order, each once (an int selects one stage;
        negative indices count from the last stage, as in timm)."""
        if is_int(out_indices):
            out_indices = (out_indices,)
        indices = check_indices('out_indices', out_indices, self.num_stages)
        return tuple(sorted(set(indices)))

    def _compute_min_input_size(self) -> int:
        """The smallest input side every stage can take, from the built convolutions: a
        patch embedding needs ``size + 2 * padding >= kernel``, a (non-linear)
        spatial-reduction convolution needs its input side ``>= sr_ratio``."""

        def fits(size: int) -> bool:
            for stage in self._typed_stages():
                proj = stage.patch_embed.proj
                k, st, p = (
                    proj.kernel_size[0],
                    proj.stride[0],
                    _padding(proj)[0],
                )
                if size + 2 * p < k:
                    return False
                size = (size + 2 * p - k) // st + 1
                if not len(stage.blocks):
                    continue
                attn = cast(PVTBlock, stage.blocks[0]).attn
                if (
                    attn.sr is not None
                    and attn.pool is None
                    and size < attn.sr.kernel_size[0]
                ):
                    return False
            return True

        return next(n for n in range(1, 1 << 16) if fits(n))

    def _check_input(self, x: object) -> None:
        """Raises a ValueError/TypeError naming what is wrong with the input batch."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f'PVTv2 expects a (B, C, H, W) tensor, got {type(x).__name__}'
            )
        if x.dim() != 4:
            hint = (
                ' (one image? add the batch dimension: x[None])'
                if x.dim() == 3
                else ''
            )
            raise ValueError(
                f'PVTv2 expects a 4-D (B, C, H, W) batch, got a {x.dim()}-D '
                f'tensor of shape {tuple(x.shape)}{hint}'
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'PVTv2 expects {self.in_channels} input channels (in_channels='
                f'{self.in_channels}), got {x.shape[1]} (shape {tuple(x.shape)})'
            )
        m = self.min_input_size
        if x.shape[2] < m or x.shape[3] < m:
            raise ValueError(
                f'PVTv2 input of {x.shape[2]}x{x.shape[3]} pixels is too small: with '
                f'sr_ratios={self.sr_ratios}{" (linear)" if self.linear else ""} every side '
                f'must be at least {m} pixels (the stride-4 patch embedding and the '
                'spatial-reduction convolutions need it); pad or resize the images'
            )

    def _empty_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The outputs for an empty batch: (0, C_i, H_i, W_i) maps of the shapes a
        non-empty batch of this size gets (the attention cannot reshape 0 elements)."""
        h, w = x.shape[2], x.shape[3]
        outs = []
        for i, stage in enumerate(self._typed_stages()):
            proj = stage.patch_embed.proj
            h, w = [
                (n + 2 * p - k) // st + 1
                for n, p, k, st in zip(  # noqa: B905  (traced: torch 2.1's dynamo refuses strict=)
                    (h, w), _padding(proj), proj.kernel_size, proj.stride
                )
            ]
            if i in self.out_indices:
                outs.append(x.new_zeros(0, self.embed_dims[i], h, w))
        return tuple(outs)

    def _typed_stages(self) -> Iterable[PVTStage]:
        """:attr:`stages` as what they are, for the type checker (no copy)."""
        return cast('Iterable[PVTStage]', self.stages)

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        """timm's (and the official model's) initialization."""
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = (
                m.kernel_size[0]
                * m.kernel_size[1]
                * m.out_channels
                // m.groups
            )
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        """Initializes like timm, applies the other mmengine initializers of
        ``init_cfg``, then loads its ``Pretrained`` checkpoint (any format of
        :mod:`pvtfpn_mm.weights.formats`) strictly, or with ``allow_partial=True`` what
        fits (logged)."""
        pretrained, others = parse_pretrained(self.init_cfg)
        if pretrained is None or pretrained.get('allow_partial', False):
            self.apply(
                self._init_module
            )  # a strict load replaces every tensor
        if others:
            initialize(self, others)
        if pretrained is not None:
            load_pretrained(
                self,
                pretrained['checkpoint'],
                prefix=pretrained.get('prefix'),
                allow_partial=pretrained.get('allow_partial', False),
                map_location=pretrained.get('map_location', 'cpu'),
            )
        self._is_init = True

    def _freeze_stages(self) -> None:
        for stage in self.stages[: self.frozen_stages + 1]:
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'PVTv2':
        """Sets the mode, keeping frozen stages (and with ``norm_eval`` the norms) in
        eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(
                    m,
                    (
                        nn.LayerNorm,
                        nn.GroupNorm,
                        nn.modules.batchnorm._BatchNorm,
                    ),
                ):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(B, C, H, W)`` images -> the feature maps of ``out_indices``, contiguous
        ``NCHW`` tensors with strides 4, 8, 16, 32 (ceil-divided sizes).

        Every side must be at least :attr:`min_input_size` pixels (29 for the
        variants of :data:`ARCH_SETTINGS` except ``b2_li``, which takes any size); an
        empty batch (B = 0) gives empty maps of the same shapes otherwise.

        Raises:
            TypeError, ValueError: Not a tensor, not 4-D, other than ``in_channels``
                channels, or smaller than :attr:`min_input_size`.
        """
        if not _tracing():
            self._check_input(x)
            if x.shape[0] == 0:
                return self._empty_outputs(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x.contiguous())
        return tuple(outs)
