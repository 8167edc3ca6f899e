"""PVT-v2 backbone checkpoint formats: detection and key conversion, as rule tables.

The one backbone converter: :meth:`pvtfpn_mm.models.backbones.PVTv2.init_weights`,
the whole-model layouts (:mod:`.layouts`) and ``tools/convert_weights.py`` use it.
Formats (:data:`FORMATS`; their keys beside ours: :data:`_KEY_PAIRS`): ``'ours'``
(:class:`~pvtfpn_mm.models.backbones.PVTv2`), ``'timm'`` (timm's ``pvt_v2_*``),
``'timm_features'`` (the same with ``features_only=True``), ``'official'``
(whai362/PVT), ``'mmdet'`` (mmdet's ``PyramidVisionTransformerV2``, which has no linear
spatial-reduction attention, b2_li) and ``'hf'`` (transformers' ``PvtV2*`` state dicts,
the hub's ``OpenGVLab/pvt_v2_*`` files; docs/models.md "Weights" gives its keys and its
LayerNorm eps).

Converting *to* ours drops a classification ``head.*`` / ``classifier.*`` (it is not
part of the backbone); any other key that a format does not know is kept under its own
name, so strict loading reports it as unexpected.
"""

import functools
import re
from collections import OrderedDict
from collections.abc import Mapping

import torch

from .io import unwrap_state_dict

StateDict = dict[str, torch.Tensor]

#: The checkpoint formats this module reads and writes.
FORMATS = ('ours', 'timm', 'timm_features', 'official', 'mmdet', 'hf')
#: Prefixes tried, in order, when a checkpoint's keys are not a known format as they are.
AUTO_PREFIXES = ('backbone.', 'module.', 'module.backbone.')


class CheckpointFormatError(ValueError):
    """The keys of a state dict are not a PVT-v2 checkpoint in any known format."""


def check_mapping(obj: object, source: str) -> None:
    """Raises :class:`CheckpointFormatError` naming ``source`` unless ``obj`` is a
    mapping (a state dict or a checkpoint holding one)."""
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(
            f'{source} holds a {type(obj).__name__}, not a state dict'
        )


def strip_prefix(state_dict: Mapping, prefix: str) -> StateDict:
    """The entries of ``state_dict`` whose key starts with ``prefix``, without it."""
    return OrderedDict(
        (k[len(prefix) :], v)
        for k, v in state_dict.items()
        if k.startswith(prefix)
    )


def extract_state_dict(
    checkpoint: Mapping, prefix: str | None = None, source: str = 'checkpoint'
) -> tuple[StateDict, str]:
    """The PVT-v2 state dict inside ``checkpoint`` and its format.

    Args:
        checkpoint (Mapping): A state dict, or a dict holding one under ``'state_dict'``
            or ``'model'``.
        prefix (str, optional): Keep only the keys with this prefix, without it (e.g.
            ``'backbone.'``). None: the keys as they are if they are a known format,
            else the first of :data:`AUTO_PREFIXES` that gives one.
        source (str): Names the checkpoint in errors. Defaults to ``'checkpoint'``.

    Returns:
        tuple[dict, str]: The state dict and its format (one of :data:`FORMATS`).

    Raises:
        CheckpointFormatError: No (prefixed) part of the checkpoint is a known format.
    """
    check_mapping(checkpoint, source)
    state_dict = unwrap_state_dict(checkpoint)
    if prefix is not None:
        stripped = strip_prefix(state_dict, prefix)
        if not stripped:
            raise CheckpointFormatError(
                f'{source} has no key with prefix {prefix!r}'
            )
        return stripped, detect_format(stripped, source=source)
    candidates: list[StateDict] = [OrderedDict(state_dict)]
    candidates += [strip_prefix(state_dict, p) for p in AUTO_PREFIXES]
    for candidate in candidates:
        fmt = detect_known_format(candidate)
        if fmt is not None:
            return candidate, fmt
    return candidates[0], detect_format(candidates[0], source=source)  # raises


# ------------------------------------------------------------------------- detection


def detect_known_format(state_dict: Mapping) -> str | None:
    """The format of ``state_dict`` (one of :data:`FORMATS`), or None."""
    keys = state_dict.keys()
    if 'stages.0.patch_embed.proj.weight' in keys:
        return 'ours'
    if 'patch_embed.proj.weight' in keys:
        return (
            'timm_features'
            if any(k.startswith('stages_') for k in keys)
            else 'timm'
        )
    if 'patch_embed1.proj.weight' in keys:
        return 'official'
    if 'layers.0.0.projection.weight' in keys and any(
        '.ffn.layers.' in k for k in keys
    ):
        return 'mmdet'
    if (
        'pvt_v2.encoder.layers.0.patch_embedding.proj.weight' in keys
        or 'encoder.layers.0.patch_embedding.proj.weight' in keys
    ):
        return 'hf'
    return None


def detect_format(state_dict: Mapping, source: str = 'state dict') -> str:
    """The format (one of :data:`FORMATS`) of a PVT-v2 state dict, from its keys.

    Raises:
        CheckpointFormatError: The keys are none of :data:`FORMATS`; the message names
            ``source`` and shows a few keys.
    """
    fmt = detect_known_format(state_dict)
    if fmt is None:
        sample = ', '.join(list(state_dict)[:5]) or '(none)'
        raise CheckpointFormatError(
            f'{source} is not a PVT-v2 checkpoint in any of the formats {FORMATS}; '
            f'its first keys are: {sample}'
        )
    return fmt


# ------------------------------------------------------------------ key conversions
# Each format's keys beside ours, as (ours, theirs) key-prefix pairs: ``{i}`` (a stage)
# and ``{j}`` (a block) stand for numbers, the rest of the key is kept; the first pair
# that matches wins, in either direction. ``(None, theirs)`` drops those keys when
# converting to ours (a classifier). Tensor changes (mmdet's fused in-projection and
# 1 x 1 convolutions, transformers' separate key and value) are done separately.

_MMDET_BLOCK = (
    ('attn.in_proj.', 'attn.attn.in_proj_'),
    ('attn.proj.', 'attn.attn.out_proj.'),
    ('mlp.fc1.', 'ffn.layers.0.'),
    ('mlp.dwconv.', 'ffn.layers.1.'),
    ('mlp.fc2.', 'ffn.layers.4.'),
    ('norm1.', 'norm1.'),
    ('norm2.', 'norm2.'),
    ('attn.sr.', 'attn.sr.'),
    ('attn.norm.', 'attn.norm.'),
)
# transformers' key and value become ``attn.k`` / ``attn.v``, then one ``attn.kv``
# (:func:`_hf_to_ours`)
_HF_BLOCK = (
    ('norm1.', 'layer_norm_1.'),
    ('norm2.', 'layer_norm_2.'),
    ('attn.q.', 'attention.query.'),
    ('attn.k.', 'attention.key.'),
    ('attn.v.', 'attention.value.'),
    ('attn.proj.', 'attention.proj.'),
    ('attn.sr.', 'attention.spatial_reduction.'),
    ('attn.norm.', 'attention.layer_norm.'),
    ('mlp.fc1.', 'mlp.dense1.'),
    ('mlp.dwconv.', 'mlp.dwconv.dwconv.'),
    ('mlp.fc2.', 'mlp.dense2.'),
)
_KEY_PAIRS: dict[str, list[tuple[str | None, str]]] = {
    'ours': [('', '')],
    'timm': [
        (None, 'head.'),
        ('stages.0.patch_embed.', 'patch_embed.'),
        ('stages.{i}.patch_embed.', 'stages.{i}.downsample.'),
    ],
    'timm_features': [
        ('stages.0.patch_embed.', 'patch_embed.'),
        ('stages.{i}.patch_embed.', 'stages_{i}.downsample.'),
        ('stages.{i}.', 'stages_{i}.'),
    ],
    'official': [  # stages counted from 1 (_STAGE_OFFSET)
        (None, 'head.'),
        ('stages.{i}.patch_embed.', 'patch_embed{i}.'),
        (
            'stages.{i}.blocks.{j}.mlp.dwconv.',
            'block{i}.{j}.mlp.dwconv.dwconv.',
        ),
        ('stages.{i}.blocks.', 'block{i}.'),
        ('stages.{i}.norm.', 'norm{i}.'),
    ],
    'mmdet': [
        ('stages.{i}.patch_embed.proj.', 'layers.{i}.0.projection.'),
        ('stages.{i}.patch_embed.norm.', 'layers.{i}.0.norm.'),
        *(
            ('stages.{i}.blocks.{j}.' + ours, 'layers.{i}.1.{j}.' + theirs)
            for ours, theirs in _MMDET_BLOCK
        ),
        ('stages.{i}.norm.', 'layers.{i}.2.'),
    ],
    'hf': [  # written under ``pvt_v2.``, read with or without it (_KEY_PREFIX)
        (None, 'classifier.'),
        (
            'stages.{i}.patch_embed.proj.',
            'encoder.layers.{i}.patch_embedding.proj.',
        ),
        (
            'stages.{i}.patch_embed.norm.',
            'encoder.layers.{i}.patch_embedding.layer_norm.',
        ),
        *(
            (
                'stages.{i}.blocks.{j}.' + ours,
                'encoder.layers.{i}.blocks.{j}.' + theirs,
            )
            for ours, theirs in _HF_BLOCK
        ),
        ('stages.{i}.norm.', 'encoder.layers.{i}.layer_norm.'),
    ],
}
_STAGE_OFFSET = {'official': 1}
_KEY_PREFIX = {'hf': 'pvt_v2.'}


@functools.cache
def _rules(fmt: str, to_ours: bool) -> list[tuple[re.Pattern, str | None]]:
    """The pairs of ``fmt`` as (pattern of the source key, target template)."""
    head = f'(?:{re.escape(_KEY_PREFIX.get(fmt, ""))})?' if to_ours else ''
    rules = []
    for ours, theirs in _KEY_PAIRS[fmt]:
        src, dst = (theirs, ours) if to_ours else (ours, theirs)
        if src is None:
            continue
        parts = re.split(r'\{([ij])\}', src)  # literal, name, literal, ...
        body = ''.join(
            rf'(?P<{p}>\d+)' if n % 2 else re.escape(p)
            for n, p in enumerate(parts)
        )
        rules.append((re.compile(f'^{head}{body}(?P<rest>.*)$'), dst))
    return rules


def _rename(
    state_dict: Mapping,
    fmt: str,
    to_ours: bool,
    refused: list[str] | None = None,
) -> StateDict:
    """Renames the keys by the pairs of ``fmt``. A key no pair matches is kept as it is
    (strict loading then reports it) or, when a ``refused`` list is given, appended to
    it; so is a key a pair drops."""
    offset = _STAGE_OFFSET.get(fmt, 0) * (-1 if to_ours else 1)
    prefix = '' if to_ours else _KEY_PREFIX.get(fmt, '')
    out = OrderedDict()
    for key, value in state_dict.items():
        for pattern, template in _rules(fmt, to_ours):
            m = pattern.match(key)
            if m is None:
                continue
            if template is not None:
                groups = m.groupdict()
                if 'i' in groups:
                    groups['i'] = int(groups['i']) + offset
                out[prefix + template.format(**groups) + m['rest']] = value
            elif refused is not None:
                refused.append(key)
            break
        else:
            if refused is None:
                out[key] = value  # unknown: strict loading reports it
            else:
                refused.append(key)
    return out


_MMDET_FC = re.compile(r'\.mlp\.fc[12]\.weight$')


def _mmdet_to_ours(state_dict: StateDict) -> StateDict:
    """Splits the in-projection into q and kv, and 1 x 1 convolutions into linears."""
    out = OrderedDict()
    for key, value in state_dict.items():
        if '.attn.in_proj.' in key:  # rows: q (C), then kv (2 C)
            dims = value.shape[0] // 3
            out[key.replace('.in_proj.', '.q.')] = value[:dims]
            out[key.replace('.in_proj.', '.kv.')] = value[dims:]
        elif _MMDET_FC.search(key) and value.dim() == 4:
            out[key] = value.flatten(1)
        else:
            out[key] = value
    return out


def _ours_to_mmdet(state_dict: StateDict) -> StateDict:
    """Fuses q and kv into mmdet's in-projection and makes the linears 1 x 1 convs."""
    for key, value in state_dict.items():
        if key.endswith('.attn.sr.weight') and value.shape[-1] == 1:
            raise ValueError(
                f'{key} is a 1 x 1 convolution: linear spatial-reduction attention (b2_li) '
                f'has no mmdet PyramidVisionTransformerV2 equivalent'
            )
        if (
            key.endswith('.attn.q.weight')
            and key[: -len('weight')] + 'bias' not in state_dict
        ):
            raise ValueError(
                f'{key} has no bias: mmdet PyramidVisionTransformerV2 with qkv_bias=False '
                f'also drops the output-projection bias, which this checkpoint has'
            )
    out = OrderedDict()
    for key, value in state_dict.items():
        if '.attn.q.' in key:
            out[key.replace('.q.', '.in_proj.')] = torch.cat(
                [value, state_dict[key.replace('.q.', '.kv.')]], dim=0
            )
        elif '.attn.kv.' in key:
            continue
        elif _MMDET_FC.search(key):
            out[key] = value.reshape(*value.shape, 1, 1)
        else:
            out[key] = value
    return out


_HF_KV = re.compile(r'^(.*\.attn\.)([kv])\.(weight|bias)$')


def _hf_to_ours(state_dict: StateDict) -> StateDict:
    """Joins transformers' key and value linears (renamed ``attn.k`` / ``attn.v``) into
    our ``attn.kv``: rows of the key, then of the value. A key or value without its
    partner (or of another shape) keeps its name, so strict loading reports it."""
    out = OrderedDict()
    for key, value in state_dict.items():
        m = _HF_KV.match(key)
        if m is None:
            out[key] = value
            continue
        k_key = f'{m[1]}k.{m[3]}'
        v_key = f'{m[1]}v.{m[3]}'
        k, v = state_dict.get(k_key), state_dict.get(v_key)
        if k is None or v is None or k.shape != v.shape:
            out[key] = value
        elif m[2] == 'k':  # the kv entry takes the key's place
            out[f'{m[1]}kv.{m[3]}'] = torch.cat([k, v], dim=0)
    return out


def _ours_to_hf(state_dict: StateDict) -> StateDict:
    """Splits our ``attn.kv`` into the key and value linears of transformers (as
    ``attn.k`` / ``attn.v``, which the rules rename)."""
    out = OrderedDict()
    for key, value in state_dict.items():
        if '.attn.kv.' in key:
            dims = value.shape[0] // 2
            out[key.replace('.kv.', '.k.')] = value[:dims]
            out[key.replace('.kv.', '.v.')] = value[dims:]
        else:
            out[key] = value
    return out


def check_format(fmt: str) -> None:
    """Raises a ValueError naming ``fmt`` unless it is one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise ValueError(
            f'Unknown checkpoint format {fmt!r}; expected one of {FORMATS}'
        )


def to_ours(state_dict: Mapping, src: str | None = None) -> StateDict:
    """Converts a PVT-v2 state dict from format ``src`` (None: detect it) to ours."""
    src = detect_format(state_dict) if src is None else src
    check_format(src)
    return rename_to_ours(state_dict, src)


def rename_to_ours(
    state_dict: Mapping, src: str, refused: list[str] | None = None
) -> StateDict:
    """:func:`to_ours` for a known ``src``; with a ``refused`` list, keys no rule maps
    (and a dropped classifier head) are appended to it instead of kept."""
    out = _rename(state_dict, src, True, refused)
    if src == 'mmdet':
        return _mmdet_to_ours(out)
    return _hf_to_ours(out) if src == 'hf' else out


def from_ours(state_dict: Mapping, dst: str) -> StateDict:
    """Converts a state dict of ours to format ``dst``."""
    check_format(dst)
    if dst == 'mmdet':
        state_dict = _ours_to_mmdet(OrderedDict(state_dict))
    elif dst == 'hf':
        state_dict = _ours_to_hf(OrderedDict(state_dict))
    return _rename(state_dict, dst, False)


def convert(
    state_dict: Mapping, dst: str, src: str | None = None
) -> StateDict:
    """Converts a PVT-v2 state dict from format ``src`` (None: detect it) to ``dst``."""
    return from_ours(to_ours(state_dict, src), dst)
