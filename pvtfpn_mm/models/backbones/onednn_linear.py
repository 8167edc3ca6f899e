"""``F.linear`` through oneDNN's matmul on the CPU, with its backward.

``nn.Linear`` multiplies with ``torch.addmm``, which on the CPU is MKL's sgemm. On AMD
CPUs MKL runs its AVX2 code (it keeps AVX-512 for Intel's), about half of what oneDNN's
matmul (``torch.ops.mkldnn._linear_pointwise``, the kernel torch's inductor uses) reaches
with AVX-512: on the 2-core AMD EPYC 100 against 200-230 GFLOP/s. :func:`onednn_linear`
is the same function as ``F.linear`` (equal up to fp32 summation order) computed by
oneDNN, forward and backward (:class:`OneDNNLinearFunction`: input gradient
``g @ W``, weight gradient ``g^T @ x``, both oneDNN; it keeps what ``F.linear`` keeps,
the input and the weight). Callers decide when nobody could tell the difference
(:func:`~.mixffn_fused.use_onednn_matmul` and their own module checks).
"""

from typing import Any

import torch

__all__ = ['OneDNNLinearFunction', 'onednn_linear']


def _matmul(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x @ weight^T (+ bias)`` of a 2-D ``x`` and an ``(N, K)`` ``weight``, any
    strides."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'none', [], '')


class OneDNNLinearFunction(torch.autograd.Function):
    """``F.linear(x, weight, bias)`` (``x`` of any leading dimensions) by oneDNN."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        out = _matmul(x.reshape(-1, x.shape[-1]), weight, bias)
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        g = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = _matmul(g, weight.t(), None).view(x.shape)
        if need_w:
            grad_w = _matmul(g.t(), x.reshape(-1, x.shape[-1]).t(), None)
        if need_b and ctx.has_bias:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b


def onednn_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` by oneDNN: through :class:`OneDNNLinearFunction`
    where autograd records it, else the product alone."""
    if torch.is_grad_enabled() and (
        x.requires_grad
        or weight.requires_grad
        or (bias is not None and bias.requires_grad)
    ):
        out = OneDNNLinearFunction.apply(x, weight, bias)
        assert isinstance(out, torch.Tensor)
        return out
    return _matmul(x.reshape(-1, x.shape[-1]), weight, bias).view(
        *x.shape[:-1], weight.shape[0]
    )
