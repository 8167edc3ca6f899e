"""FLOPs of ``scaled_dot_product_attention`` for mmengine's complexity analysis.

mmengine's ``FlopAnalyzer`` (behind ``get_flops``) has no handle for
``aten::scaled_dot_product_attention``, so our attention went uncounted (docs/model_zoo.md);
importing ``pvtfpn_mm`` adds one (:func:`register_flop_counters`). As mmengine's ``bmm``
handle, one multiply-add is one flop: ``Q K^T`` and ``softmax(.) V`` are
``B H N M (d + d_v)`` for queries ``(B, H, N, d)``, keys ``(B, H, M, d)``, values
``(B, H, M, d_v)``, as the same attention written as two ``bmm`` calls (mmdet's
``nn.MultiheadAttention``) is counted; softmax, scaling and masking are not counted.
"""

from math import prod
from typing import Any

SDPA_OP = 'aten::scaled_dot_product_attention'


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """Flops (multiply-adds) of one ``scaled_dot_product_attention`` call (jit handle)."""
    from mmengine.analysis.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    *batch, n, d = q
    return prod(batch) * n * k[-2] * (d + v[-1])


def register_flop_counters() -> None:
    """Adds :func:`sdpa_flop_jit` (flops) and the output size (activations) for
    ``aten::scaled_dot_product_attention`` to mmengine's default analyzer tables, unless
    a handle for it is there already (a newer mmengine's own is kept)."""
    from mmengine.analysis import complexity_analysis as ca
    from mmengine.analysis.jit_handles import generic_activation_jit

    ca._DEFAULT_SUPPORTED_FLOP_OPS.setdefault(SDPA_OP, sdpa_flop_jit)
    ca._DEFAULT_SUPPORTED_ACT_OPS.setdefault(SDPA_OP, generic_activation_jit())
