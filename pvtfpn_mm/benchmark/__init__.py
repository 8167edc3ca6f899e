"""Measuring what our models cost: ``tools/benchmark.py``.

- :mod:`.flops`: the ``scaled_dot_product_attention`` counter for mmengine's complexity
  analysis (registered when ``pvtfpn_mm`` is imported);
- :mod:`.common`: timing (interleaved rounds, medians), peak memory, machine
  description, progress bar and CSV / Markdown output, shared by every mode;
- :mod:`.configs`: the ``configs`` mode, per config: parameters, FLOPs, inference
  latency, training-step time, peak memory.

Importing this package imports nothing heavy.
"""
