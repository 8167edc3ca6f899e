"""Row-blocked CPU kernels of PVT-v2's MLP (:class:`~.pvt_v2.MixFFN`).

``fc1 -> [ReLU] -> 3 x 3 depthwise conv -> GELU -> fc2`` widens every token 4-8 times:
at 512 x 512 the hidden tensor of a stage-1 block of b2 is 32 MiB per image, of b0 at
800 x 1344 69 MiB. Computed op by op, each of the three hidden tensors is written to
memory, read back, and (glibc serves allocations over 32 MiB with fresh ``mmap`` pages)
page-faulted in on every call; the linear layers then run at a third of the speed they
reach on data that stays in the cache.

These kernels run the MLP on blocks of whole image rows instead: a block's hidden
tensors (about :data:`BLOCK_BYTES`) stay in the cache from ``fc1`` to ``fc2``, and the
GELU works in place on a tensor no module ever returned. The depthwise convolution
needs one row above and below a block: ``fc1``'s rows are computed once and the two
boundary rows carried over to the next block (no recomputation); the convolution of a
block sees exactly the rows (or the zero padding at the image border) it sees on the
whole image, so the result equals the op-by-op one up to fp32 summation order.

With autograd, :class:`MixFFNFunction` keeps only the MLP's input for the backward
pass (autograd would keep three hidden tensors) and :func:`mixffn_backward` recomputes
the hidden rows block by block, carrying the rows that the depthwise convolution's
backward needs from one block to the next. Keeping ``fc1``'s output instead would not
pay: a fresh 64 MiB tensor (b2's stage 0 at 512 x 512, batch 2) costs about 26 ms of page
faults alone, more than recomputing ``fc1`` (about 24 ms). The backward runs every
hidden-size step in place or into two window buffers allocated once per call: GELU in
place on the recomputed convolution output, the ReLU's gradient by ``threshold_backward``
in place, the convolution's input gradient as the convolution with the flipped kernel
(oneDNN's forward kernel, faster than ``convolution_backward``), and ``fc1``'s weight
gradient as ``x^T @ g`` (faster than ``g^T @ x``). docs/speed.md has the measurements.
"""

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as _module

from pvtfpn_mm.models.backbones.onednn_ops import matmul_tn

#: Hidden-tensor bytes of one row block (about). Measured on a 2-core AMD EPYC (1 MiB
#: L2 per core, 32 MiB L3): with one thread 1-4 MiB are equally fast, 0.25 MiB too small
#: for the linear layers, 16 MiB out of the cache; with two threads on a busy machine
#: every call waits for the other thread, and 4 MiB (half the calls of 2 MiB) is best.
BLOCK_BYTES = 4 << 20
#: Tokens a block has at least (whole rows), so that the linear layers of the wide
#: late stages still multiply matrices of >= 1024 rows.
BLOCK_MIN_TOKENS = 1024
#: Without autograd, :func:`mixffn_forward` is used when one hidden tensor of the batch
#: has at least this many bytes: smaller ones stay in the cache anyway, and the blocks
#: only add calls.
FUSED_MIN_BYTES = 4 << 20
#: With autograd, :class:`MixFFNFunction` is used when one hidden tensor of the batch
#: has at least this many bytes (b2 at 512 x 512, batch 2: stages 0 and 1). Smaller
#: ones stay in the cache anyway, and recomputing ``fc1`` makes it slower there.
FUSED_AUTOGRAD_MIN_BYTES = 16 << 20
#: Replaces :data:`FUSED_MIN_BYTES` and :data:`FUSED_AUTOGRAD_MIN_BYTES` where the
#: kernels multiply with oneDNN (:func:`use_onednn_matmul`; where smaller): at twice
#: MKL's rate, the blocked kernels pay for smaller tensors too (the 2-core AMD EPYC, one
#: thread: forward + backward 1.14x op by op at 0.62 MiB, 1.45x at 0.96 MiB, slower
#: below 0.4 MiB). One limit for both paths: a forward with and without autograd runs
#: the same kernels and gives the same numbers.
ONEDNN_MIN_BYTES = 512 << 10


#: Multiply with oneDNN's matmul (``torch.ops.mkldnn._linear_pointwise``) where torch has
#: it (fp32, oneDNN available and enabled by ``torch.backends.mkldnn``), else with
#: ``torch.mm`` / ``torch.addmm`` (MKL). On the 2-core AMD EPYC, MKL's sgemm runs at
#: about 100 GFLOP/s (its AVX2 code: MKL keeps AVX-512 for Intel CPUs), oneDNN's at
#: 170-230 for the MLP's shapes, the weight gradients with transposed operands included.
ONEDNN_MATMUL = True


def use_onednn_matmul(x: torch.Tensor) -> bool:
    """Whether the blocked kernels multiply ``x``'s dtype with oneDNN
    (:data:`ONEDNN_MATMUL`)."""
    return (
        ONEDNN_MATMUL
        and x.dtype == torch.float32
        and x.device.type == 'cpu'
        and hasattr(torch.ops.mkldnn, '_linear_pointwise')
        and torch.backends.mkldnn.is_available()
        and bool(torch.backends.mkldnn.enabled)
    )


def has_hooks(module: nn.Module) -> bool:
    """Whether ``module`` has a forward (pre-)hook or a backward (pre-)hook."""
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    )


def any_global_module_hook() -> bool:
    """Whether a hook for every module is registered
    (``torch.nn.modules.module.register_module_forward_hook`` and the like)."""
    return bool(
        _module._global_forward_hooks
        or _module._global_forward_pre_hooks
        or _module._global_backward_hooks
        or _module._global_backward_pre_hooks
    )


def block_rows(width: int, hidden: int, element_size: int) -> int:
    """Rows per block: about :data:`BLOCK_BYTES` of hidden tensor, at least
    :data:`BLOCK_MIN_TOKENS` tokens and one row."""
    by_bytes = BLOCK_BYTES // max(1, width * hidden * element_size)
    by_tokens = -(-BLOCK_MIN_TOKENS // max(1, width))
    return max(1, by_bytes, by_tokens)


def _row_blocks(height: int, rows: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, height, rows):
        yield r0, min(r0 + rows, height)


def _as_image(rows: torch.Tensor, n_rows: int, width: int) -> torch.Tensor:
    """``(n_rows * width, C)`` row-major tokens as a channels-last ``(1, C, n_rows, W)``."""
    return rows.view(1, n_rows, width, rows.shape[-1]).permute(0, 3, 1, 2)


def _as_tokens(image: torch.Tensor) -> torch.Tensor:
    """A channels-last ``(1, C, h, W)`` image as ``(h * W, C)`` tokens (no copy if it is
    channels-last, as oneDNN's convolutions return it)."""
    return image.permute(0, 2, 3, 1).reshape(-1, image.shape[1])


class _RowWindow:
    """Image rows ``lo .. hi - 1`` of a per-token quantity of one image, as
    ``(rows * W, C)`` tokens in ``buffer``, for windows that slide down the image: the
    rows the previous window held move to the front of the buffer, only new rows are
    computed (``compute(a, b, out)`` writes image rows ``a .. b - 1``,
    ``0 <= a < b <= H``, into ``out``). Rows outside the image are zeros, so convolutions
    of a window need no padding along H. A window stays valid until the next
    :meth:`get`; :meth:`reset` starts the next image in the same buffer."""

    def __init__(
        self,
        buffer: torch.Tensor,
        width: int,
        height: int,
        compute: Callable[[int, int, torch.Tensor], None],
    ) -> None:
        self.buffer, self.w, self.h = buffer, width, height
        self.reset(compute)

    def reset(self, compute: Callable[[int, int, torch.Tensor], None]) -> None:
        self.compute = compute
        self.lo = self.hi = 0
        self.valid = False

    def get(self, lo: int, hi: int) -> torch.Tensor:
        W, buf = self.w, self.buffer
        start = lo
        if self.valid and self.lo <= lo < self.hi:
            shift, keep = lo - self.lo, min(self.hi, hi) - lo
            if shift:
                src = buf[shift * W : (shift + keep) * W]
                # copy_ refuses overlapping source and destination
                buf[: keep * W].copy_(src.clone() if shift < keep else src)
            start = lo + keep
        if start < min(hi, 0):
            buf[(start - lo) * W : (min(hi, 0) - lo) * W].zero_()
        a, b = max(start, 0), min(hi, self.h)
        if b > a:
            self.compute(a, b, buf[(a - lo) * W : (b - lo) * W])
        top = max(start, self.h)
        if top < hi:
            buf[(top - lo) * W : (hi - lo) * W].zero_()
        self.lo, self.hi, self.valid = lo, hi, True
        return buf[: (hi - lo) * W]


def _no_rows(a: int, b: int, out: torch.Tensor) -> None:
    raise AssertionError('a _RowWindow computed rows before its reset')


def _linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    onednn: bool,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x @ weight^T (+ bias)`` for a ``(N, K)`` ``weight`` of any strides, into ``out``
    if given (oneDNN returns a new tensor: copied)."""
    if onednn:
        y = torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'none', [], '')
        return y if out is None else out.copy_(y)
    if bias is None:
        return torch.mm(x, weight.t(), out=out)
    return torch.addmm(bias, x, weight.t(), out=out)


def _accumulate(
    acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor, onednn: bool
) -> None:
    """``acc += a^T @ b`` (a weight gradient: the rows of ``a`` and ``b`` are tokens)."""
    if onednn:
        acc.add_(matmul_tn(a, b))
    else:
        acc.addmm_(a.t(), b)


def _fc1_rows(
    x: torch.Tensor,
    width: int,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    relu: bool,
    onednn: bool,
) -> Callable[[int, int, torch.Tensor], None]:
    """``compute`` of a :class:`_RowWindow` of ``relu?(fc1(x))`` for one image."""

    def compute(a: int, b: int, out: torch.Tensor) -> None:
        _linear(x[a * width : b * width], weight, bias, onednn, out)
        if relu:
            out.relu_()

    return compute


def _dwconv(
    window: torch.Tensor,
    n_rows: int,
    width: int,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """The depthwise 3 x 3 convolution of ``n_rows`` rows of tokens (with their zero or
    neighbour rows above and below already in ``window``): ``n_rows - 2`` rows."""
    out = F.conv2d(
        _as_image(window, n_rows, width),
        weight,
        bias,
        1,
        (0, 1),
        1,
        weight.shape[0],
    )
    return _as_tokens(out)


@torch.no_grad()
def mixffn_forward(
    x: torch.Tensor,
    hw_shape: tuple[int, int],
    fc1_weight: torch.Tensor,
    fc1_bias: torch.Tensor | None,
    dw_weight: torch.Tensor,
    dw_bias: torch.Tensor | None,
    fc2_weight: torch.Tensor,
    fc2_bias: torch.Tensor | None,
    relu: bool,
    rows: int | None = None,
) -> torch.Tensor:
    """``fc2(gelu(dwconv(relu?(fc1(x)))))`` of ``(B, H*W, C)`` tokens, by row blocks.

    Returns a new ``(B, H*W, C_out)`` tensor; ``x`` is not changed.
    """
    B, N, _ = x.shape
    H, W = hw_shape
    hidden = fc1_weight.shape[0]
    rows = min(rows or block_rows(W, hidden, x.element_size()), H)
    x = x.contiguous()
    out = x.new_empty(B, N, fc2_weight.shape[0])
    onednn = use_onednn_matmul(x)
    h1 = _RowWindow(x.new_empty((rows + 2) * W, hidden), W, H, _no_rows)
    for b in range(B):
        h1.reset(_fc1_rows(x[b], W, fc1_weight, fc1_bias, relu, onednn))
        for r0, r1 in _row_blocks(H, rows):
            hid = _dwconv(
                h1.get(r0 - 1, r1 + 1), r1 - r0 + 2, W, dw_weight, dw_bias
            )
            # a fresh tensor only this function holds: GELU in place
            hid = torch.ops.aten.gelu_(hid)
            _linear(hid, fc2_weight, fc2_bias, onednn, out[b, r0 * W : r1 * W])
    return out


def mixffn_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    hw_shape: tuple[int, int],
    fc1_weight: torch.Tensor,
    fc1_bias: torch.Tensor | None,
    dw_weight: torch.Tensor,
    dw_bias: torch.Tensor | None,
    fc2_weight: torch.Tensor,
    fc2_bias: torch.Tensor | None,
    relu: bool,
    needs: Sequence[bool],
    rows: int | None = None,
) -> list:
    """The gradients of :func:`mixffn_forward` for ``x``, ``fc1_weight``, ``fc1_bias``,
    ``dw_weight``, ``dw_bias``, ``fc2_weight``, ``fc2_bias`` (None where ``needs`` is
    False), recomputing the hidden rows block by block.

    Per block of rows ``r0 .. r1 - 1``: ``h1 = relu?(fc1(x))`` on rows
    ``r0 - 2 .. r1 + 1`` and the convolution's gradient ``g_d`` on rows
    ``r0 - 1 .. r1`` (the rows the previous block computed carried over), the
    convolution's output ``d`` on rows ``r0 - 1 .. r1``; then the block's own rows:
    ``fc2``'s gradients from ``gelu(d)`` (GELU in place on ``d``), the convolution's
    weight gradient, its input gradient (the convolution of ``g_d`` with the flipped
    kernel, no padding along H), the ReLU's (in place), ``fc1``'s and the input's.
    """
    B, N, _ = x.shape
    H, W = hw_shape
    hidden = fc1_weight.shape[0]
    rows = min(rows or block_rows(W, hidden, x.element_size()), H)
    x, grad_out = x.contiguous(), grad_out.contiguous()
    onednn = use_onednn_matmul(x)
    need_x, need_w1, need_b1, need_dw, need_db, need_w2, need_b2 = needs
    need_b1 = need_b1 and fc1_bias is not None
    need_db = need_db and dw_bias is not None
    need_b2 = need_b2 and fc2_bias is not None
    need_h1 = need_x or need_w1 or need_b1  # the gradient of fc1's output
    need_d = need_h1 or need_dw or need_db  # the gradient of the conv's output
    grad_x = x.new_empty(x.shape) if need_x else None
    # fc1's weight gradient transposed: x^T @ g_h1 multiplies faster than g_h1^T @ x
    g_w1_t = fc1_weight.new_zeros(fc1_weight.shape[::-1]) if need_w1 else None
    g_b1 = (
        fc1_bias.new_zeros(hidden)
        if need_b1 and fc1_bias is not None
        else None
    )
    g_dw = torch.zeros_like(dw_weight) if need_dw else None
    g_db = (
        dw_bias.new_zeros(hidden) if need_db and dw_bias is not None else None
    )
    g_w2 = torch.zeros_like(fc2_weight) if need_w2 else None
    g_b2 = grad_out.sum((0, 1)) if need_b2 else None
    if need_d or need_w2:
        h1 = _RowWindow(x.new_empty((rows + 4) * W, hidden), W, H, _no_rows)
        g_d = _RowWindow(x.new_empty((rows + 2) * W, hidden), W, H, _no_rows)
        flipped = dw_weight.flip((2, 3))
    for b in range(B if need_d or need_w2 else 0):
        xb, gob = x[b], grad_out[b]
        h1.reset(_fc1_rows(xb, W, fc1_weight, fc1_bias, relu, onednn))
        g_d.reset(_no_rows)  # its compute changes with d, block by block
        for r0, r1 in _row_blocks(H, rows):
            n = r1 - r0
            h1_win = h1.get(r0 - 2, r1 + 2)
            # rows r0 - 1 .. r1; a fresh tensor only this function holds
            d = _dwconv(h1_win, n + 4, W, dw_weight, dw_bias)
            if need_d:

                def grad_d_rows(
                    a: int,
                    b_: int,
                    out: torch.Tensor,
                    gob: torch.Tensor = gob,
                    d: torch.Tensor = d,
                    lo: int = r0 - 1,
                ) -> None:
                    # MKL: into out, then GELU's backward in place
                    g_act = _linear(
                        gob[a * W : b_ * W],
                        fc2_weight.t(),
                        None,
                        onednn,
                        None if onednn else out,
                    )
                    torch.ops.aten.gelu_backward.grad_input(
                        g_act, d[(a - lo) * W : (b_ - lo) * W], grad_input=out
                    )

                g_d.compute = grad_d_rows
                g_d_win = g_d.get(r0 - 1, r1 + 1)
            go = gob[r0 * W : r1 * W]
            # each g_* (and grad_x) is None where its gradient is not needed
            if g_w2 is not None:
                # g_d holds what it needs of d: GELU in place on d's own rows
                act = torch.ops.aten.gelu_(d[W : (n + 1) * W])
                _accumulate(g_w2, go, act, onednn)
            if g_dw is not None or g_db is not None:
                _, gw, gb = torch.ops.aten.convolution_backward(
                    _as_image(g_d_win[W : (n + 1) * W], n, W),
                    _as_image(h1_win[W : (n + 3) * W], n + 2, W),
                    dw_weight,
                    [hidden],
                    [1, 1],
                    [0, 1],
                    [1, 1],
                    False,
                    [0, 0],
                    hidden,
                    [False, g_dw is not None, g_db is not None],
                )
                if g_dw is not None:
                    g_dw.add_(gw)
                if g_db is not None:
                    g_db.add_(gb)
            if not need_h1:
                continue
            # the transposed convolution: the convolution with the kernel flipped
            g_h1 = _dwconv(g_d_win, n + 2, W, flipped, None)
            if relu:
                torch.ops.aten.threshold_backward.grad_input(
                    g_h1, h1_win[2 * W : (n + 2) * W], 0, grad_input=g_h1
                )
            if grad_x is not None:
                _linear(
                    g_h1,
                    fc1_weight.t(),
                    None,
                    onednn,
                    grad_x[b, r0 * W : r1 * W],
                )
            if g_w1_t is not None:
                _accumulate(g_w1_t, xb[r0 * W : r1 * W], g_h1, onednn)
            if g_b1 is not None:
                g_b1.add_(g_h1.sum(0))
    g_w1 = None if g_w1_t is None else g_w1_t.t().contiguous()
    return [grad_x, g_w1, g_b1, g_dw, g_db, g_w2, g_b2]


class MixFFNFunction(torch.autograd.Function):
    """:func:`mixffn_forward` with :func:`mixffn_backward`: keeps only the MLP's input
    for the backward pass (not the three hidden tensors autograd would keep)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        hw_shape: tuple[int, int],
        fc1_weight: torch.Tensor,
        fc1_bias: torch.Tensor | None,
        dw_weight: torch.Tensor,
        dw_bias: torch.Tensor | None,
        fc2_weight: torch.Tensor,
        fc2_bias: torch.Tensor | None,
        relu: bool,
    ) -> torch.Tensor:
        ctx.hw_shape, ctx.relu = hw_shape, relu
        ctx.save_for_backward(
            x, fc1_weight, fc1_bias, dw_weight, dw_bias, fc2_weight, fc2_bias
        )
        return mixffn_forward(
            x,
            hw_shape,
            fc1_weight,
            fc1_bias,
            dw_weight,
            dw_bias,
            fc2_weight,
            fc2_bias,
            relu,
        )

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, w1, b1, dw, db, w2, b2 = ctx.saved_tensors
        n = ctx.needs_input_grad
        needs = (n[0], n[2], n[3], n[4], n[5], n[6], n[7])
        g_x, g_w1, g_b1, g_dw, g_db, g_w2, g_b2 = mixffn_backward(
            grad_out, x, ctx.hw_shape, w1, b1, dw, db, w2, b2, ctx.relu, needs
        )
        return g_x, None, g_w1, g_b1, g_dw, g_db, g_w2, g_b2, None
