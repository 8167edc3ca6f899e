"""Checkpoint files in and out, in one place.

* :mod:`.io` -- reading (``.pth`` with safe loading, ``.safetensors``, URLs), the
  safe-load allowlist for mmengine's checkpoints, atomic writing;
* :mod:`.formats` -- PVT-v2 backbone key formats (ours, timm, official, mmdet, hf) as
  rule tables, detected and converted;
* :mod:`.layouts` -- whole detectors / segmentors of other codebases (the official
  release, mmdet's ``configs/pvt``) converted to our configs' layout, and whole files;
* :mod:`.loading` -- strict loading (partial only when asked for) and the one parser of
  ``init_cfg=dict(type='Pretrained', ...)``.

Everything public is importable from here, e.g. ``from pvtfpn_mm.weights import
read_checkpoint, convert_file``.
"""

from .formats import (
    AUTO_PREFIXES,
    FORMATS,
    CheckpointFormatError,
    StateDict,
    convert,
    detect_format,
    extract_state_dict,
    from_ours,
    strip_prefix,
    to_ours,
)
from .io import (
    READ_ERRORS,
    STATE_DICT_KEYS,
    CheckpointReadError,
    allow_mmengine_checkpoints,
    atomic_write,
    check_output,
    checkpoint_read_error,
    is_safetensors_file,
    publish,
    read_checkpoint,
    read_state_dict,
    save_atomic,
    timm_load_state_dict,
    unwrap_state_dict,
    write_text_atomic,
)
from .layouts import (
    WHOLE_LAYOUTS,
    WHOLE_PARTS,
    convert_file,
    convert_to_model_layout,
    detect_layout,
    is_whole_checkpoint,
    whole_to_ours,
)
from .loading import (
    PRETRAINED_KEYS,
    StateDictMismatchError,
    check_tensors,
    load_pretrained,
    load_pretrained_cfg,
    load_state_dict_partial,
    load_state_dict_strict,
    mismatch_summary,
    parse_pretrained,
    state_dict_mismatches,
)

__all__ = [
    'AUTO_PREFIXES',
    'FORMATS',
    'PRETRAINED_KEYS',
    'READ_ERRORS',
    'STATE_DICT_KEYS',
    'WHOLE_LAYOUTS',
    'WHOLE_PARTS',
    'CheckpointFormatError',
    'CheckpointReadError',
    'StateDict',
    'StateDictMismatchError',
    'allow_mmengine_checkpoints',
    'atomic_write',
    'check_output',
    'check_tensors',
    'checkpoint_read_error',
    'convert',
    'convert_file',
    'convert_to_model_layout',
    'detect_format',
    'detect_layout',
    'extract_state_dict',
    'from_ours',
    'is_safetensors_file',
    'is_whole_checkpoint',
    'load_pretrained',
    'load_pretrained_cfg',
    'load_state_dict_partial',
    'load_state_dict_strict',
    'mismatch_summary',
    'parse_pretrained',
    'publish',
    'read_checkpoint',
    'read_state_dict',
    'save_atomic',
    'state_dict_mismatches',
    'strip_prefix',
    'timm_load_state_dict',
    'to_ours',
    'unwrap_state_dict',
    'whole_to_ours',
    'write_text_atomic',
]
