"""Measuring what our models cost: the modes of ``tools/benchmark.py``.

Not part of the plugin: ``import pvtfpn_mm`` never imports it. FLOPs come from
mmengine's analysis (with the attention counter ``import pvtfpn_mm`` adds,
:mod:`pvtfpn_mm.engine.flops`), timing from :mod:`torch.utils.benchmark`.

- :mod:`.common`: timing (interleaved rounds, medians), peak memory, machine
  description, progress bar and CSV / Markdown output, shared by every mode;
- :mod:`.configs`: the ``configs`` mode, per config: parameters, FLOPs, inference
  latency, training-step time, peak memory.
- :mod:`.compare`: the ``compare`` mode, ours against timm's and mmdet's models side by
  side (backbone, training step, inference, memory).
- :mod:`.recipe`: the ``recipe`` mode, the GPU training recipe (``configs/_base_/
  gpu_recipe.py``) and each of its levers against our fp32 configs and mmdet's.

Importing this package imports nothing heavy.
"""

import importlib
from types import ModuleType

#: The modes of ``tools/benchmark.py``: name -> one-line help. Each is a module of this
#: package with ``add_arguments(parser)`` and ``run(args)``.
MODES = {
    'configs': 'per config: params, FLOPs, inference latency, training step, peak memory',
    'compare': 'ours vs timm / mmdet side by side: backbone fwd and fwd+bwd by batch size, '
    'training step and inference with per-part profile, peak memory',
    'recipe': 'the GPU training recipe and each lever on/off vs fp32 and mmdet: '
    'training images/s, peak memory, per-part profile',
}


class BenchmarkError(RuntimeError):
    """A benchmark run that ended with failures (listed in its outputs)."""


def load_mode(name: str) -> ModuleType:
    """The module of mode ``name`` (a key of :data:`MODES`)."""
    if name not in MODES:
        raise ValueError(
            f'unknown benchmark mode {name!r}; modes: {sorted(MODES)}'
        )
    return importlib.import_module(f'{__name__}.{name}')
