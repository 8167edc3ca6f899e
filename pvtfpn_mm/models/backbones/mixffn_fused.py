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
backward needs from one block to the next.
"""

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as _module

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
    ``(rows * W, C)`` tokens, for windows that slide down the image: rows the previous
    window held are copied over, only new rows are computed (``compute(a, b, out)``
    writes image rows ``a .. b - 1``, ``0 <= a < b <= H``, into ``out``). Rows outside
    the image are zeros, so convolutions of a window need no padding along H. Two
    buffers take turns: a window stays valid until the next-but-one :meth:`get`."""

    def __init__(
        self,
        like: torch.Tensor,
        width: int,
        height: int,
        channels: int,
        max_rows: int,
        compute: Callable[[int, int, torch.Tensor], None],
    ) -> None:
        self.w, self.h, self.compute = width, height, compute
        self.buffers = [
            like.new_empty(max_rows * width, channels) for _ in range(2)
        ]
        self.cur = 0
        self.lo = self.hi = 0
        self.valid = False

    def get(self, lo: int, hi: int) -> torch.Tensor:
        W = self.w
        prev, self.cur = self.buffers[self.cur], 1 - self.cur
        buf = self.buffers[self.cur]
        start = lo
        if self.valid and self.lo <= lo < self.hi:
            keep = min(self.hi, hi) - lo
            buf[: keep * W].copy_(
                prev[(lo - self.lo) * W : (lo - self.lo + keep) * W]
            )
            start = lo + keep
        a, b = max(start, 0), min(hi, self.h)
        if b > a:
            self.compute(a, b, buf[(a - lo) * W : (b - lo) * W])
        if start < min(hi, 0):
            buf[(start - lo) * W : (min(hi, 0) - lo) * W].zero_()
        top = max(start, self.h)
        if top < hi:
            buf[(top - lo) * W : (hi - lo) * W].zero_()
        self.lo, self.hi, self.valid = lo, hi, True
        return buf[: (hi - lo) * W]

    def rows(self, a: int, b: int) -> torch.Tensor:
        """Image rows ``a .. b - 1`` of the current window."""
        return self.buffers[self.cur][
            (a - self.lo) * self.w : (b - self.lo) * self.w
        ]


def _linear_into(
    x: torch.Tensor,
    weight_t: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor,
) -> torch.Tensor:
    if bias is None:
        return torch.mm(x, weight_t, out=out)
    return torch.addmm(bias, x, weight_t, out=out)


def _fc1_rows(
    x: torch.Tensor,
    width: int,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    relu: bool,
) -> Callable[[int, int, torch.Tensor], None]:
    """``compute`` of a :class:`_RowWindow` of ``relu?(fc1(x))`` for one image."""
    weight_t = weight.t()

    def compute(a: int, b: int, out: torch.Tensor) -> None:
        _linear_into(x[a * width : b * width], weight_t, bias, out)
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
    rows = rows or block_rows(W, hidden, x.element_size())
    x = x.contiguous()
    out = x.new_empty(B, N, fc2_weight.shape[0])
    fc2_weight_t = fc2_weight.t()
    for b in range(B):
        h1 = _RowWindow(
            x,
            W,
            H,
            hidden,
            rows + 2,
            _fc1_rows(x[b], W, fc1_weight, fc1_bias, relu),
        )
        for r0, r1 in _row_blocks(H, rows):
            hid = _dwconv(
                h1.get(r0 - 1, r1 + 1), r1 - r0 + 2, W, dw_weight, dw_bias
            )
            # a fresh tensor only this function holds: GELU in place
            hid = torch.ops.aten.gelu_(hid)
            _linear_into(hid, fc2_weight_t, fc2_bias, out[b, r0 * W : r1 * W])
    return out


def _conv_backward(
    grad: torch.Tensor,
    grad_rows: int,
    inp: torch.Tensor,
    in_rows: int,
    width: int,
    weight: torch.Tensor,
    mask: list[bool],
) -> Any:
    """``convolution_backward`` of :func:`_dwconv` (padding only along W)."""
    return torch.ops.aten.convolution_backward(
        _as_image(grad, grad_rows, width),
        _as_image(inp, in_rows, width),
        weight,
        [weight.shape[0]],
        [1, 1],
        [0, 1],
        [1, 1],
        False,
        [0, 0],
        weight.shape[0],
        mask,
    )


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

    Per block of rows ``r0 .. r1 - 1``: ``relu?(fc1(x))`` on rows ``r0 - 2 .. r1 + 1``,
    the convolution's output ``d`` and its gradient ``g_d`` on rows ``r0 - 1 .. r1``
    (each row computed once, the overlap carried over), then the gradients of the
    block's own rows.
    """
    B, N, _ = x.shape
    H, W = hw_shape
    hidden = fc1_weight.shape[0]
    rows = rows or block_rows(W, hidden, x.element_size())
    x, grad_out = x.contiguous(), grad_out.contiguous()
    # fc2's gradients need no flag: g_w2 / g_b2 below are None where not needed
    need_x, need_w1, need_b1, need_dw, need_db, _, _ = needs
    need_b1 = need_b1 and fc1_bias is not None
    need_db = need_db and dw_bias is not None
    need_h1 = need_x or need_w1 or need_b1
    grad_x = x.new_empty(x.shape) if need_x else None
    grads = [
        torch.zeros_like(t) if need and t is not None else None
        for need, t in zip(
            needs[1:],
            (fc1_weight, fc1_bias, dw_weight, dw_bias, fc2_weight, fc2_bias),
            strict=True,
        )
    ]
    g_w1, g_b1, g_dw, g_db, g_w2, g_b2 = grads
    for b in range(B):
        xb, gob = x[b], grad_out[b]
        h1 = _RowWindow(
            x,
            W,
            H,
            hidden,
            rows + 4,
            _fc1_rows(xb, W, fc1_weight, fc1_bias, relu),
        )

        # The windows' fill functions see this image's windows (bound as defaults).
        def conv_rows(
            a: int, b_: int, out: torch.Tensor, h1: _RowWindow = h1
        ) -> None:
            out.copy_(
                _dwconv(
                    h1.rows(a - 1, b_ + 1),
                    b_ - a + 2,
                    W,
                    dw_weight,
                    dw_bias,
                )
            )

        d = _RowWindow(x, W, H, hidden, rows + 2, conv_rows)

        def grad_d_rows(
            a: int,
            b_: int,
            out: torch.Tensor,
            gob: torch.Tensor = gob,
            d: _RowWindow = d,
        ) -> None:
            g_act = torch.mm(gob[a * W : b_ * W], fc2_weight)
            torch.ops.aten.gelu_backward.grad_input(
                g_act,
                d.rows(a, b_),
                grad_input=out,
            )

        g_d = _RowWindow(x, W, H, hidden, rows + 2, grad_d_rows)
        for r0, r1 in _row_blocks(H, rows):
            n = r1 - r0
            h1_win = h1.get(r0 - 2, r1 + 2)
            d.get(r0 - 1, r1 + 1)
            g_d_win = g_d.get(r0 - 1, r1 + 1)
            go = gob[r0 * W : r1 * W]
            # each g_* (and grad_x) is None where its gradient is not needed
            if g_w2 is not None:
                act = F.gelu(d.rows(r0, r1))
                g_w2.addmm_(go.t(), act)
            if g_b2 is not None:
                g_b2.add_(go.sum(0))
            if need_dw or need_db:
                _, gw, gb = _conv_backward(
                    g_d.rows(r0, r1),
                    n,
                    h1.rows(r0 - 1, r1 + 1),
                    n + 2,
                    W,
                    dw_weight,
                    [False, need_dw, need_db],
                )
                if g_dw is not None:
                    g_dw.add_(gw)
                if g_db is not None:
                    g_db.add_(gb)
            if not need_h1:
                continue
            g_h1 = _conv_backward(
                g_d_win,
                n + 2,
                h1_win,
                n + 4,
                W,
                dw_weight,
                [True, False, False],
            )[0]
            g_h1 = _as_tokens(g_h1[:, :, 2 : 2 + n])
            if relu:
                g_h1 = g_h1.masked_fill(h1.rows(r0, r1) <= 0, 0)
            if grad_x is not None:
                torch.mm(g_h1, fc1_weight, out=grad_x[b, r0 * W : r1 * W])
            if g_w1 is not None:
                g_w1.addmm_(g_h1.t(), xb[r0 * W : r1 * W])
            if g_b1 is not None:
                g_b1.add_(g_h1.sum(0))
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
