"""PVT-v2 checkpoint formats: reading, detection, conversion and strict loading.

The one converter module: :meth:`pvtfpn_mm.models.backbones.PVTv2.init_weights` and
``tools/convert_weights.py`` both use it. Formats (:data:`FORMATS`):

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

Block internals (``norm1``, ``attn.{q,kv,proj,sr,norm}``, ``norm2``,
``mlp.{fc1,dwconv,fc2}``) are named alike in ours, timm and the official release.
Converting *to* ours drops a classification ``head.*`` (it is not part of the
backbone); any other key that a format does not know is kept under its own name, so
strict loading reports it as unexpected.

A checkpoint may hold the state dict bare or under ``'state_dict'`` / ``'model'``, and
its keys may carry a prefix (``backbone.`` in a trained detector, ``module.`` from
DataParallel): :func:`extract_state_dict` finds it, or takes the ``prefix`` it is
given. Files are read with ``torch.load(..., weights_only=True)``.
"""
import os
import pickle
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

StateDict = Dict[str, torch.Tensor]

#: The checkpoint formats this module reads and writes.
FORMATS = ('ours', 'timm', 'timm_features', 'official', 'mmdet')
#: Prefixes tried, in order, when a checkpoint's keys are not a known format as they are.
AUTO_PREFIXES = ('backbone.', 'module.', 'module.backbone.')
#: The containers a checkpoint may hold its state dict in, tried in order.
STATE_DICT_KEYS = ('state_dict', 'model')


class CheckpointFormatError(ValueError):
    """The keys of a state dict are not a PVT-v2 checkpoint in any known format."""


class StateDictMismatchError(RuntimeError):
    """A (converted) state dict does not fit a model exactly.

    The message is a short summary: for each kind of mismatch its count and the first
    :attr:`SHOWN` keys (the full lists are the attributes).

    Attributes:
        missing (list[str]): Model keys the state dict lacks.
        unexpected (list[str]): State-dict keys the model lacks.
        mismatched (list[str]): ``'key: checkpoint shape vs model shape'`` entries.
        source (str): What was loaded (names the file).
    """

    #: How many keys of each kind the message shows.
    SHOWN = 5

    def __init__(self, missing: List[str], unexpected: List[str], mismatched: List[str],
                 source: str = 'state dict', hint: Optional[str] = None):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        self.source = source
        super().__init__(mismatch_summary(missing, unexpected, mismatched, source,
                                          self.SHOWN, hint))


def mismatch_summary(missing: Sequence[str], unexpected: Sequence[str],
                     mismatched: Sequence[str], source: str = 'state dict', shown: int = 5,
                     hint: Optional[str] = None) -> str:
    """``'<source> does not match the model:'`` and one line per kind of mismatch: its
    count and the first ``shown`` keys."""
    lines = [f'{source} does not match the model:']
    for title, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                        ('shape mismatches', mismatched)):
        if keys:
            more = f', ... ({len(keys) - shown} more)' if len(keys) > shown else ''
            lines.append(f'  {len(keys)} {title}: {", ".join(keys[:shown])}{more}')
    if hint:
        lines.append(hint)
    return '\n'.join(lines)


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read: empty, truncated, not a PyTorch file, or
    holding objects that safe loading (``weights_only=True``) does not allow."""


# --------------------------------------------------------------------------- reading

_ZIP_MAGIC = b'PK\x03\x04'


def _read_error(path: str, err: BaseException) -> CheckpointReadError:
    """A :class:`CheckpointReadError` naming ``path`` and saying what is wrong with it,
    in place of torch's message (which may suggest switching safe loading off)."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(512)
    text = str(err)
    where = f'checkpoint file {path!r} ({size} bytes)'
    found = re.search(r'GLOBAL ([\w.]+)', text)
    detail = re.search(r'WeightsUnpickler error: \s*(.+)', text)
    detail = detail.group(1).strip() if detail else (
        text.splitlines()[0] if text else type(err).__name__)
    detail = detail.split('. ')[0][:200]
    if 'weights_only' in detail:  # never pass on a hint to switch safe loading off
        detail = type(err).__name__
    if found or 'Unsupported global' in text:
        what = f' ({found.group(1)})' if found else ''
        return CheckpointReadError(
            f'{where} holds Python objects{what} that safe loading does not allow: '
            'pvtfpn_mm reads checkpoints with weights_only=True, which allows tensors, '
            'containers, numbers and strings plus what mmengine checkpoints need. Save '
            'the weights as a plain state dict of tensors (torch.save(model.state_dict(), '
            'path)) where the file was made')
    if head.startswith(_ZIP_MAGIC):
        return CheckpointReadError(
            f'{where} is a damaged or truncated PyTorch zip file (an interrupted save or '
            f'download?): {detail}')
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return CheckpointReadError(
            f'{where} is a text file, not a PyTorch checkpoint; it starts with '
            f'{head[:60].decode("ascii", "replace")!r}')
    return CheckpointReadError(
        f'{where} is not a PyTorch checkpoint: neither a torch.save zip file nor a pickle '
        f'of tensors (reading it stopped at: {detail})')


def read_checkpoint(path: str, map_location: Union[str, torch.device, Callable, None] = 'cpu'):
    """Reads a checkpoint file or ``http(s)://`` URL with safe loading (``weights_only``).

    ``~`` is expanded. Errors name the file and say what is wrong with it; none suggests
    switching safe loading off.

    Args:
        path (str): A file path or an ``http(s)://`` URL.
        map_location: As :func:`torch.load`. Defaults to ``'cpu'``.

    Returns:
        The loaded object (usually a dict).

    Raises:
        FileNotFoundError: ``path`` is not a URL and no such file exists.
        IsADirectoryError: ``path`` is a folder.
        CheckpointReadError: The file is empty, truncated, not a PyTorch file, or holds
            objects that safe loading refuses.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'checkpoint must be a file path or URL, got {path!r} '
                        f'({type(path).__name__})')
    path = os.fspath(path)
    if path.startswith(('http://', 'https://')):
        return torch.hub.load_state_dict_from_url(
            path, map_location=map_location, weights_only=True)
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f'checkpoint {path!r} is a folder, not a file')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint file {path!r} does not exist')
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(
            f'checkpoint file {path!r} is empty (0 bytes): an interrupted save or download?')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError,
            IndexError, TypeError, AttributeError, UnicodeDecodeError) as err:
        raise _read_error(path, err) from None


def _unwrap(checkpoint: Mapping) -> Mapping:
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def _strip_prefix(state_dict: Mapping, prefix: str) -> StateDict:
    return OrderedDict(
        (k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))


def extract_state_dict(checkpoint: Mapping, prefix: Optional[str] = None,
                       source: str = 'checkpoint') -> Tuple[StateDict, str]:
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
            f'{source} holds a {type(checkpoint).__name__}, not a state dict')
    state_dict = _unwrap(checkpoint)
    if prefix is not None:
        stripped = _strip_prefix(state_dict, prefix)
        if not stripped:
            raise CheckpointFormatError(f'{source} has no key with prefix {prefix!r}')
        return stripped, detect_format(stripped, source=source)
    candidates = [OrderedDict(state_dict)]
    candidates += [_strip_prefix(state_dict, p) for p in AUTO_PREFIXES]
    for candidate in candidates:
        fmt = _detect_format(candidate)
        if fmt is not None:
            return candidate, fmt
    return candidates[0], detect_format(candidates[0], source=source)  # raises


# ------------------------------------------------------------------------- detection


def _detect_format(state_dict: Mapping) -> Optional[str]:
    keys = state_dict.keys()
    if 'stages.0.patch_embed.proj.weight' in keys:
        return 'ours'
    if 'patch_embed.proj.weight' in keys:
        return 'timm_features' if any(k.startswith('stages_') for k in keys) else 'timm'
    if 'patch_embed1.proj.weight' in keys:
        return 'official'
    if 'layers.0.0.projection.weight' in keys and any('.ffn.layers.' in k for k in keys):
        return 'mmdet'
    return None


def detect_format(state_dict: Mapping, source: str = 'state dict') -> str:
    """The format (one of :data:`FORMATS`) of a PVT-v2 state dict, from its keys.

    Raises:
        CheckpointFormatError: The keys are none of :data:`FORMATS`; the message names
            ``source`` and shows a few keys.
    """
    fmt = _detect_format(state_dict)
    if fmt is None:
        sample = ', '.join(list(state_dict)[:5]) or '(none)'
        raise CheckpointFormatError(
            f'{source} is not a PVT-v2 checkpoint in any of the formats {FORMATS}; '
            f'its first keys are: {sample}')
    return fmt


# ------------------------------------------------------------------ key conversions
# Each format has a key map to ours and one from ours: a list of (pattern, replacement)
# rules, the first matching rule wins; a replacement of None drops the key. Tensor
# changes (mmdet's fused in-projection and 1 x 1 convolutions) are done separately.

Rule = Tuple[str, Optional[Union[str, Callable[[re.Match], str]]]]


def _shift(group: int, offset: int, template: str) -> Callable[[re.Match], str]:
    """A replacement that writes ``int(match[group]) + offset`` into ``template``."""

    def replace(m: re.Match) -> str:
        return m.expand(template.replace('{n}', str(int(m.group(group)) + offset)))

    return replace


_KEY_RULES: Dict[str, Tuple[List[Rule], List[Rule]]] = {
    # format: (rules to ours, rules from ours)
    'ours': ([(r'^(.*)$', r'\1')], [(r'^(.*)$', r'\1')]),
    'timm': (
        [(r'^head\.', None),
         (r'^patch_embed\.(.*)$', r'stages.0.patch_embed.\1'),
         (r'^stages\.(\d+)\.downsample\.(.*)$', r'stages.\1.patch_embed.\2')],
        [(r'^stages\.0\.patch_embed\.(.*)$', r'patch_embed.\1'),
         (r'^stages\.(\d+)\.patch_embed\.(.*)$', r'stages.\1.downsample.\2')]),
    'timm_features': (
        [(r'^patch_embed\.(.*)$', r'stages.0.patch_embed.\1'),
         (r'^stages_(\d+)\.downsample\.(.*)$', r'stages.\1.patch_embed.\2'),
         (r'^stages_(\d+)\.(.*)$', r'stages.\1.\2')],
        [(r'^stages\.0\.patch_embed\.(.*)$', r'patch_embed.\1'),
         (r'^stages\.(\d+)\.patch_embed\.(.*)$', r'stages_\1.downsample.\2'),
         (r'^stages\.(\d+)\.(.*)$', r'stages_\1.\2')]),
    'official': (
        [(r'^head\.', None),
         (r'^patch_embed(\d+)\.(.*)$', _shift(1, -1, r'stages.{n}.patch_embed.\2')),
         (r'^block(\d+)\.(\d+)\.mlp\.dwconv\.dwconv\.(.*)$',
          _shift(1, -1, r'stages.{n}.blocks.\2.mlp.dwconv.\3')),
         (r'^block(\d+)\.(.*)$', _shift(1, -1, r'stages.{n}.blocks.\2')),
         (r'^norm(\d+)\.(.*)$', _shift(1, -1, r'stages.{n}.norm.\2'))],
        [(r'^stages\.(\d+)\.patch_embed\.(.*)$', _shift(1, 1, r'patch_embed{n}.\2')),
         (r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.dwconv\.(.*)$',
          _shift(1, 1, r'block{n}.\2.mlp.dwconv.dwconv.\3')),
         (r'^stages\.(\d+)\.blocks\.(.*)$', _shift(1, 1, r'block{n}.\2')),
         (r'^stages\.(\d+)\.norm\.(.*)$', _shift(1, 1, r'norm{n}.\2'))]),
    'mmdet': (
        [(r'^layers\.(\d+)\.0\.projection\.(.*)$', r'stages.\1.patch_embed.proj.\2'),
         (r'^layers\.(\d+)\.0\.norm\.(.*)$', r'stages.\1.patch_embed.norm.\2'),
         (r'^layers\.(\d+)\.1\.(\d+)\.attn\.attn\.in_proj_(weight|bias)$',
          r'stages.\1.blocks.\2.attn.in_proj.\3'),
         (r'^layers\.(\d+)\.1\.(\d+)\.attn\.attn\.out_proj\.(.*)$',
          r'stages.\1.blocks.\2.attn.proj.\3'),
         (r'^layers\.(\d+)\.1\.(\d+)\.ffn\.layers\.0\.(.*)$', r'stages.\1.blocks.\2.mlp.fc1.\3'),
         (r'^layers\.(\d+)\.1\.(\d+)\.ffn\.layers\.1\.(.*)$',
          r'stages.\1.blocks.\2.mlp.dwconv.\3'),
         (r'^layers\.(\d+)\.1\.(\d+)\.ffn\.layers\.4\.(.*)$', r'stages.\1.blocks.\2.mlp.fc2.\3'),
         (r'^layers\.(\d+)\.1\.(\d+)\.(norm1|norm2|attn\.sr|attn\.norm)\.(.*)$',
          r'stages.\1.blocks.\2.\3.\4'),
         (r'^layers\.(\d+)\.2\.(.*)$', r'stages.\1.norm.\2')],
        [(r'^stages\.(\d+)\.patch_embed\.proj\.(.*)$', r'layers.\1.0.projection.\2'),
         (r'^stages\.(\d+)\.patch_embed\.norm\.(.*)$', r'layers.\1.0.norm.\2'),
         (r'^stages\.(\d+)\.blocks\.(\d+)\.attn\.in_proj\.(weight|bias)$',
          r'layers.\1.1.\2.attn.attn.in_proj_\3'),
         (r'^stages\.(\d+)\.blocks\.(\d+)\.attn\.proj\.(.*)$',
          r'layers.\1.1.\2.attn.attn.out_proj.\3'),
         (r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(.*)$', r'layers.\1.1.\2.ffn.layers.0.\3'),
         (r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.dwconv\.(.*)$',
          r'layers.\1.1.\2.ffn.layers.1.\3'),
         (r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(.*)$', r'layers.\1.1.\2.ffn.layers.4.\3'),
         (r'^stages\.(\d+)\.blocks\.(\d+)\.(.*)$', r'layers.\1.1.\2.\3'),
         (r'^stages\.(\d+)\.norm\.(.*)$', r'layers.\1.2.\2')]),
}


def _rename(state_dict: Mapping, rules: Sequence[Rule]) -> StateDict:
    out = OrderedDict()
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            if re.match(pattern, key):
                if replacement is not None:
                    out[re.sub(pattern, replacement, key)] = value
                break
        else:
            out[key] = value  # unknown: strict loading reports it
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
                f'has no mmdet PyramidVisionTransformerV2 equivalent')
        if key.endswith('.attn.q.weight') and key[:-len('weight')] + 'bias' not in state_dict:
            raise ValueError(
                f'{key} has no bias: mmdet PyramidVisionTransformerV2 with qkv_bias=False '
                f'also drops the output-projection bias, which this checkpoint has')
    out = OrderedDict()
    for key, value in state_dict.items():
        if '.attn.q.' in key:
            out[key.replace('.q.', '.in_proj.')] = torch.cat(
                [value, state_dict[key.replace('.q.', '.kv.')]], dim=0)
        elif '.attn.kv.' in key:
            continue
        elif _MMDET_FC.search(key):
            out[key] = value.reshape(*value.shape, 1, 1)
        else:
            out[key] = value
    return out


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f'Unknown checkpoint format {fmt!r}; expected one of {FORMATS}')


def to_ours(state_dict: Mapping, src: Optional[str] = None) -> StateDict:
    """Converts a PVT-v2 state dict from format ``src`` (None: detect it) to ours."""
    src = detect_format(state_dict) if src is None else src
    _check_format(src)
    out = _rename(state_dict, _KEY_RULES[src][0])
    return _mmdet_to_ours(out) if src == 'mmdet' else out


def from_ours(state_dict: Mapping, dst: str) -> StateDict:
    """Converts a state dict of ours to format ``dst``."""
    _check_format(dst)
    state_dict = _ours_to_mmdet(OrderedDict(state_dict)) if dst == 'mmdet' else state_dict
    return _rename(state_dict, _KEY_RULES[dst][1])


def convert(state_dict: Mapping, dst: str, src: Optional[str] = None) -> StateDict:
    """Converts a PVT-v2 state dict from format ``src`` (None: detect it) to ``dst``."""
    return from_ours(to_ours(state_dict, src), dst)


# --------------------------------------------------------------------------- loading


def check_tensors(state_dict: Mapping, source: str = 'state dict') -> None:
    """Raises :class:`CheckpointFormatError` naming the first entry of ``state_dict`` that
    is not a tensor (a state dict holds tensors only)."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointFormatError(
            f'{source} holds a {type(state_dict).__name__}, not a state dict')
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointFormatError(
                f'{source} is not a state dict of tensors: {key!r} holds a '
                f'{type(value).__name__} ({str(value)[:60]!r})')


def state_dict_mismatches(model: nn.Module, state_dict: Mapping
                          ) -> Tuple[List[str], List[str], List[str]]:
    """The missing keys, unexpected keys and ``'key: shape vs model shape'`` entries of
    ``state_dict`` against ``model.state_dict()``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f'{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}'
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, mismatched


def load_state_dict_strict(model: nn.Module, state_dict: Mapping,
                           source: str = 'state dict', assign: bool = False,
                           hint: Optional[str] = None) -> None:
    """``model.load_state_dict(state_dict)``, after checking that keys and shapes match.

    Args:
        model (nn.Module): The model.
        state_dict (Mapping): Its state dict.
        source (str): Names the state dict in errors. Defaults to ``'state dict'``.
        assign (bool): Make the model's parameters the state dict's tensors instead of
            copying them (for a model built on the meta device). Defaults to False.
        hint (str, optional): A last line for the error message (e.g. how to allow a
            partial load). Defaults to None.

    Raises:
        CheckpointFormatError: An entry of ``state_dict`` is not a tensor.
        StateDictMismatchError: Counts the missing and unexpected keys and the shape
            mismatches and names the first few of each.
    """
    check_tensors(state_dict, source)
    missing, unexpected, mismatched = state_dict_mismatches(model, state_dict)
    if missing or unexpected or mismatched:
        raise StateDictMismatchError(missing, unexpected, mismatched, source=source,
                                     hint=hint)
    model.load_state_dict(state_dict, strict=True, assign=assign)


def load_state_dict_partial(model: nn.Module, state_dict: Mapping,
                            source: str = 'state dict') -> str:
    """Loads the entries of ``state_dict`` whose key and shape fit ``model``; the rest of
    the model keeps its values. The explicit opt-in counterpart of
    :func:`load_state_dict_strict`.

    Returns:
        str: What was loaded: ``'<source>: loaded N of the model's M tensors'`` and, for
        each kind of mismatch, its count and first keys.

    Raises:
        CheckpointFormatError: An entry of ``state_dict`` is not a tensor.
    """
    check_tensors(state_dict, source)
    expected = model.state_dict()
    missing, unexpected, mismatched = state_dict_mismatches(model, state_dict)
    fitting = OrderedDict(
        (k, v) for k, v in state_dict.items()
        if k in expected and tuple(v.shape) == tuple(expected[k].shape))
    merged = OrderedDict(expected)  # the model's own values where nothing fits
    merged.update(fitting)
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        merged._metadata = metadata
    model.load_state_dict(merged, strict=True)
    summary = f'{source}: partial load (allowed): loaded {len(fitting)} of the model\'s ' \
        f'{len(expected)} tensors'
    if missing or unexpected or mismatched:
        details = mismatch_summary(missing, unexpected, mismatched, 'x',
                                   StateDictMismatchError.SHOWN).split('\n')[1:]
        summary += '; not loaded:\n' + '\n'.join(details)
    return summary


def load_pretrained(model: nn.Module, checkpoint: Union[str, Mapping],
                    prefix: Optional[str] = None, assign: bool = False) -> str:
    """Loads a PVT-v2 checkpoint of any format into ``model`` (a ``PVTv2``), strictly.

    Args:
        model (nn.Module): The backbone.
        checkpoint (str | Mapping): A file path, an ``http(s)://`` URL, or a loaded
            checkpoint.
        prefix (str, optional): See :func:`extract_state_dict`. Defaults to None.
        assign (bool): See :func:`load_state_dict_strict`. Defaults to False.

    Returns:
        str: The checkpoint's format.

    Raises:
        FileNotFoundError: No such checkpoint file.
        CheckpointFormatError: Not a PVT-v2 checkpoint.
        StateDictMismatchError: A PVT-v2 checkpoint that does not fit ``model``.
    """
    source = f'checkpoint {checkpoint!r}' if isinstance(checkpoint, str) else 'checkpoint'
    if isinstance(checkpoint, str):
        checkpoint = read_checkpoint(checkpoint)
    state_dict, fmt = extract_state_dict(checkpoint, prefix=prefix, source=source)
    load_state_dict_strict(
        model, to_ours(state_dict, fmt), source=f'{source} ({fmt})', assign=assign)
    return fmt


def convert_file(src_path: str, dst_path: str, dst: str, src: Optional[str] = None,
                 prefix: Optional[str] = None) -> Tuple[str, int]:
    """Converts a checkpoint file to a bare state dict of format ``dst``.

    Returns:
        tuple[str, int]: The source format and the number of tensors written.
    """
    _check_format(dst)
    source = f'checkpoint {src_path!r}'
    state_dict, detected = extract_state_dict(
        read_checkpoint(src_path), prefix=prefix, source=source)
    if src is not None and src != detected:
        raise CheckpointFormatError(f'{source} is in format {detected!r}, not {src!r}')
    out = convert(state_dict, dst, detected)
    torch.save(out, dst_path)
    return detected, len(out)


# ---------------------------------------------------------- whole-checkpoint conversion


def convert_to_model_layout(state_dict: Mapping,
                            model: nn.Module) -> Tuple[StateDict, Optional[str]]:
    """A whole detector's / segmentor's state dict in ``model``'s own key layout.

    The loading path of our runner calls this right before its strict load: a
    checkpoint released in a foreign layout (mmdet 3.x ``PyramidVisionTransformerV2``
    detectors, the official whai362/PVT detection and segmentation checkpoints) is
    converted on the fly, and the caller logs a line naming the layout it came from.

    Args:
        state_dict (Mapping): The checkpoint's state dict (already unwrapped from
            ``'state_dict'`` / ``'model'``).
        model (nn.Module): The model it is loaded into (a detector or segmentor built
            from one of our configs); only its ``state_dict()`` keys are read.

    Returns:
        tuple[dict, str | None]: The state dict in ``model``'s layout, and the name of
        the foreign layout it was converted from, or None when it already was in
        ``model``'s layout (then it is returned as it is) or in no layout this module
        knows (strict loading then reports the mismatch).
    """
    return OrderedDict(state_dict), None
