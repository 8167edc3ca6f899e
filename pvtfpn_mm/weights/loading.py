"""Loading state dicts into models: strictly, or partially by explicit choice.

mmengine loads with ``strict=False`` in several places (``PretrainedInit``,
``Runner.load_checkpoint``): a checkpoint of another model only gives a warning and
training goes on with random weights. Everything of ours loads through
:func:`load_state_dict_strict` -- keys and shapes checked first, a
:class:`StateDictMismatchError` with a short summary otherwise -- or, where the user
opted in (``allow_partial=True``), :func:`load_state_dict_partial`, which says what it
loaded and what it did not.

:func:`parse_pretrained` is the one parser of ``init_cfg=dict(type='Pretrained', ...)``
for every module of ours; :func:`load_pretrained_cfg` loads one as the module names
its tensors, :func:`load_pretrained` a PVT-v2 backbone checkpoint of any format.
"""

import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from mmengine.logging import print_log

from .formats import (
    CheckpointFormatError,
    check_mapping,
    extract_state_dict,
    strip_prefix,
    to_ours,
)
from .io import read_checkpoint, unwrap_state_dict


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
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        self.source = source
        super().__init__(
            mismatch_summary(
                missing, unexpected, mismatched, source, self.SHOWN, hint
            )
        )


def show_keys(keys: Sequence[str], shown: int) -> str:
    """The first ``shown`` of ``keys``, and how many more there are."""
    more = f', ... ({len(keys) - shown} more)' if len(keys) > shown else ''
    return ', '.join(keys[:shown]) + more


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
            lines.append(f'  {len(keys)} {title}: {show_keys(keys, shown)}')
    if hint:
        lines.append(hint)
    return '\n'.join(lines)


def check_tensors(state_dict: Mapping, source: str = 'state dict') -> None:
    """Raises :class:`CheckpointFormatError` naming the first entry of ``state_dict`` that
    is not a tensor (a state dict holds tensors only)."""
    check_mapping(state_dict, source)
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
    allow_partial: bool = False,
    map_location: str | torch.device | None = 'cpu',
) -> str:
    """Loads a PVT-v2 checkpoint of any format into ``model`` (a ``PVTv2``), strictly.

    Args:
        model (nn.Module): The backbone.
        checkpoint (str | Mapping): A file path, an ``http(s)://`` URL, or a loaded
            checkpoint.
        prefix (str, optional): See :func:`~.formats.extract_state_dict`.
            Defaults to None.
        assign (bool): See :func:`load_state_dict_strict`. Defaults to False.
        allow_partial (bool): Load what fits instead (:func:`load_state_dict_partial`)
            and log what did not. Defaults to False.
        map_location: Where a file's tensors are read to. Defaults to ``'cpu'``.

    Returns:
        str: The checkpoint's format.

    Raises:
        FileNotFoundError: No such checkpoint file.
        CheckpointFormatError: Not a PVT-v2 checkpoint.
        StateDictMismatchError: A PVT-v2 checkpoint that does not fit ``model``.
    """
    if isinstance(checkpoint, str):
        source = f'checkpoint {checkpoint!r}'
        loaded = read_checkpoint(checkpoint, map_location=map_location)
    else:
        source, loaded = 'checkpoint', checkpoint
    state_dict, fmt = extract_state_dict(loaded, prefix=prefix, source=source)
    converted = to_ours(state_dict, fmt)
    warn_on_embed_eps(model, fmt, source)
    if allow_partial:
        print_log(
            load_state_dict_partial(
                model, converted, source=f'{source} ({fmt})'
            ),
            logger='current',
        )
    else:
        load_state_dict_strict(
            model,
            converted,
            source=f'{source} ({fmt})',
            assign=assign,
            hint=PARTIAL_INIT_HINT,
        )
    return fmt


#: The LayerNorm eps of the patch embeddings and spatial reductions in the models of the
#: backbone formats where it is known: mmdet's ``PyramidVisionTransformerV2`` and
#: transformers' PvtV2 (its ``layer_norm_eps`` for every LayerNorm) use 1e-6, the
#: official release 1e-5 (our default).
FORMAT_EMBED_EPS = {'mmdet': 1e-6, 'official': 1e-5, 'hf': 1e-6}


def warn_on_embed_eps(
    model: nn.Module, fmt: str, source: str, prefix: str = ''
) -> None:
    """Warns when the PVTv2 under ``prefix`` in ``model`` has another patch-embedding
    LayerNorm eps than the models of format ``fmt`` (:data:`FORMAT_EMBED_EPS`)."""
    wanted = FORMAT_EMBED_EPS.get(fmt)
    try:
        norm = model.get_submodule(prefix + 'stages.0.patch_embed.norm')
    except AttributeError:
        return
    eps = getattr(norm, 'eps', None)
    if wanted is not None and eps is not None and eps != wanted:
        option = ('model.' + prefix if prefix else '') + 'embed_norm_eps'
        warnings.warn(
            f'{source} is in format {fmt!r}, whose model has LayerNorm eps {wanted:g} in '
            f'the patch embeddings and spatial reductions; this PVTv2 has {eps:g}, so its '
            f'outputs differ slightly (set {option}={wanted:g} to reproduce them exactly)',
            stacklevel=3,
        )


# ------------------------------------------------- init_cfg=dict(type='Pretrained')

#: Keys ``init_cfg=dict(type='Pretrained', ...)`` takes in every module of ours.
PRETRAINED_KEYS = (
    'type',
    'checkpoint',
    'prefix',
    'map_location',
    'allow_partial',
)
#: How to allow a partial load from an init_cfg, as the error message says it.
PARTIAL_INIT_HINT = (
    'To load only what fits (and see what), add allow_partial=True to the '
    "init_cfg=dict(type='Pretrained', ...)"
)


def parse_pretrained(init_cfg: Any) -> tuple[dict | None, list]:
    """Splits an ``init_cfg`` into its ``Pretrained`` entry and the others.

    The one parser of ``dict(type='Pretrained', checkpoint=PATH_OR_URL, prefix=None,
    map_location='cpu', allow_partial=False)`` for every module of ours: a single dict or
    one entry of a list; ``prefix`` selects the keys under it (a missing trailing dot is
    added where the checkpoint is read, as mmengine does).

    Returns:
        tuple[dict | None, list]: The ``Pretrained`` dict (a copy) or None, and the
        other init_cfg dicts in their order.

    Raises:
        ValueError: More than one ``Pretrained`` entry, unknown keys, no checkpoint.
        TypeError: ``checkpoint`` / ``prefix`` not a string (or path), ``allow_partial``
            not a bool.
    """
    if isinstance(init_cfg, (list, tuple)):
        cfgs = list(init_cfg)
    else:
        cfgs = [] if init_cfg is None else [init_cfg]
    pretrained = [c for c in cfgs if is_pretrained_cfg(c)]
    others = [c for c in cfgs if not is_pretrained_cfg(c)]
    if len(pretrained) > 1:
        raise ValueError(
            f'init_cfg={init_cfg!r} has {len(pretrained)} Pretrained entries; '
            'give one'
        )
    if not pretrained:
        return None, others
    cfg = dict(pretrained[0])
    unknown = sorted(set(cfg) - set(PRETRAINED_KEYS))
    if unknown:
        raise ValueError(
            f"init_cfg=dict(type='Pretrained') takes {PRETRAINED_KEYS[1:]}, got "
            f'unknown keys {unknown} in {cfg!r}'
        )
    if not cfg.get('checkpoint'):
        raise ValueError(f'init_cfg={cfg!r} names no checkpoint')
    if not isinstance(cfg['checkpoint'], (str, os.PathLike)):
        raise TypeError(
            'init_cfg checkpoint must be a file path or URL, got '
            f'{cfg["checkpoint"]!r} ({type(cfg["checkpoint"]).__name__})'
        )
    if cfg.get('prefix') is not None and not isinstance(cfg['prefix'], str):
        raise TypeError(
            f'init_cfg prefix must be a string, got {cfg["prefix"]!r}'
        )
    if not isinstance(cfg.get('allow_partial', False), bool):
        raise TypeError(
            f'init_cfg allow_partial must be True or False, got '
            f'{cfg["allow_partial"]!r}'
        )
    return cfg, others


def is_pretrained_cfg(cfg: Any) -> bool:
    """Whether ``cfg`` is an ``init_cfg`` entry of type ``'Pretrained'``."""
    return isinstance(cfg, Mapping) and cfg.get('type') == 'Pretrained'


def load_pretrained_cfg(module: nn.Module, cfg: Mapping) -> None:
    """Loads a parsed ``Pretrained`` init_cfg (:func:`parse_pretrained`) into ``module``
    as it is named there: strictly, or with ``allow_partial=True`` what fits (logged).

    The checkpoint's state dict (``'state_dict'`` / ``'model'`` unwrapped) is taken
    under ``cfg['prefix']`` (a trailing dot added); an empty selection is an error
    naming the prefix.
    """
    path = cfg['checkpoint']
    checkpoint = read_checkpoint(
        path, map_location=cfg.get('map_location', 'cpu')
    )
    source = f'checkpoint {path!r}'
    check_mapping(checkpoint, source)
    state: Mapping = unwrap_state_dict(checkpoint)
    prefix = cfg.get('prefix')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = strip_prefix(state, prefix)
        source += f' (prefix {prefix!r})'
        if not state:
            raise CheckpointFormatError(
                f'{source}: the checkpoint has no key under the prefix'
            )
    name = type(module).__name__
    if cfg.get('allow_partial', False):
        print_log(
            f'{name}: '
            + load_state_dict_partial(module, state, source=source),
            logger='current',
        )
    else:
        load_state_dict_strict(
            module,
            state,
            source=f'{source} for {name}',
            hint=PARTIAL_INIT_HINT,
        )
