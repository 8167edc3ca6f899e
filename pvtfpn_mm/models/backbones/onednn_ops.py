"""``F.linear`` and attention through oneDNN's matmul on the CPU, with their backward.

``nn.Linear`` multiplies with ``torch.addmm``, which on the CPU is MKL's sgemm. On AMD
CPUs MKL runs its AVX2 code (it keeps AVX-512 for Intel's), about half of what oneDNN's
matmul (``torch.ops.mkldnn._linear_pointwise``, the kernel torch's inductor uses) reaches
with AVX-512: on the 2-core AMD EPYC 100 against 200-230 GFLOP/s. :func:`onednn_linear`
is the same function as ``F.linear`` (equal up to fp32 summation order) computed by
oneDNN, forward and backward (:class:`OneDNNLinearFunction`: input gradient
``g @ W``, weight gradient ``g^T @ x``, both oneDNN; it keeps what ``F.linear`` keeps,
the input and the weight). :func:`onednn_attention` is
``F.scaled_dot_product_attention(q, k, v)`` (no mask, no dropout, the default scale) by
blocks of queries whose scores stay in the cache, its products by oneDNN: torch's CPU
flash attention multiplies with MKL. It keeps what the flash attention keeps (``q``,
``k``, ``v``, the output and the log-sum-exp of every query's scores) and recomputes the
probabilities block by block in the backward pass. Callers decide when nobody could
tell the difference (:func:`~.mixffn_fused.use_onednn_matmul` and their own module
checks).
"""

from typing import Any

import torch

__all__ = [
    'matmul_tn',
    'OneDNNAttentionFunction',
    'OneDNNLinearFunction',
    'onednn_attention',
    'onednn_linear',
]

#: Bytes of the scores of one block of queries (about): a block's scores, probabilities
#: and their gradient stay in the cache between the products.
ATTENTION_BLOCK_BYTES = 2 << 20
#: Scores per head (queries x keys) from which :func:`onednn_attention` pays (the 2-core
#: AMD EPYC, one thread, forward + backward against torch's flash attention: 1.2-1.5x
#: from 150 K scores, 1.0-1.06x at 65 K, slower below: a Python loop per head and image).
ATTENTION_MIN_SCORES = 128 << 10


def _matmul(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x @ weight^T (+ bias)`` of a 2-D ``x`` and an ``(N, K)`` ``weight``, any
    strides."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'none', [], '')


def matmul_tn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a^T @ b`` of two 2-D row-major tensors with as many rows (a weight gradient: the
    rows are tokens), possibly as a transposed view. torch's oneDNN wrapper makes its
    left operand contiguous (a transposing copy) but takes a transposed right one as it
    is: the narrower of the two goes left."""
    if a.shape[1] > b.shape[1]:
        return _matmul(b.t(), a.t(), None).t()
    return _matmul(a.t(), b.t(), None)


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
            grad_w = matmul_tn(g, x.reshape(-1, x.shape[-1])).contiguous()
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


def _query_rows(n_keys: int, element_size: int) -> int:
    return max(1, ATTENTION_BLOCK_BYTES // max(1, n_keys * element_size))


@torch.no_grad()
def _attention_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q k^T * scale) v`` of ``(B, h, N, d)`` queries, ``(B, h, M, d)`` keys
    and ``(B, h, M, d_v)`` values, and the log-sum-exp of every query's scaled scores
    ``(B, h, N)``. The output is a ``(B, h, N, d_v)`` view of a ``(B, N, h, d_v)`` tensor
    (the heads' tokens side by side, as the caller flattens them)."""
    B, h, N, _ = q.shape
    d_v = v.shape[-1]
    out = q.new_empty(B, N, h, d_v).transpose(1, 2)
    lse = q.new_empty(B, h, N)
    rows = _query_rows(k.shape[2], q.element_size())
    for b in range(B):
        for i in range(h):
            # oneDNN is slow (a reference kernel: seconds) on operands whose rows are
            # strided (one head of (B, N, h, d) tokens): each a contiguous matrix or
            # the transpose of one
            q_i = q[b, i].contiguous()
            k_scaled, v_t = k[b, i] * scale, v[b, i].contiguous().t()
            for r0 in range(0, N, rows):
                r1 = min(r0 + rows, N)
                scores = _matmul(q_i[r0:r1], k_scaled, None)
                top = scores.amax(-1, keepdim=True)
                probs = scores.sub_(top).exp_()  # unnormalized
                total = probs.sum(-1, keepdim=True)
                out[b, i, r0:r1] = _matmul(probs, v_t, None).div_(total)
                lse[b, i, r0:r1] = top.add_(total.log_()).squeeze(-1)
    return out, lse


class OneDNNAttentionFunction(torch.autograd.Function):
    """``F.scaled_dot_product_attention(q, k, v, scale=scale)`` by oneDNN (see the
    module docstring)."""

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        out, lse = _attention_forward(q, k, v, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        q, k, v, out, lse = ctx.saved_tensors
        scale = ctx.scale
        need_q, need_k, need_v, _ = ctx.needs_input_grad
        B, h, N, _ = q.shape
        grad_q = torch.empty_like(q) if need_q else None
        grad_k = torch.zeros_like(k) if need_k else None
        grad_v = torch.zeros_like(v) if need_v else None
        # the softmax's backward: dS = P * (dP - rowsum(dO * O))
        delta = (
            (grad * out).sum(-1, keepdim=True) if need_q or need_k else None
        )
        rows = _query_rows(k.shape[2], q.element_size())
        for b in range(B):
            for i in range(h):
                # dense operands (see _attention_forward)
                q_i, g_i = q[b, i].contiguous(), grad[b, i].contiguous()
                k_scaled, v_i = k[b, i] * scale, v[b, i].contiguous()
                for r0 in range(0, N, rows):
                    r1 = min(r0 + rows, N)
                    q_rows, g_rows = q_i[r0:r1], g_i[r0:r1]
                    probs = (
                        _matmul(q_rows, k_scaled, None)
                        .sub_(lse[b, i, r0:r1, None])
                        .exp_()
                    )
                    if grad_v is not None:
                        grad_v[b, i] += matmul_tn(probs, g_rows)
                    if delta is None:
                        continue
                    g_scores = (
                        _matmul(g_rows, v_i, None)
                        .sub_(delta[b, i, r0:r1])
                        .mul_(probs)
                    )
                    if grad_q is not None:
                        grad_q[b, i, r0:r1] = _matmul(
                            g_scores, k_scaled.t(), None
                        )
                    if grad_k is not None:
                        grad_k[b, i] += matmul_tn(g_scores, q_rows).mul_(scale)
        return grad_q, grad_k, grad_v, None


def onednn_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v)`` (no mask, no dropout, the default
    scale ``d ** -0.5``) by oneDNN; the result is a ``(B, h, N, d_v)`` view of a
    ``(B, N, h, d_v)`` tensor."""
    scale = q.shape[-1] ** -0.5
    if torch.is_grad_enabled() and (
        q.requires_grad or k.requires_grad or v.requires_grad
    ):
        out = OneDNNAttentionFunction.apply(q, k, v, scale)
        assert isinstance(out, torch.Tensor)
        return out
    return _attention_forward(q, k, v, scale)[0]
