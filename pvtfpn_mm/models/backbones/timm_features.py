"""Any timm model with ``features_only`` support as an mmdet / mmseg / mmpretrain backbone.

:class:`TimmFeatures` wraps ``timm.create_model(model_name, features_only=True,
pretrained=False, out_indices=..., **timm_kwargs)`` and adds what an OpenMMLab backbone
needs: validated ``out_indices``, ``frozen_stages``, ``norm_eval``, NCHW outputs (timm's
Swin and similar models return NHWC features) and offline pretrained weights read from
a local file *in the full timm model's key names* (``model.state_dict()`` of
``timm.create_model(model_name)``), loaded strictly.

Feature levels are timm's: level ``i`` is ``feature_info[i]`` of the full model (for
``resnet*``: 0 = stem at stride 2, 1..4 = ``layer1..4`` at strides 4..32; for
``convnext_*``, ``swin_*``, ``pvt_v2_*``: 0..3 = the four stages at strides 4..32).
:func:`timm_channels` gives the channels of the selected levels without building the
weights, so a config can pass them to a neck (see the README's "Bring your own
backbone").
"""

import functools
import os
from collections.abc import Sequence
from typing import Any

import timm
import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from timm.layers import Format
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from pvtfpn_mm.registry import register_model
from pvtfpn_mm.weights import (
    READ_ERRORS,
    CheckpointReadError,
    StateDictMismatchError,
    checkpoint_read_error,
    load_state_dict_partial,
    mismatch_summary,
    parse_pretrained,
    timm_load_state_dict,
)

from .._checks import (
    check_flag,
    check_frozen_stages,
    check_indices,
    check_int,
    is_int,
)

#: timm keywords that :class:`TimmFeatures` sets itself (or refuses).
RESERVED_TIMM_KWARGS = (
    'pretrained',
    'features_only',
    'out_indices',
    'checkpoint_path',
    'pretrained_cfg',
    'pretrained_cfg_overlay',
)


def _check_model_name(model_name: Any) -> None:
    if not isinstance(model_name, str):
        raise TypeError(
            f'model_name must be a str, got {model_name!r} ({type(model_name).__name__})'
        )
    if not timm.is_model(model_name):
        close = timm.list_models(f'*{model_name.split("_")[0]}*')[:8]
        raise ValueError(
            f'model_name {model_name!r} is not a timm model'
            + (f' (similar: {close})' if close else '')
        )


def _check_timm_kwargs(timm_kwargs: dict) -> None:
    # harmless when repeated
    allowed = dict(pretrained=False, features_only=True)
    for key in RESERVED_TIMM_KWARGS:
        if key in timm_kwargs and not (
            key in allowed and timm_kwargs[key] is allowed[key]
        ):
            raise ValueError(
                f'{key}={timm_kwargs[key]!r} is not a timm keyword TimmFeatures passes on: '
                'it always builds features_only=True, pretrained=False (nothing is '
                'downloaded); select levels with out_indices and load weights with '
                'checkpoint=<local file> or init_cfg=dict(type=\'Pretrained\', '
                'checkpoint=<local file>)'
            )
    for key in allowed:
        timm_kwargs.pop(key, None)
    if 'norm_layer' in timm_kwargs:
        timm_kwargs['norm_layer'] = resolve_norm_layer(
            timm_kwargs['norm_layer']
        )


#: OpenMMLab norm-layer names ``norm_layer`` accepts, as mmseg's and mmpretrain's
#: ``TIMMBackbone`` do: mmcv's (``BN``, ``SyncBN``, ``GN``, ``LN``, ``IN``, ... in
#: mmengine's ``MODELS``) and mmpretrain's ``LN2d`` (channels-first LayerNorm).
MM_NORM_NAMES = (
    'BN',
    'BN1d',
    'BN2d',
    'BN3d',
    'SyncBN',
    'GN',
    'LN',
    'LN2d',
    'IN',
    'IN1d',
    'IN2d',
    'IN3d',
)


def _group_norm(
    num_channels: int, num_groups: int, **kwargs: Any
) -> nn.GroupNorm:
    """``nn.GroupNorm`` called as timm calls a norm layer (channels first)."""
    return nn.GroupNorm(num_groups, num_channels, **kwargs)


def resolve_norm_layer(norm_layer: Any) -> Any:
    """An mm norm name (:data:`MM_NORM_NAMES`) or ``dict(type=NAME, **kwargs)`` as the
    norm-layer class timm's ``norm_layer`` takes; anything else (timm's own names such
    as ``'batchnorm2d'``, classes, callables) is passed on to timm unchanged.

    The classes are the ones mmseg's / mmpretrain's ``TIMMBackbone`` resolve the names
    to (``'BN'`` -> ``nn.BatchNorm2d``, ``'SyncBN'`` -> ``nn.SyncBatchNorm``, ``'LN'`` ->
    ``nn.LayerNorm``, ...). ``GN`` needs its group count, as in every mm config:
    ``norm_layer=dict(type='GN', num_groups=32)``.

    Raises:
        ValueError: An unknown ``type`` in a dict, or ``'GN'`` without ``num_groups``.
    """
    if isinstance(norm_layer, dict):
        cfg = dict(norm_layer)
        name = cfg.pop('type', None)
        if name not in MM_NORM_NAMES:
            raise ValueError(
                f'norm_layer={norm_layer!r}: type must be one of the mm norm '
                f'names {MM_NORM_NAMES}'
            )
    elif isinstance(norm_layer, str) and norm_layer in MM_NORM_NAMES:
        name, cfg = norm_layer, {}
    else:
        return norm_layer
    if name == 'GN':
        if 'num_groups' not in cfg:
            raise ValueError(
                f"norm_layer={norm_layer!r}: GN needs its number of groups, "
                "e.g. norm_layer=dict(type='GN', num_groups=32)"
            )
        return functools.partial(_group_norm, **cfg)
    if name == 'LN2d':
        from mmpretrain.models.utils.norm import LayerNorm2d as cls
    else:
        import mmcv.cnn  # noqa: F401  (registers mmcv's norm layers)
        from mmengine.registry import MODELS as MMENGINE_MODELS

        cls = MMENGINE_MODELS.get(name)
    return functools.partial(cls, **cfg) if cfg else cls


def _create_meta(
    model_name: str, features_only: bool, **kwargs: Any
) -> nn.Module:
    """Builds a timm model on the meta device: names, shapes and feature_info, no memory.

    timm 0.9 models read values while they are built (``torch.linspace(...).tolist()`` of
    the drop-path rates), which the meta device cannot give: there the model is built on
    the CPU (the same names, shapes and feature_info; memory and a second or so).
    """

    def create() -> nn.Module:
        if features_only:
            return timm.create_model(
                model_name, pretrained=False, features_only=True, **kwargs
            )
        return timm.create_model(model_name, pretrained=False, **kwargs)

    try:
        with torch.device('meta'):
            return create()
    except (
        NotImplementedError
    ) as err:  # "Cannot copy out of meta tensor" (timm 0.9)
        if 'meta' not in str(err):
            raise
    return create()


def _feature_levels(full_model: nn.Module) -> list[dict]:
    info = getattr(full_model, 'feature_info', None)
    if not info:
        raise ValueError(
            f'timm model {type(full_model).__name__} has no feature_info: it does not '
            'support features_only'
        )
    return list(info)


def _check_out_indices(out_indices: Any, num_levels: int) -> tuple[int, ...]:
    """The selected feature levels as timm's ``features_only`` takes them: an int n is
    the last n levels; a sequence of indices (negative from the end) may come in any
    order and repeat one; the result is each level once, in model order."""
    if is_int(out_indices):
        count = check_int('out_indices', out_indices, 1, num_levels)
        return tuple(range(num_levels - count, num_levels))
    indices = check_indices('out_indices', out_indices, num_levels)
    return tuple(sorted(set(indices)))


def _resolve(
    model_name: str, out_indices: Any, timm_kwargs: dict
) -> tuple[nn.Module, list[dict], tuple[int, ...]]:
    """Checks the arguments against the meta-built full model.

    Returns:
        tuple: (full meta model, its feature levels, normalized out_indices).
    """
    _check_model_name(model_name)
    _check_timm_kwargs(timm_kwargs)
    full = _create_meta(model_name, features_only=False, **timm_kwargs)
    levels = _feature_levels(full)
    return full, levels, _check_out_indices(out_indices, len(levels))


def timm_channels(
    model_name: str,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    **timm_kwargs: Any,
) -> list[int]:
    """Channels of the levels ``out_indices`` of ``timm.create_model(model_name)``.

    Builds the model on the meta device (no weights, no download; well under a second
    for the usual backbones). Meant for configs, so a neck's ``in_channels`` follows
    the backbone instead of being copied by hand::

        from pvtfpn_mm.models.backbones import timm_channels  # after `_base_ = ...`
        neck = dict(type='TopDownFPN', in_channels=timm_channels('convnext_tiny'))

    Args:
        model_name (str): A timm model name.
        out_indices (Sequence[int]): Feature levels, as for :class:`TimmFeatures`.
            Defaults to ``(0, 1, 2, 3)``.
        **timm_kwargs: Other ``timm.create_model`` keywords that change channels
            (e.g. ``embed_dims``); the same as given to :class:`TimmFeatures`.

    Returns:
        list[int]: One channel count per selected level, finest first.

    Raises:
        TypeError, ValueError: As :class:`TimmFeatures`.

    Example:
        >>> timm_channels('resnet50', (1, 2, 3, 4))
        [256, 512, 1024, 2048]
        >>> timm_channels('pvt_v2_b2')
        [64, 128, 320, 512]
    """
    _, levels, out_indices = _resolve(model_name, out_indices, timm_kwargs)
    return [int(levels[i]['num_chs']) for i in out_indices]


def _normalized(name: str) -> str:
    return name.replace('.', '_')


def _full_name_map(features: nn.Module, full: nn.Module) -> dict[str, str]:
    """Maps names in the features model (modules, params, buffers) to full-model names.

    timm's feature wrappers reuse the full model's modules under new names:
    ``FeatureListNet`` / ``FeatureHookNet`` join the first levels with ``_``
    (``stages.0`` -> ``stages_0``); ``FeatureGetterNet`` / ``FeatureGraphNet`` nest
    the model under ``model.`` / ``graph_module.``; native feature classes keep the
    names. A name matches when both agree with ``.`` read as ``_``, after dropping the
    wrapper's first component if needed.

    Raises:
        NotImplementedError: A name that matches no full-model name or several.
    """
    full_names = [n for n, _ in full.named_modules() if n]
    full_names += list(full.state_dict().keys())
    by_norm: dict[str, set] = {}
    for name in full_names:
        by_norm.setdefault(_normalized(name), set()).add(name)

    mapping = {}
    tensors = set(features.state_dict())
    names = [n for n, _ in features.named_modules() if n] + sorted(tensors)
    for name in names:
        candidates = [name]
        if '.' in name:
            candidates.append(name.split('.', 1)[1])
        for candidate in candidates:
            hits = by_norm.get(_normalized(candidate), set())
            if len(hits) > 1:
                raise NotImplementedError(
                    f'{name!r} of the features model matches several names of the full '
                    f'timm model: {sorted(hits)}'
                )
            if hits:
                mapping[name] = next(iter(hits))
                break
        else:
            if name in tensors:
                raise NotImplementedError(
                    f'cannot find {name!r} of the timm features model among the full '
                    'model\'s names; TimmFeatures does not support this feature wrapper'
                )
            # else: a wrapper's own container (e.g. FeatureGetterNet's `model`).
    return mapping


@register_model()
class TimmFeatures(BaseModule):
    """A timm model's feature levels, as an mmdet / mmseg / mmpretrain backbone.

    ``forward(x)`` returns the levels ``out_indices`` of ``timm.create_model(model_name,
    features_only=True, pretrained=False, **timm_kwargs)`` as a tuple of NCHW tensors,
    finest first -- ready for :class:`~pvtfpn_mm.models.necks.TopDownFPN` with
    ``in_channels=timm_channels(model_name, out_indices)`` (also
    :attr:`out_channels`).

    Nothing is ever downloaded: timm's ``pretrained`` is always False. Weights come
    from a local file (``.pth``/``.pt``/``.bin`` read with ``weights_only=True``, or
    ``.safetensors``) holding the *full* timm model's state dict (bare, or under
    ``'state_dict'`` / ``'model'``; a ``module.`` prefix is dropped). Every tensor
    the features model uses must be there with its shape, and every key must be a
    key of the full model (the classifier may be absent or of another size, since it
    is not used); anything else raises :class:`~pvtfpn_mm.weights.StateDictMismatchError`
    listing the missing / unexpected keys and the shape mismatches. Give the file as
    ``checkpoint`` (loaded at construction, like timm's ``checkpoint_path``) or as
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)`` (loaded by
    :meth:`init_weights`, i.e. when the runner initializes the model).

    Args:
        model_name (str): A timm model name with ``features_only`` support (e.g.
            ``'resnet50'``, ``'convnext_tiny'``, ``'swin_tiny_patch4_window7_224'``,
            ``'pvt_v2_b2'``).
        out_indices (Sequence[int] | int): Indices of the feature levels to return, in
            timm's numbering of the full model's ``feature_info``, as timm takes them:
            negative counts from the end, any order (the levels come in model order,
            each once), an int n selects the last n levels. Defaults to
            ``(0, 1, 2, 3)`` -- strides 4..32 for
            ConvNeXt / Swin / PVT-v2; ResNets have a stride-2 stem level first, use
            ``(1, 2, 3, 4)`` for C2..C5.
        frozen_stages (int): Freeze (``requires_grad=False``, eval mode) every module
            up to and including feature level ``frozen_stages`` (the stem included),
            in the model's module order; -1 (or less) freezes nothing. For a ResNet, 1 freezes
            the stem and ``layer1`` as mmdet's ``ResNet(frozen_stages=1)``.
            Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode (running statistics
            frozen) while training. Defaults to False.
        checkpoint (str, optional): Local file of full-model weights, loaded now.
            Defaults to None.
        init_cfg (dict | list[dict], optional): ``dict(type='Pretrained',
            checkpoint=<local file>, prefix=None, allow_partial=False)`` loads a local
            file of full-model weights (``prefix``: only the keys starting with it,
            without it) strictly in :meth:`init_weights` (``allow_partial=True``: what
            fits, logged); other initializers are mmengine's, run before it. Defaults
            to None: timm's own initialization.
        **timm_kwargs: Passed to ``timm.create_model`` (e.g. ``drop_path_rate=0.1``,
            ``dynamic_img_size=True`` for Swin on other input sizes, ``in_chans``),
            except ``pretrained``, ``features_only``, ``out_indices``,
            ``checkpoint_path`` and ``pretrained_cfg[_overlay]``. ``norm_layer`` also
            takes the OpenMMLab norm names of mmseg's / mmpretrain's ``TIMMBackbone``
            (``'BN'``, ``'SyncBN'``, ``'LN'``, ``'LN2d'``, ``'IN'``, ...,
            ``dict(type='GN', num_groups=32)``; :func:`resolve_norm_layer`).

    Attributes:
        out_channels (list[int]): Channels of each returned level.
        strides (list[int]): Stride (reduction) of each returned level.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: An unknown model, a bad ``out_indices`` / ``frozen_stages`` /
            ``init_cfg``, a URL as checkpoint, or a reserved timm keyword.
        FileNotFoundError: ``checkpoint`` is not a file.
        StateDictMismatchError: ``checkpoint`` does not fit the model.
        NotImplementedError: A timm model whose features TimmFeatures cannot relate to
            the full model's names (for ``frozen_stages`` >= 0 or weights) or whose
            ``feature_info`` misnames a level's module (for ``frozen_stages``).

    Example:
        >>> import torch
        >>> backbone = TimmFeatures('resnet18', out_indices=(1, 2, 3, 4))
        >>> backbone.out_channels, backbone.strides
        ([64, 128, 256, 512], [4, 8, 16, 32])
        >>> [tuple(f.shape) for f in backbone(torch.rand(1, 3, 64, 64))]
        [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)]
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        checkpoint: str | None = None,
        init_cfg: dict | None = None,
        **timm_kwargs: Any,
    ) -> None:
        self._check_init_cfg(init_cfg)
        if checkpoint is not None:
            self._check_checkpoint_arg(checkpoint, 'checkpoint')
            if init_cfg is not None:
                raise ValueError(
                    'give the weights either as checkpoint or as init_cfg, not both '
                    f'(checkpoint={checkpoint!r}, init_cfg={init_cfg!r})'
                )
        super().__init__(init_cfg=init_cfg)
        full, levels, out_indices = _resolve(
            model_name, out_indices, timm_kwargs
        )
        frozen_stages = check_frozen_stages(frozen_stages, len(levels))
        norm_eval = check_flag('norm_eval', norm_eval)

        self.model_name = model_name
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.timm_kwargs = dict(timm_kwargs)
        self.model = timm.create_model(
            model_name,
            pretrained=False,
            features_only=True,
            out_indices=out_indices,
            **timm_kwargs,
        )
        info: Any = self.model.feature_info  # timm's FeatureInfo
        self.out_channels = [int(c) for c in info.channels()]
        self.strides = [int(r) for r in info.reduction()]
        expected = [int(levels[i]['num_chs']) for i in out_indices]
        if self.out_channels != expected:  # what timm_channels() tells configs
            raise NotImplementedError(
                f'timm {model_name!r}: the features model has channels '
                f'{self.out_channels} at out_indices={out_indices}, its feature_info '
                f'says {expected}'
            )
        self._nhwc = (
            getattr(self.model, 'output_fmt', Format.NCHW) == Format.NHWC
        )
        # meta-device full model, kept out of the module tree
        self._full = [full]
        self._full_levels = levels
        self._name_map: dict[str, str] | None = None
        # Names, not modules: SyncBN conversion replaces module objects.
        self._frozen_modules: list[str] = []

        self._freeze_stages()
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)
            self._is_init = True

    # ------------------------------------------------------------------ arguments

    @staticmethod
    def _check_checkpoint_arg(checkpoint: Any, what: str) -> None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(
                f'{what} must be a path to a local file, got {checkpoint!r} '
                f'({type(checkpoint).__name__})'
            )
        if '://' in str(checkpoint):
            raise ValueError(
                f'{what} must be a local file (TimmFeatures never downloads), got '
                f'{str(checkpoint)!r}'
            )

    @classmethod
    def _check_init_cfg(cls, init_cfg: Any) -> None:
        pretrained, _ = parse_pretrained(init_cfg)
        if pretrained is not None:
            cls._check_checkpoint_arg(
                pretrained['checkpoint'], 'init_cfg checkpoint'
            )

    @staticmethod
    def channels(
        model_name: str,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        **timm_kwargs: Any,
    ) -> list[int]:
        """Same as :func:`timm_channels`."""
        return timm_channels(model_name, out_indices, **timm_kwargs)

    # --------------------------------------------------------------- full names

    @property
    def full_name_map(self) -> dict[str, str]:
        """Names in ``self.model`` (modules, parameters, buffers) -> full timm names."""
        if self._name_map is None:
            self._name_map = _full_name_map(self.model, self._full[0])
        return self._name_map

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        full = self._full[0]
        last = self._full_levels[self.frozen_stages]['module']
        # Every module registered up to the last descendant of the level's module.
        order = [n for n, _ in full.named_modules()]
        if last not in order:
            raise NotImplementedError(
                f'frozen_stages={self.frozen_stages}: timm\'s feature_info names module '
                f'{last!r} for that level, which {self.model_name!r} does not have; use '
                'frozen_stages=-1 (and e.g. the optimizer\'s paramwise_cfg lr_mult=0)'
            )
        end = max(
            i
            for i, n in enumerate(order)
            if n == last or n.startswith(last + '.')
        )
        frozen_full = set(order[1 : end + 1])
        root_params = {n for n, _ in full.named_parameters(recurse=False)}
        frozen_params = 0
        for name, param in self.model.named_parameters():
            full_name = self.full_name_map[name]
            owner = full_name.rpartition('.')[0]
            if owner in frozen_full or full_name in root_params:
                param.requires_grad = False
                frozen_params += 1
        self._frozen_modules = [
            n
            for n, _ in self.model.named_modules()
            if n and self.full_name_map.get(n) in frozen_full
        ]
        if frozen_params == 0:
            raise NotImplementedError(
                f'frozen_stages={self.frozen_stages} froze no parameter of '
                f'{self.model_name!r}'
            )

    def train(self, mode: bool = True) -> 'TimmFeatures':
        """Sets the mode; frozen stages (and BatchNorms with ``norm_eval``) stay in eval."""
        super().train(mode)
        if mode:
            for name in self._frozen_modules:
                self.model.get_submodule(name).eval()
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, _BatchNorm):
                        module.eval()
        return self

    # ------------------------------------------------------------------ weights

    def load_checkpoint(
        self,
        checkpoint: str,
        prefix: str | None = None,
        allow_partial: bool = False,
    ) -> None:
        """Loads a local file of full-timm-model weights strictly (see the class doc).

        Args:
            checkpoint (str): Local file path.
            prefix (str, optional): Use only the keys starting with it, without it.
                Defaults to None.
            allow_partial (bool): Load the tensors that fit and log what did not,
                instead of refusing. Defaults to False.

        Raises:
            FileNotFoundError: No such file.
            StateDictMismatchError: Missing / unexpected keys or shape mismatches.
        """
        self._check_checkpoint_arg(checkpoint, 'checkpoint')
        checkpoint = os.path.expanduser(os.fspath(checkpoint))
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(
                f'checkpoint file {str(checkpoint)!r} does not exist'
            )
        if os.path.getsize(checkpoint) == 0:
            raise CheckpointReadError(
                f'checkpoint file {checkpoint!r} is empty (0 bytes): an '
                'interrupted save or download?'
            )
        try:
            # weights_only=True on every timm
            state = timm_load_state_dict(str(checkpoint))
        except (
            READ_ERRORS
        ) as err:  # say what is wrong with the file, not torch's hint
            raise checkpoint_read_error(checkpoint, err) from None
        source = f'checkpoint {str(checkpoint)!r}'
        if prefix:
            state = {
                k[len(prefix) :]: v
                for k, v in state.items()
                if k.startswith(prefix)
            }
            source += f' (prefix {prefix!r})'
        full_shapes = {
            k: tuple(v.shape) for k, v in self._full[0].state_dict().items()
        }
        wanted = {k: self.full_name_map[k] for k in self.model.state_dict()}
        missing = sorted(v for v in wanted.values() if v not in state)
        unexpected = sorted(k for k in state if k not in full_shapes)
        mismatched = [
            f'{v}: {tuple(state[v].shape)} vs {full_shapes[v]}'
            for v in wanted.values()
            if v in state and tuple(state[v].shape) != full_shapes[v]
        ]
        source += f' (timm {self.model_name!r} full-model keys)'
        if allow_partial:
            print_log(
                'TimmFeatures: '
                + load_state_dict_partial(
                    self.model,
                    {k: state[v] for k, v in wanted.items() if v in state},
                    source=source,
                )
                + (
                    '\n'
                    + mismatch_summary(
                        missing,
                        unexpected,
                        mismatched,
                        source,
                        StateDictMismatchError.SHOWN,
                    )
                    if missing or unexpected or mismatched
                    else ''
                ),
                logger='current',
            )
            return
        if missing or unexpected or mismatched:
            raise StateDictMismatchError(
                missing, unexpected, mismatched, source=source
            )
        self.model.load_state_dict(
            {k: state[v] for k, v in wanted.items()}, strict=True
        )

    def init_weights(self) -> None:
        """Loads ``init_cfg=dict(type='Pretrained')`` strictly; else mmengine's init."""
        pretrained, others = parse_pretrained(self.init_cfg)
        if pretrained is None:
            super().init_weights()
            return
        if not self._is_init:
            if others:
                from mmengine.model import initialize

                initialize(self, others)
            self.load_checkpoint(
                pretrained['checkpoint'],
                prefix=pretrained.get('prefix'),
                allow_partial=pretrained.get('allow_partial', False),
            )
            self._is_init = True

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Returns the selected levels, NCHW, finest first."""
        feats = self.model(x)
        if isinstance(feats, dict):
            feats = list(feats.values())
        if self._nhwc:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        return tuple(feats)
