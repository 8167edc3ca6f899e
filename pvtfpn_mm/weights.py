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
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

StateDict = dict[str, torch.Tensor]

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

    def __init__(
        self,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[str],
        source: str = 'state dict',
        hint: str | None = None,
    ):
        self.missing, self.unexpected, self.mismatched = (
            missing,
            unexpected,
            mismatched,
        )
        self.source = source
        super().__init__(
            mismatch_summary(
                missing, unexpected, mismatched, source, self.SHOWN, hint
            )
        )


def mismatch_summary(
    missing: Sequence[str],
    unexpected: Sequence[str],
    mismatched: Sequence[str],
    source: str = 'state dict',
    shown: int = 5,
    hint: str | None = None,
) -> str:
    """``'<source> does not match the model:'`` and one line per kind of mismatch: its
    count and the first ``shown`` keys."""
    lines = [f'{source} does not match the model:']
    for title, keys in (
        ('missing keys', missing),
        ('unexpected keys', unexpected),
        ('shape mismatches', mismatched),
    ):
        if keys:
            more = (
                f', ... ({len(keys) - shown} more)'
                if len(keys) > shown
                else ''
            )
            lines.append(
                f'  {len(keys)} {title}: {", ".join(keys[:shown])}{more}'
            )
    if hint:
        lines.append(hint)
    return '\n'.join(lines)


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read: empty, truncated, not a PyTorch file, or
    holding objects that safe loading (``weights_only=True``) does not allow."""


# --------------------------------------------------------------------------- reading

_ZIP_MAGIC = b'PK\x03\x04'
#: What ``torch.load`` raises on a damaged or foreign file.
READ_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    KeyError,
    ValueError,
    IndexError,
    TypeError,
    AttributeError,
    UnicodeDecodeError,
)


def checkpoint_read_error(
    path: str, err: BaseException
) -> CheckpointReadError:
    """A :class:`CheckpointReadError` naming ``path`` and saying what is wrong with it,
    in place of torch's message (which may suggest switching safe loading off)."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(512)
    text = str(err)
    where = f'checkpoint file {path!r} ({size} bytes)'
    # torch >= 2.4 names the global ("GLOBAL x.y ..."), older torch an "Unsupported class"
    found = re.search(r'GLOBAL ([\w.]+)', text) or re.search(
        r'Unsupported class ([\w.]+)', text
    )
    unpickler = re.search(r'WeightsUnpickler error: \s*(.+)', text)
    detail = (
        unpickler.group(1).strip()
        if unpickler
        else (text.splitlines()[0] if text else type(err).__name__)
    )
    detail = detail.split('. ')[0][:200]
    # never pass on a hint to switch safe loading off
    if 'weights_only' in detail:
        detail = type(err).__name__
    if found or 'Unsupported global' in text:
        what = f' ({found.group(1)})' if found else ''
        return CheckpointReadError(
            f'{where} holds Python objects{what} that safe loading does not allow: '
            'pvtfpn_mm reads checkpoints with weights_only=True, which allows tensors, '
            'containers, numbers and strings plus what mmengine checkpoints need. Save '
            'the weights as a plain state dict of tensors (torch.save(model.state_dict(), '
            'path)) where the file was made'
        )
    if head.startswith(_ZIP_MAGIC):
        return CheckpointReadError(
            f'{where} is a damaged or truncated PyTorch zip file (an interrupted save or '
            f'download?): {detail}'
        )
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return CheckpointReadError(
            f'{where} is a text file, not a PyTorch checkpoint; it starts with '
            f'{head[:60].decode("ascii", "replace")!r}'
        )
    return CheckpointReadError(
        f'{where} is not a PyTorch checkpoint: neither a torch.save zip file nor a pickle '
        f'of tensors (reading it stopped at: {detail})'
    )


def read_checkpoint(
    path: str, map_location: str | torch.device | Callable | None = 'cpu'
) -> Any:
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
        raise TypeError(
            f'checkpoint must be a file path or URL, got {path!r} '
            f'({type(path).__name__})'
        )
    path = os.fspath(path)
    if path.startswith(('http://', 'https://')):
        return torch.hub.load_state_dict_from_url(
            path, map_location=map_location, weights_only=True
        )
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f'checkpoint {path!r} is a folder, not a file')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint file {path!r} does not exist')
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(
            f'checkpoint file {path!r} is empty (0 bytes): an interrupted save or download?'
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except READ_ERRORS as err:
        raise checkpoint_read_error(path, err) from None


def _unwrap(checkpoint: Mapping) -> Mapping:
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def _strip_prefix(state_dict: Mapping, prefix: str) -> StateDict:
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
    state_dict = _unwrap(checkpoint)
    if prefix is not None:
        stripped = _strip_prefix(state_dict, prefix)
        if not stripped:
            raise CheckpointFormatError(
                f'{source} has no key with prefix {prefix!r}'
            )
        return stripped, detect_format(stripped, source=source)
    candidates: list[StateDict] = [OrderedDict(state_dict)]
    candidates += [_strip_prefix(state_dict, p) for p in AUTO_PREFIXES]
    for candidate in candidates:
        fmt = _detect_format(candidate)
        if fmt is not None:
            return candidate, fmt
    return candidates[0], detect_format(candidates[0], source=source)  # raises


# ------------------------------------------------------------------------- detection


def _detect_format(state_dict: Mapping) -> str | None:
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
            f'its first keys are: {sample}'
        )
    return fmt


# ------------------------------------------------------------------ key conversions
# Each format has a key map to ours and one from ours: a list of (pattern, replacement)
# rules, the first matching rule wins; a replacement of None drops the key. Tensor
# changes (mmdet's fused in-projection and 1 x 1 convolutions) are done separately.

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


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(
            f'Unknown checkpoint format {fmt!r}; expected one of {FORMATS}'
        )


def to_ours(state_dict: Mapping, src: str | None = None) -> StateDict:
    """Converts a PVT-v2 state dict from format ``src`` (None: detect it) to ours."""
    src = detect_format(state_dict) if src is None else src
    _check_format(src)
    return _to_ours(state_dict, src)


def _to_ours(
    state_dict: Mapping, src: str, refused: list[str] | None = None
) -> StateDict:
    out = _rename(state_dict, _KEY_RULES[src][0], refused)
    return _mmdet_to_ours(out) if src == 'mmdet' else out


def from_ours(state_dict: Mapping, dst: str) -> StateDict:
    """Converts a state dict of ours to format ``dst``."""
    _check_format(dst)
    state_dict = (
        _ours_to_mmdet(OrderedDict(state_dict))
        if dst == 'mmdet'
        else state_dict
    )
    return _rename(state_dict, _KEY_RULES[dst][1])


def convert(
    state_dict: Mapping, dst: str, src: str | None = None
) -> StateDict:
    """Converts a PVT-v2 state dict from format ``src`` (None: detect it) to ``dst``."""
    return from_ours(to_ours(state_dict, src), dst)


# --------------------------------------------------------------------------- loading


def check_tensors(state_dict: Mapping, source: str = 'state dict') -> None:
    """Raises :class:`CheckpointFormatError` naming the first entry of ``state_dict`` that
    is not a tensor (a state dict holds tensors only)."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointFormatError(
            f'{source} holds a {type(state_dict).__name__}, not a state dict'
        )
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointFormatError(
                f'{source} is not a state dict of tensors: {key!r} holds a '
                f'{type(value).__name__} ({str(value)[:60]!r})'
            )


def state_dict_mismatches(
    model: nn.Module, state_dict: Mapping
) -> tuple[list[str], list[str], list[str]]:
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


def load_state_dict_strict(
    model: nn.Module,
    state_dict: Mapping,
    source: str = 'state dict',
    assign: bool = False,
    hint: str | None = None,
) -> None:
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
        raise StateDictMismatchError(
            missing, unexpected, mismatched, source=source, hint=hint
        )
    model.load_state_dict(state_dict, strict=True, assign=assign)


def load_state_dict_partial(
    model: nn.Module, state_dict: Mapping, source: str = 'state dict'
) -> str:
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
        (k, v)
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) == tuple(expected[k].shape)
    )
    merged = OrderedDict(expected)  # the model's own values where nothing fits
    merged.update(fitting)
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        merged._metadata = metadata  # type: ignore[attr-defined]  # as torch does
    model.load_state_dict(merged, strict=True)
    summary = (
        f'{source}: partial load (allowed): loaded {len(fitting)} of the model\'s '
        f'{len(expected)} tensors'
    )
    if missing or unexpected or mismatched:
        details = mismatch_summary(
            missing, unexpected, mismatched, 'x', StateDictMismatchError.SHOWN
        ).split('\n')[1:]
        summary += '; not loaded:\n' + '\n'.join(details)
    return summary


def load_pretrained(
    model: nn.Module,
    checkpoint: str | Mapping,
    prefix: str | None = None,
    assign: bool = False,
) -> str:
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
    source = (
        f'checkpoint {checkpoint!r}'
        if isinstance(checkpoint, str)
        else 'checkpoint'
    )
    loaded = (
        read_checkpoint(checkpoint)
        if isinstance(checkpoint, str)
        else checkpoint
    )
    state_dict, fmt = extract_state_dict(loaded, prefix=prefix, source=source)
    load_state_dict_strict(
        model,
        to_ours(state_dict, fmt),
        source=f'{source} ({fmt})',
        assign=assign,
    )
    return fmt


def convert_file(
    src_path: str,
    dst_path: str,
    dst: str = 'ours',
    src: str | None = None,
    prefix: str | None = None,
    whole: bool | None = None,
    force: bool = False,
    config: str | None = None,
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
        config (str, optional): Whole checkpoints: also check that the result loads
            strictly into the model of this config (raises
            :class:`StateDictMismatchError` listing what does not fit).

    Returns:
        tuple[str, int, bool]: The source format (whole: layout), the number of tensors
        written and whether the checkpoint was converted as a whole model.
    """
    _check_format(dst)
    src_path = (
        src_path
        if src_path.startswith(('http://', 'https://'))
        else os.path.expanduser(src_path)
    )
    dst_path = os.path.expanduser(dst_path)
    source = f'checkpoint {src_path!r}'
    # the output is checked before the (slow) reading and converting
    _check_output(dst_path, force, src_path)
    checkpoint = read_checkpoint(src_path)
    if not isinstance(checkpoint, Mapping):
        raise CheckpointFormatError(
            f'{source} holds a {type(checkpoint).__name__}, not a state dict'
        )
    if whole is None:
        whole = prefix is None and is_whole_checkpoint(_unwrap(checkpoint))
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
        state_dict: StateDict = OrderedDict(_unwrap(checkpoint))
        layout = detect_layout(state_dict)
        if src is not None and src != layout:
            raise CheckpointFormatError(
                f'{source} is in layout {layout!r}, not {src!r}'
            )
        out = whole_to_ours(state_dict, layout, source=source)
        assert layout is not None  # whole_to_ours refused an unknown layout
        if config is not None:
            _check_against_config(out, config, source)
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
    if config is not None:
        raise ValueError(
            f'config={config!r} checks whole checkpoints; {source} is '
            f'converted as a backbone'
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


def _check_against_config(
    state_dict: StateDict, config: str, source: str
) -> None:
    from pvtfpn_mm.tools_lib.build import build_model_from_config

    model = build_model_from_config(config)
    converted, _ = convert_to_model_layout(state_dict, model)
    load_state_dict_strict(
        model, converted, source=f'{source} (converted) for {config!r}'
    )


# ---------------------------------------------------------- whole-checkpoint conversion
# A trained detector or segmentor holds its backbone under ``backbone.`` and its neck and
# heads beside it. Released PVT-v2 models come in two foreign layouts (WHOLE_LAYOUTS);
# they differ from ours in the backbone only: the necks' and heads' names of mmdet 2.x
# (the official detection code is built on mmdet 2.13) and mmseg 0.x (mmseg 0.13) are
# those of mmdet 3.x / mmseg 1.x for the modules these models use (FPN, RetinaHead,
# RPNHead, Shared2FCBBoxHead, FCNMaskHead, FPNHead; see _HEAD_KEYS). Conversion is
# strict: every key is mapped by a rule, or the conversion stops listing the keys that
# no rule maps.

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
#: are). From mmdet 2.13: FPN (``lateral_convs`` / ``fpn_convs`` ConvModules),
#: RetinaHead (``cls_convs`` / ``reg_convs``, ``retina_cls`` / ``retina_reg``), RPNHead
#: (``rpn_conv`` / ``rpn_cls`` / ``rpn_reg``), Shared2FCBBoxHead (``shared_fcs``,
#: ``fc_cls``, ``fc_reg``), FCNMaskHead (``convs``, ``upsample``, ``conv_logits``); from
#: mmseg 0.13: FPNHead (``scale_heads.{i}.{j}`` ConvModules with norm, ``conv_seg``).
_HEAD_KEYS = tuple(
    re.compile(p)
    for p in (
        r'neck\.(lateral_convs|fpn_convs)\.\d+\.conv\.(weight|bias)$',
        r'neck\.(lateral_convs|fpn_convs)\.\d+\.(bn|gn)\.' + _BN + '$',
        r'bbox_head\.(cls_convs|reg_convs)\.\d+\.conv\.(weight|bias)$',
        r'bbox_head\.retina_(cls|reg)\.(weight|bias)$',
        r'rpn_head\.rpn_(conv|cls|reg)\.(weight|bias)$',
        r'roi_head\.bbox_head\.(shared_fcs\.\d+|fc_cls|fc_reg)\.(weight|bias)$',
        r'roi_head\.mask_head\.convs\.\d+\.conv\.(weight|bias)$',
        r'roi_head\.mask_head\.(upsample|conv_logits)\.(weight|bias)$',
        r'decode_head\.scale_heads\.\d+\.\d+\.conv\.(weight|bias)$',
        r'decode_head\.scale_heads\.\d+\.\d+\.(bn|gn)\.' + _BN + '$',
        r'(decode_head|auxiliary_head)\.conv_seg\.(weight|bias)$',
    )
)
#: A key only a model with our PVTv2 as its backbone has.
_OUR_BACKBONE_KEY = 'backbone.stages.0.patch_embed.proj.weight'
#: How many refused keys an error shows.
_SHOW_KEYS = 10


def _show(keys: Sequence[str]) -> str:
    more = (
        f', ... ({len(keys) - _SHOW_KEYS} more)'
        if len(keys) > _SHOW_KEYS
        else ''
    )
    return ', '.join(keys[:_SHOW_KEYS]) + more


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
    fmt = _detect_format(_strip_prefix(state_dict, 'backbone.'))
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
    backbone = _to_ours(
        _strip_prefix(state_dict, 'backbone.'),
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
        raise CheckpointFormatError(
            f'{source} ({WHOLE_LAYOUTS[layout][1]}): {len(refused)} keys are mapped by no '
            f'rule of the converter (pvtfpn_mm/weights.py): {_show(refused)}'
        )
    return out


def convert_to_model_layout(
    state_dict: Mapping, model: nn.Module
) -> tuple[StateDict, str | None]:
    """A whole detector's / segmentor's state dict in ``model``'s own key layout.

    The loading path of our runner calls this right before its strict load: a
    checkpoint released in a foreign layout (:data:`WHOLE_LAYOUTS`: mmdet 3.x
    ``PyramidVisionTransformerV2`` RetinaNets, the official whai362/PVT RetinaNet,
    Mask R-CNN and Semantic FPN checkpoints) is converted on the fly, and the caller
    logs a line naming the layout it came from. Only models whose backbone is our
    ``PVTv2`` are converted to; for any other model the state dict is returned as it
    is. A foreign checkpoint converted into a model whose patch-embedding LayerNorm eps
    differs from the one the layout was trained with (mmdet: 1e-6) gives a warning
    naming ``embed_norm_eps``.

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
    out = whole_to_ours(
        state_dict, layout, source=f'{WHOLE_LAYOUTS[layout][1]} checkpoint'
    )
    _warn_on_eps(model, layout)
    return out, layout


#: The LayerNorm eps of the patch embeddings / spatial reductions each layout was
#: trained with.
_LAYOUT_EMBED_EPS = {'mmdet': 1e-6, 'official': 1e-5}


def _warn_on_eps(model: nn.Module, layout: str) -> None:
    norm = model.get_submodule('backbone.stages.0.patch_embed.norm')
    wanted = _LAYOUT_EMBED_EPS[layout]
    if norm.eps != wanted:
        warnings.warn(
            f'the checkpoint is a {WHOLE_LAYOUTS[layout][1]}, trained with LayerNorm eps '
            f'{wanted:g} in the patch embeddings and spatial reductions; the model has '
            f'{norm.eps:g}, so its outputs differ slightly (set '
            f'model.backbone.embed_norm_eps={wanted:g} to reproduce them exactly)',
            stacklevel=3,
        )


# ------------------------------------------------------------------------ writing


def _check_output(path: str, force: bool, source: str | None) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f'the folder {folder!r} of the output file {path!r} does not exist; '
            f'create it first'
        )
    if os.path.isdir(path):
        raise IsADirectoryError(
            f'the output {path!r} is a folder; give a file name'
        )
    if (
        source is not None
        and os.path.exists(path)
        and os.path.exists(source)
        and os.path.samefile(path, source)
    ):
        raise ValueError(
            f'the output {path!r} is the input file {source!r}; write to another file'
        )
    if os.path.lexists(path) and not force:
        raise FileExistsError(
            f'the output file {path!r} exists; pass --force (force=True) '
            f'to overwrite it'
        )


def save_atomic(
    obj: Any, path: str, force: bool = False, source: str | None = None
) -> str:
    """``torch.save(obj, path)``: written to a temporary file in ``path``'s folder,
    fsynced and renamed into place, so ``path`` is never left half-written.

    Args:
        obj: What to save.
        path (str): The file to write (``~`` expanded).
        force (bool): Overwrite an existing file. Defaults to False.
        source (str, optional): The file ``obj`` was read from; writing onto it (the
            same file by any path, symlinks included) is refused even with ``force``.

    Returns:
        str: The path written (``~`` expanded).

    Raises:
        FileNotFoundError: ``path``'s folder does not exist.
        IsADirectoryError: ``path`` is a folder.
        FileExistsError: ``path`` exists and ``force`` is False.
        ValueError: ``path`` is ``source``.
    """
    path = os.path.expanduser(path)
    _check_output(path, force, source)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f'.{os.path.basename(path)}.', suffix='.tmp'
    )
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as a plain open() would create it
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
