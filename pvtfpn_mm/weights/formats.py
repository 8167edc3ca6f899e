"""PVT-v2 backbone checkpoint formats: detection and key conversion, as rule tables.

The one backbone converter: :meth:`pvtfpn_mm.models.backbones.PVTv2.init_weights`,
the whole-model layouts (:mod:`.layouts`) and ``tools/convert_weights.py`` use it.
Formats (:data:`FORMATS`):

``'ours'``
    :class:`~pvtfpn_mm.models.backbones.PVTv2`: ``stages.{i}.patch_embed.*``,
    ``stages.{i}.blocks.{j}.*``, ``stages.{i}.norm.*``.
``'timm'``
    timm's ``pvt_v2_*``: ``patch_embed.*`` (stage 0), ``stages.{i}.downsample.*``
    (stages 1-3), ``stages.{i}.blocks.{j}.*``, ``stages.{i}.norm.*``, ``head.*``.
``'timm_features'``
    timm's ``pvt_v2_*(features_only=True)``: as ``'timm'`` with ``stages_{i}`` and no
    head.
``'official'``
    whai362/PVT: ``patch_embed{i+1}.*``, ``block{i+1}.{j}.*`` (``mlp.dwconv.dwconv``),
    ``norm{i+1}.*``, ``head.*``.
``'mmdet'``
    mmdet's ``PyramidVisionTransformerV2``: ``layers.{i}.0`` (patch embedding, conv
    ``projection``), ``layers.{i}.1.{j}`` (``attn.attn.in_proj_{weight,bias}`` holds
    q and kv concatenated, ``attn.attn.out_proj``, ``ffn.layers.{0,1,4}`` are 1 x 1,
    depthwise and 1 x 1 convolutions) and ``layers.{i}.2`` (stage norm). mmdet has no
    linear spatial-reduction attention (b2_li).
``'hf'``
    Hugging Face transformers' ``PvtV2ForImageClassification`` -- the layout of the
    hub's ``OpenGVLab/pvt_v2_b0`` ... ``b5`` and ``pvt_v2_b2_linear`` files:
    ``pvt_v2.encoder.layers.{i}.patch_embedding.{proj,layer_norm}``,
    ``pvt_v2.encoder.layers.{i}.blocks.{j}.{layer_norm_1,layer_norm_2}``,
    ``....attention.{query,key,value,proj,spatial_reduction,layer_norm}`` (key and value
    are two linears, ours one ``kv``), ``....mlp.{dense1,dwconv.dwconv,dense2}``,
    ``pvt_v2.encoder.layers.{i}.layer_norm`` and ``classifier.*``. Read also without the
    ``pvt_v2.`` prefix (``PvtV2Model`` / ``PvtV2Backbone`` state dicts); written with it
    (what ``PvtV2Model``, ``PvtV2Backbone`` and ``PvtV2ForImageClassification``'s
    ``from_pretrained`` read). transformers' LayerNorms all use eps 1e-6: build
    ``PVTv2(embed_norm_eps=1e-6)`` for its weights (as for mmdet's).

Block internals (``norm1``, ``attn.{q,kv,proj,sr,norm}``, ``norm2``,
``mlp.{fc1,dwconv,fc2}``) are named alike in ours, timm and the official release.
Converting *to* ours drops a classification ``head.*`` / ``classifier.*`` (it is not part of the
backbone); any other key that a format does not know is kept under its own name, so
strict loading reports it as unexpected.

A checkpoint may hold the state dict bare or under ``'state_dict'`` / ``'model'``, and
its keys may carry a prefix (``backbone.`` in a trained detector, ``module.`` from
DataParallel): :func:`extract_state_dict` finds it, or takes the ``prefix`` it is
given.
"""

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import torch

from .io import unwrap_state_dict

StateDict = dict[str, torch.Tensor]

#: The checkpoint formats this module reads and writes.
FORMATS = ('ours', 'timm', 'timm_features', 'official', 'mmdet', 'hf')
#: Prefixes tried, in order, when a checkpoint's keys are not a known format as they are.
AUTO_PREFIXES = ('backbone.', 'module.', 'module.backbone.')


class CheckpointFormatError(ValueError):
    """The keys of a state dict are not a PVT-v2 checkpoint in any known format."""


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
    if not isinstance(checkpoint, Mapping):
        raise CheckpointFormatError(
            f'{source} holds a {type(checkpoint).__name__}, not a state dict'
        )
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
# Each format has a key map to ours and one from ours: a list of (pattern, replacement)
# rules, the first matching rule wins; a replacement of None drops the key. Tensor
# changes (mmdet's fused in-projection and 1 x 1 convolutions, transformers' separate
# key and value) are done separately.

Rule = tuple[str, str | Callable[[re.Match], str] | None]


def _shift(
    group: int, offset: int, template: str
) -> Callable[[re.Match], str]:
    """A replacement that writes ``int(match[group]) + offset`` into ``template``."""

    def replace(m: re.Match) -> str:
        return m.expand(
            template.replace('{n}', str(int(m.group(group)) + offset))
        )

    return replace


# transformers' module names -> ours; key and value become ``attn.k`` / ``attn.v`` first,
# then one ``attn.kv`` (:func:`_hf_to_ours`).
_HF_ATTN_TO_OURS = {
    'query': 'q',
    'key': 'k',
    'value': 'v',
    'proj': 'proj',
    'spatial_reduction': 'sr',
    'layer_norm': 'norm',
}
_OURS_ATTN_TO_HF = {v: k for k, v in _HF_ATTN_TO_OURS.items()}
_HF_MLP_TO_OURS = {'dense1': 'fc1', 'dwconv.dwconv': 'dwconv', 'dense2': 'fc2'}
_OURS_MLP_TO_HF = {v: k for k, v in _HF_MLP_TO_OURS.items()}

_KEY_RULES: dict[str, tuple[list[Rule], list[Rule]]] = {
    # format: (rules to ours, rules from ours)
    'ours': ([(r'^(.*)$', r'\1')], [(r'^(.*)$', r'\1')]),
    'timm': (
        [
            (r'^head\.', None),
            (r'^patch_embed\.(.*)$', r'stages.0.patch_embed.\1'),
            (
                r'^stages\.(\d+)\.downsample\.(.*)$',
                r'stages.\1.patch_embed.\2',
            ),
        ],
        [
            (r'^stages\.0\.patch_embed\.(.*)$', r'patch_embed.\1'),
            (
                r'^stages\.(\d+)\.patch_embed\.(.*)$',
                r'stages.\1.downsample.\2',
            ),
        ],
    ),
    'timm_features': (
        [
            (r'^patch_embed\.(.*)$', r'stages.0.patch_embed.\1'),
            (r'^stages_(\d+)\.downsample\.(.*)$', r'stages.\1.patch_embed.\2'),
            (r'^stages_(\d+)\.(.*)$', r'stages.\1.\2'),
        ],
        [
            (r'^stages\.0\.patch_embed\.(.*)$', r'patch_embed.\1'),
            (
                r'^stages\.(\d+)\.patch_embed\.(.*)$',
                r'stages_\1.downsample.\2',
            ),
            (r'^stages\.(\d+)\.(.*)$', r'stages_\1.\2'),
        ],
    ),
    'official': (
        [
            (r'^head\.', None),
            (
                r'^patch_embed(\d+)\.(.*)$',
                _shift(1, -1, r'stages.{n}.patch_embed.\2'),
            ),
            (
                r'^block(\d+)\.(\d+)\.mlp\.dwconv\.dwconv\.(.*)$',
                _shift(1, -1, r'stages.{n}.blocks.\2.mlp.dwconv.\3'),
            ),
            (r'^block(\d+)\.(.*)$', _shift(1, -1, r'stages.{n}.blocks.\2')),
            (r'^norm(\d+)\.(.*)$', _shift(1, -1, r'stages.{n}.norm.\2')),
        ],
        [
            (
                r'^stages\.(\d+)\.patch_embed\.(.*)$',
                _shift(1, 1, r'patch_embed{n}.\2'),
            ),
            (
                r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.dwconv\.(.*)$',
                _shift(1, 1, r'block{n}.\2.mlp.dwconv.dwconv.\3'),
            ),
            (r'^stages\.(\d+)\.blocks\.(.*)$', _shift(1, 1, r'block{n}.\2')),
            (r'^stages\.(\d+)\.norm\.(.*)$', _shift(1, 1, r'norm{n}.\2')),
        ],
    ),
    'mmdet': (
        [
            (
                r'^layers\.(\d+)\.0\.projection\.(.*)$',
                r'stages.\1.patch_embed.proj.\2',
            ),
            (
                r'^layers\.(\d+)\.0\.norm\.(.*)$',
                r'stages.\1.patch_embed.norm.\2',
            ),
            (
                r'^layers\.(\d+)\.1\.(\d+)\.attn\.attn\.in_proj_(weight|bias)$',
                r'stages.\1.blocks.\2.attn.in_proj.\3',
            ),
            (
                r'^layers\.(\d+)\.1\.(\d+)\.attn\.attn\.out_proj\.(.*)$',
                r'stages.\1.blocks.\2.attn.proj.\3',
            ),
            (
                r'^layers\.(\d+)\.1\.(\d+)\.ffn\.layers\.0\.(.*)$',
                r'stages.\1.blocks.\2.mlp.fc1.\3',
            ),
            (
                r'^layers\.(\d+)\.1\.(\d+)\.ffn\.layers\.1\.(.*)$',
                r'stages.\1.blocks.\2.mlp.dwconv.\3',
            ),
            (
                r'^layers\.(\d+)\.1\.(\d+)\.ffn\.layers\.4\.(.*)$',
                r'stages.\1.blocks.\2.mlp.fc2.\3',
            ),
            (
                r'^layers\.(\d+)\.1\.(\d+)\.(norm1|norm2|attn\.sr|attn\.norm)\.(.*)$',
                r'stages.\1.blocks.\2.\3.\4',
            ),
            (r'^layers\.(\d+)\.2\.(.*)$', r'stages.\1.norm.\2'),
        ],
        [
            (
                r'^stages\.(\d+)\.patch_embed\.proj\.(.*)$',
                r'layers.\1.0.projection.\2',
            ),
            (
                r'^stages\.(\d+)\.patch_embed\.norm\.(.*)$',
                r'layers.\1.0.norm.\2',
            ),
            (
                r'^stages\.(\d+)\.blocks\.(\d+)\.attn\.in_proj\.(weight|bias)$',
                r'layers.\1.1.\2.attn.attn.in_proj_\3',
            ),
            (
                r'^stages\.(\d+)\.blocks\.(\d+)\.attn\.proj\.(.*)$',
                r'layers.\1.1.\2.attn.attn.out_proj.\3',
            ),
            (
                r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(.*)$',
                r'layers.\1.1.\2.ffn.layers.0.\3',
            ),
            (
                r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.dwconv\.(.*)$',
                r'layers.\1.1.\2.ffn.layers.1.\3',
            ),
            (
                r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(.*)$',
                r'layers.\1.1.\2.ffn.layers.4.\3',
            ),
            (r'^stages\.(\d+)\.blocks\.(\d+)\.(.*)$', r'layers.\1.1.\2.\3'),
            (r'^stages\.(\d+)\.norm\.(.*)$', r'layers.\1.2.\2'),
        ],
    ),
    'hf': (
        [
            (r'^classifier\.', None),
            (
                r'^(?:pvt_v2\.)?encoder\.layers\.(\d+)\.patch_embedding\.proj\.(.*)$',
                r'stages.\1.patch_embed.proj.\2',
            ),
            (
                r'^(?:pvt_v2\.)?encoder\.layers\.(\d+)\.patch_embedding\.layer_norm\.(.*)$',
                r'stages.\1.patch_embed.norm.\2',
            ),
            (
                r'^(?:pvt_v2\.)?encoder\.layers\.(\d+)\.blocks\.(\d+)\.layer_norm_([12])\.(.*)$',
                r'stages.\1.blocks.\2.norm\3.\4',
            ),
            (
                r'^(?:pvt_v2\.)?encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.'
                r'(query|key|value|proj|spatial_reduction|layer_norm)\.(.*)$',
                lambda m: (
                    f'stages.{m[1]}.blocks.{m[2]}.attn.'
                    f'{_HF_ATTN_TO_OURS[m[3]]}.{m[4]}'
                ),
            ),
            (
                r'^(?:pvt_v2\.)?encoder\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.'
                r'(dense1|dwconv\.dwconv|dense2)\.(.*)$',
                lambda m: (
                    f'stages.{m[1]}.blocks.{m[2]}.mlp.'
                    f'{_HF_MLP_TO_OURS[m[3]]}.{m[4]}'
                ),
            ),
            (
                r'^(?:pvt_v2\.)?encoder\.layers\.(\d+)\.layer_norm\.(.*)$',
                r'stages.\1.norm.\2',
            ),
        ],
        [
            (
                r'^stages\.(\d+)\.patch_embed\.proj\.(.*)$',
                r'pvt_v2.encoder.layers.\1.patch_embedding.proj.\2',
            ),
            (
                r'^stages\.(\d+)\.patch_embed\.norm\.(.*)$',
                r'pvt_v2.encoder.layers.\1.patch_embedding.layer_norm.\2',
            ),
            (
                r'^stages\.(\d+)\.blocks\.(\d+)\.norm([12])\.(.*)$',
                r'pvt_v2.encoder.layers.\1.blocks.\2.layer_norm_\3.\4',
            ),
            (
                r'^stages\.(\d+)\.blocks\.(\d+)\.attn\.(q|k|v|proj|sr|norm)\.(.*)$',
                lambda m: (
                    f'pvt_v2.encoder.layers.{m[1]}.blocks.{m[2]}.attention.'
                    f'{_OURS_ATTN_TO_HF[m[3]]}.{m[4]}'
                ),
            ),
            (
                r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.(fc1|dwconv|fc2)\.(.*)$',
                lambda m: (
                    f'pvt_v2.encoder.layers.{m[1]}.blocks.{m[2]}.mlp.'
                    f'{_OURS_MLP_TO_HF[m[3]]}.{m[4]}'
                ),
            ),
            (
                r'^stages\.(\d+)\.norm\.(.*)$',
                r'pvt_v2.encoder.layers.\1.layer_norm.\2',
            ),
        ],
    ),
}


def _rename(
    state_dict: Mapping,
    rules: Sequence[Rule],
    refused: list[str] | None = None,
) -> StateDict:
    """Renames the keys by ``rules``. A key no rule matches is kept as it is (strict
    loading then reports it) or, when a ``refused`` list is given, appended to it; so
    is a key a rule drops."""
    out = OrderedDict()
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            if re.match(pattern, key):
                if replacement is not None:
                    out[re.sub(pattern, replacement, key)] = value
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
    out = _rename(state_dict, _KEY_RULES[src][0], refused)
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
    return _rename(state_dict, _KEY_RULES[dst][1])


def convert(
    state_dict: Mapping, dst: str, src: str | None = None
) -> StateDict:
    """Converts a PVT-v2 state dict from format ``src`` (None: detect it) to ``dst``."""
    return from_ours(to_ours(state_dict, src), dst)
