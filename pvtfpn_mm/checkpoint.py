"""Safe loading of mmengine checkpoints on torch >= 2.6 (the allowlist from torch 2.5).

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 calls
``torch.load`` without saying otherwise, so loading or resuming one of its own
checkpoints fails: they hold the ``HistoryBuffer`` objects of the message hub (numpy
arrays inside) and numpy scalars. Rather than switching safe loading off, this module
adds exactly those globals to torch's allowlist:

* ``mmengine.logging.HistoryBuffer``;
* numpy's ndarray / dtype / scalar reconstruction functions and the dtype classes of
  the numeric dtypes (under both the numpy 1 and numpy 2 module paths);
* ``builtins.getattr`` *restricted* to the four statistics methods a pickled
  ``HistoryBuffer`` refers to (``getattr(HistoryBuffer, 'mean')`` and friends); any
  other use raises ``pickle.UnpicklingError``.

:func:`allow_mmengine_checkpoints` is idempotent and runs when ``pvtfpn_mm`` is imported;
on torch < 2.5 (no named allowlist entries, see :mod:`pvtfpn_mm.compat`) it does nothing:
there torch loads with ``weights_only=False`` by default, mmengine's own loading works
as it is, and our own loading (``weights_only=True``) refuses such checkpoints.
"""

import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from pvtfpn_mm.compat import HAS_SAFE_GLOBALS

_NUMERIC_DTYPES = (
    'bool',
    'int8',
    'int16',
    'int32',
    'int64',
    'uint8',
    'uint16',
    'uint32',
    'uint64',
    'float16',
    'float32',
    'float64',
)

# HistoryBuffer registers these lazily in its class-level ``_statistics_methods``.
_DEFAULT_STATISTICS = frozenset(('min', 'max', 'current', 'mean'))


def _history_buffer_getattr(obj, name):
    """``getattr`` as HistoryBuffer's pickles use it, and for nothing else."""
    allowed = _DEFAULT_STATISTICS.union(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint: pvtfpn_mm only '
        f'allows getattr(HistoryBuffer, <statistics method>)'
    )


def _safe_globals():
    try:
        from numpy._core import (
            multiarray,  # numpy >= 2; checkpoints of numpy 1: numpy.core
        )
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    entries = [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
    ]
    for prefix in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries += [
            (multiarray._reconstruct, f'{prefix}._reconstruct'),
            (multiarray.scalar, f'{prefix}.scalar'),
        ]
    for name in _NUMERIC_DTYPES:
        cls = type(np.dtype(name))
        entries.append((cls, f'numpy.dtypes.{cls.__name__}'))
    return entries


_done = False


def allow_mmengine_checkpoints() -> None:
    """Allowlists the globals mmengine's checkpoints need for ``weights_only=True``."""
    global _done
    if not _done and HAS_SAFE_GLOBALS:
        torch.serialization.add_safe_globals(_safe_globals())
        _done = True
