"""Whole detectors and segmentors of other codebases, converted to our configs' layout.

Released PVT-v2 models come in two foreign layouts (:data:`WHOLE_LAYOUTS`); they differ
from ours in the ``backbone.`` part only: the neck and head keys of mmdet 2.x (the
official detection code is built on mmdet 2.13) and mmseg 0.x (0.13) are those of mmdet
3.x / mmseg 1.x for the modules these models use (:data:`_HEAD_KEYS`). Conversion is
strict: every key is mapped by a rule, or the conversion stops listing the keys that no
rule maps.
"""

import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from .formats import (
    CheckpointFormatError,
    StateDict,
    check_format,
    check_mapping,
    convert,
    detect_known_format,
    extract_state_dict,
    rename_to_ours,
    strip_prefix,
)
from .io import check_output, read_checkpoint, save_atomic, unwrap_state_dict
from .loading import load_state_dict_strict, show_keys, warn_on_embed_eps

#: Foreign whole-model layouts: name -> (format of the ``backbone.`` part, description).
WHOLE_LAYOUTS: dict[str, tuple[str, str]] = {
    'mmdet': (
        'mmdet',
        'mmdet 3.x PyramidVisionTransformerV2 model (mmdet configs/pvt; '
        'backbone.layers.*)',
    ),
    'official': (
        'official',
        'whai362/PVT release (mmdet 2.x detection / mmseg 0.x '
        'segmentation; backbone.patch_embed1.*)',
    ),
}
#: The model parts beside the backbone, as top-level key prefixes.
WHOLE_PARTS = (
    'neck.',
    'bbox_head.',
    'rpn_head.',
    'roi_head.',
    'decode_head.',
    'auxiliary_head.',
)
_BN = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
#: Neck and head keys, identical in mmdet 2.x / 3.x and mmseg 0.x / 1.x (kept as they
#: are), of the modules the released models use: mmdet 2.13's FPN, RetinaHead, RPNHead,
#: Shared2FCBBoxHead, FCNMaskHead and, for the 3x detectors, CascadeRoIHead with
#: ConvFCBBoxHead, ATSSHead, GFLHead, Sparse R-CNN's EmbeddingRPNHead and DIIHead;
#: mmseg 0.13's FPNHead.
_HEAD_KEYS = tuple(
    re.compile(p)
    for p in (
        r'neck\.(lateral_convs|fpn_convs)\.\d+\.conv\.(weight|bias)$',
        r'neck\.(lateral_convs|fpn_convs)\.\d+\.(bn|gn)\.' + _BN + '$',
        r'bbox_head\.(cls_convs|reg_convs)\.\d+\.conv\.(weight|bias)$',
        r'bbox_head\.(cls_convs|reg_convs)\.\d+\.gn\.(weight|bias)$',
        r'bbox_head\.retina_(cls|reg)\.(weight|bias)$',
        r'bbox_head\.atss_(cls|reg|centerness)\.(weight|bias)$',
        r'bbox_head\.gfl_(cls|reg)\.(weight|bias)$',
        r'bbox_head\.scales\.\d+\.scale$',
        r'bbox_head\.integral\.project$',
        r'rpn_head\.rpn_(conv|cls|reg)\.(weight|bias)$',
        r'rpn_head\.init_proposal_(bboxes|features)\.weight$',
        # Mask R-CNN (one head) and Cascade (a stage index)
        r'roi_head\.bbox_head\.(\d+\.)?(shared_fcs\.\d+|fc_cls|fc_reg)\.'
        r'(weight|bias)$',
        r'roi_head\.bbox_head\.\d+\.shared_convs\.\d+\.conv\.weight$',
        r'roi_head\.bbox_head\.\d+\.shared_convs\.\d+\.bn\.' + _BN + '$',
        r'roi_head\.mask_head\.(\d+\.)?convs\.\d+\.conv\.(weight|bias)$',
        r'roi_head\.mask_head\.(\d+\.)?(upsample|conv_logits)\.(weight|bias)$',
        # DIIHead (Sparse R-CNN), one per stage
        r'roi_head\.bbox_head\.\d+\.attention\.attn\.'
        r'(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)$',
        r'roi_head\.bbox_head\.\d+\.(attention_norm|ffn_norm|'
        r'instance_interactive_conv_norm)\.(weight|bias)$',
        r'roi_head\.bbox_head\.\d+\.instance_interactive_conv\.'
        r'(dynamic_layer|norm_in|norm_out|fc_layer|fc_norm)\.(weight|bias)$',
        r'roi_head\.bbox_head\.\d+\.ffn\.layers\.(0\.0|1)\.(weight|bias)$',
        r'roi_head\.bbox_head\.\d+\.(cls_fcs|reg_fcs)\.\d+\.(weight|bias)$',
        r'decode_head\.scale_heads\.\d+\.\d+\.conv\.(weight|bias)$',
        r'decode_head\.scale_heads\.\d+\.\d+\.(bn|gn)\.' + _BN + '$',
        r'(decode_head|auxiliary_head)\.conv_seg\.(weight|bias)$',
    )
)
#: A key only a model with our PVTv2 as its backbone has.
_OUR_BACKBONE_KEY = 'backbone.stages.0.patch_embed.proj.weight'
#: How many refused keys an error shows.
_SHOW_KEYS = 10


def is_whole_checkpoint(state_dict: Mapping) -> bool:
    """Whether ``state_dict`` is a whole detector / segmentor (a ``backbone.`` part and
    a neck or head beside it), not a bare backbone."""
    keys = list(state_dict)
    return any(k.startswith('backbone.') for k in keys) and any(
        k.startswith(WHOLE_PARTS) for k in keys
    )


def detect_layout(state_dict: Mapping) -> str | None:
    """The layout of a whole detector / segmentor state dict, from its backbone keys.

    Returns:
        str | None: A key of :data:`WHOLE_LAYOUTS`; ``'ours'`` when the backbone part
        is our ``PVTv2``; None when there is no ``backbone.`` part in a known format.
    """
    fmt = detect_known_format(strip_prefix(state_dict, 'backbone.'))
    if fmt == 'ours':
        return 'ours'
    for name, (backbone_format, _) in WHOLE_LAYOUTS.items():
        if fmt == backbone_format:
            return name
    return None


def whole_to_ours(
    state_dict: Mapping, layout: str | None = None, source: str = 'checkpoint'
) -> StateDict:
    """Converts a whole detector / segmentor state dict from ``layout`` to ours.

    The ``backbone.`` part is converted by the backbone rules of the layout's format
    (:func:`to_ours`); neck and head keys (:data:`_HEAD_KEYS`) are kept as they are.

    Args:
        state_dict (Mapping): The whole model's state dict.
        layout (str, optional): A key of :data:`WHOLE_LAYOUTS`, or ``'ours'`` (nothing
            to convert). None: :func:`detect_layout`.
        source (str): Names the state dict in errors. Defaults to ``'checkpoint'``.

    Returns:
        dict: The state dict in our layout, keys in the order of the input.

    Raises:
        CheckpointFormatError: The layout is unknown, or some keys are mapped by no
            rule of the layout (all of them are counted, the first few named).
    """
    detected = detect_layout(state_dict)
    if layout is None:
        layout = detected
    if layout is None or (layout != 'ours' and layout not in WHOLE_LAYOUTS):
        sample = ', '.join(k for k in list(state_dict)[:5]) or '(none)'
        raise CheckpointFormatError(
            f'{source} is not a whole PVT-v2 model in any of the layouts '
            f'{("ours",) + tuple(WHOLE_LAYOUTS)}; its first keys are: {sample}'
        )
    if detected != layout:
        raise CheckpointFormatError(
            f'{source} is in layout {detected!r}, not {layout!r}'
        )
    if layout == 'ours':
        return OrderedDict(state_dict)
    refused: list[str] = []
    backbone = rename_to_ours(
        strip_prefix(state_dict, 'backbone.'),
        WHOLE_LAYOUTS[layout][0],
        refused,
    )
    refused = ['backbone.' + k for k in refused]
    out = OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
    for key, value in state_dict.items():
        if key.startswith('backbone.'):
            continue
        if any(p.match(key) for p in _HEAD_KEYS):
            out[key] = value
        else:
            refused.append(key)
    if refused:
        shown = show_keys(refused, _SHOW_KEYS)
        raise CheckpointFormatError(
            f'{source} ({WHOLE_LAYOUTS[layout][1]}): {len(refused)} keys are mapped by no '
            f'rule of the converter (pvtfpn_mm/weights/layouts.py): {shown}'
        )
    return out


def convert_to_model_layout(
    state_dict: Mapping, model: nn.Module
) -> tuple[StateDict, str | None]:
    """A whole detector's / segmentor's state dict in ``model``'s own key layout.

    Our runner's loading path calls this right before its strict load: a checkpoint in a
    foreign layout (:data:`WHOLE_LAYOUTS`) is converted on the fly (the caller logs the
    layout it came from), with a warning where the model's patch-embedding LayerNorm eps
    differs from the layout's (:func:`~.loading.warn_on_embed_eps`). Only models whose
    backbone is our ``PVTv2`` are converted to; for any other model the state dict is
    returned as it is.

    Args:
        state_dict (Mapping): The checkpoint's state dict (already unwrapped from
            ``'state_dict'`` / ``'model'``).
        model (nn.Module): The model it is loaded into (a detector or segmentor built
            from one of our configs).

    Returns:
        tuple[dict, str | None]: The state dict in ``model``'s layout, and the name of
        the foreign layout it was converted from (a key of :data:`WHOLE_LAYOUTS`), or
        None when it already was in ``model``'s layout (then it is returned as it is) or
        in no layout this module knows (strict loading then reports the mismatch).

    Raises:
        CheckpointFormatError: A foreign layout with keys no rule maps (listed).
    """
    if _OUR_BACKBONE_KEY not in model.state_dict():
        return OrderedDict(state_dict), None
    layout = detect_layout(state_dict)
    if layout is None or layout == 'ours':
        return OrderedDict(state_dict), None
    fmt, description = WHOLE_LAYOUTS[layout]
    out = whole_to_ours(state_dict, layout, source=f'{description} checkpoint')
    warn_on_embed_eps(model, fmt, f'{description} checkpoint', 'backbone.')
    return out, layout


def convert_file(
    src_path: str,
    dst_path: str,
    dst: str = 'ours',
    src: str | None = None,
    prefix: str | None = None,
    whole: bool | None = None,
    force: bool = False,
    model: nn.Module | None = None,
) -> tuple[str, int, bool]:
    """Converts a checkpoint file: a whole detector / segmentor, or a backbone.

    Args:
        src_path (str): The checkpoint file or ``http(s)://`` URL (``~`` expanded).
        dst_path (str): The output file (``~`` expanded), written atomically (see
            :func:`save_atomic`); never the source file.
        dst (str): Output format (one of :data:`FORMATS`). A whole checkpoint converts
            to ``'ours'`` only. Defaults to ``'ours'``.
        src (str, optional): The expected source format / layout; a different one is
            an error. None: detect it.
        prefix (str, optional): Convert only the backbone under this key prefix (see
            :func:`extract_state_dict`); implies ``whole=False``.
        whole (bool, optional): True: a whole detector / segmentor (written as
            ``{'meta': ..., 'state_dict': ...}``, ready for ``tools/test.py`` / ``mim
            test`` / ``load_from``); False: a PVT-v2 backbone (written as a bare state
            dict); None: whole when the checkpoint has a ``backbone.`` part and a neck
            or head beside it (:func:`is_whole_checkpoint`) and ``prefix`` is None.
        force (bool): Overwrite an existing output file. Defaults to False.
        model (nn.Module, optional): Whole checkpoints: also check that the result
            loads strictly into this model (e.g. built from the config the checkpoint
            is for; raises :class:`StateDictMismatchError` listing what does not fit).

    Returns:
        tuple[str, int, bool]: The source format (whole: layout), the number of tensors
        written and whether the checkpoint was converted as a whole model.
    """
    check_format(dst)
    src_path = (
        src_path
        if src_path.startswith(('http://', 'https://'))
        else os.path.expanduser(src_path)
    )
    dst_path = os.path.expanduser(dst_path)
    source = f'checkpoint {src_path!r}'
    # the output is checked before the (slow) reading and converting
    check_output(dst_path, force, src_path)
    checkpoint = read_checkpoint(src_path)
    check_mapping(checkpoint, source)
    if whole is None:
        whole = prefix is None and is_whole_checkpoint(
            unwrap_state_dict(checkpoint)
        )
    if whole:
        if prefix is not None:
            raise ValueError(
                f'prefix={prefix!r}: a whole checkpoint is converted with all '
                f'its keys; a prefix selects a backbone (whole=False)'
            )
        if dst != 'ours':
            raise ValueError(
                f'{source} is a whole detector / segmentor, which converts to our layout '
                f"only (got --to {dst!r}); convert just its backbone with --prefix backbone."
            )
        state_dict: StateDict = OrderedDict(unwrap_state_dict(checkpoint))
        layout = detect_layout(state_dict)
        if src is not None and src != layout:
            raise CheckpointFormatError(
                f'{source} is in layout {layout!r}, not {src!r}'
            )
        out = whole_to_ours(state_dict, layout, source=source)
        assert layout is not None  # whole_to_ours refused an unknown layout
        if model is not None:
            converted, _ = convert_to_model_layout(out, model)
            load_state_dict_strict(
                model, converted, source=f'{source} (converted)'
            )
        meta: dict[str, Any] = {
            'converted_from': layout,
            'source': os.path.basename(src_path),
        }
        classes = (
            checkpoint.get('meta', {}).get('CLASSES')
            if isinstance(checkpoint.get('meta'), Mapping)
            else None
        )
        # mmdet 2.x / mmseg 0.x; mmengine keeps dataset_meta
        if classes is not None:
            meta['dataset_meta'] = {'classes': tuple(classes)}
        save_atomic(
            {'meta': meta, 'state_dict': out}, dst_path, force, src_path
        )
        return layout, len(out), True
    if model is not None:
        raise ValueError(
            f'model= (--config) checks whole checkpoints only; {source} is '
            'converted as a backbone'
        )
    state_dict, detected = extract_state_dict(
        checkpoint, prefix=prefix, source=source
    )
    if src is not None and src != detected:
        raise CheckpointFormatError(
            f'{source} is in format {detected!r}, not {src!r}'
        )
    out = convert(state_dict, dst, detected)
    save_atomic(out, dst_path, force, src_path)
    return detected, len(out), False
