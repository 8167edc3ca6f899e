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
"""
from typing import Iterator, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as _module

#: Hidden-tensor bytes of one row block (about). Measured on a 2-core AMD EPYC (1 MiB
#: L2 per core, 32 MiB L3): 1-4 MiB are equally fast, 0.25 MiB too small for the linear
#: layers, 16 MiB out of the cache.
BLOCK_BYTES = 2 << 20
#: Tokens a block has at least (whole rows), so that the linear layers of the wide
#: late stages still multiply matrices of >= 1024 rows.
BLOCK_MIN_TOKENS = 1024


def has_hooks(module: nn.Module) -> bool:
    """Whether ``module`` has a forward (pre-)hook or a backward (pre-)hook."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or module._backward_hooks or module._backward_pre_hooks)


def any_global_module_hook() -> bool:
    """Whether a hook for every module is registered
    (``torch.nn.modules.module.register_module_forward_hook`` and the like)."""
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_backward_hooks or _module._global_backward_pre_hooks)


def block_rows(width: int, hidden: int, element_size: int) -> int:
    """Rows per block: about :data:`BLOCK_BYTES` of hidden tensor, at least
    :data:`BLOCK_MIN_TOKENS` tokens and one row."""
    by_bytes = BLOCK_BYTES // max(1, width * hidden * element_size)
    by_tokens = -(-BLOCK_MIN_TOKENS // max(1, width))
    return max(1, by_bytes, by_tokens)


def _row_blocks(height: int, rows: int) -> Iterator[Tuple[int, int]]:
    for r0 in range(0, height, rows):
        yield r0, min(r0 + rows, height)


def _as_image(rows: torch.Tensor, n_rows: int, width: int) -> torch.Tensor:
    """``(n_rows * width, C)`` row-major tokens as a channels-last ``(1, C, n_rows, W)``."""
    return rows.view(1, n_rows, width, rows.shape[-1]).permute(0, 3, 1, 2)


def _as_tokens(image: torch.Tensor) -> torch.Tensor:
    """A channels-last ``(1, C, h, W)`` image as ``(h * W, C)`` tokens (no copy if it is
    channels-last, as oneDNN's convolutions return it)."""
    return image.permute(0, 2, 3, 1).reshape(-1, image.shape[1])


class _Fc1Rows:
    """``relu?(fc1(x))`` of one image, row by row, with the two rows above the current
    block carried over from the previous block: ``window(r0, r1)`` returns the rows
    ``max(r0 - 1, 0) .. min(r1 + 1, H) - 1`` as ``(rows * W, hidden)`` tokens, computing
    each image row once. Two buffers take turns, so a window stays valid until the
    next-but-one call."""

    def __init__(self, x: torch.Tensor, width: int, height: int, rows: int,
                 weight: torch.Tensor, bias: Optional[torch.Tensor], relu: bool):
        self.x, self.w, self.h, self.rows = x, width, height, rows
        self.weight_t, self.bias, self.relu = weight.t(), bias, relu
        hidden = weight.shape[0]
        self.buffers = [x.new_empty((rows + 2) * width, hidden) for _ in range(2)]
        self.turn = 0
        self.done = 0  # image rows computed so far

    def _fc1(self, r0: int, r1: int, out: torch.Tensor) -> None:
        x = self.x[r0 * self.w:r1 * self.w]
        if self.bias is None:
            torch.mm(x, self.weight_t, out=out)
        else:
            torch.addmm(self.bias, x, self.weight_t, out=out)
        if self.relu:
            out.relu_()

    def window(self, r0: int, r1: int) -> torch.Tensor:
        W = self.w
        prev, buf = self.buffers[self.turn], self.buffers[1 - self.turn]
        self.turn = 1 - self.turn
        # buffer row j holds image row r0 - 1 + j
        lo, hi = max(r0 - 1, 0), min(r1 + 1, self.h)
        if r0 > 0:  # rows r0 - 1 and r0 were the previous block's last two
            buf[:2 * W].copy_(prev[(self.rows) * W:(self.rows + 2) * W])
        new = max(self.done, lo)
        if hi > new:
            j = new - (r0 - 1)
            self._fc1(new, hi, buf[j * W:(j + hi - new) * W])
        self.done = hi
        j = lo - (r0 - 1)
        return buf[j * W:(j + hi - lo) * W]


@torch.no_grad()
def mixffn_forward(x: torch.Tensor, hw_shape: Tuple[int, int], fc1_weight: torch.Tensor,
                   fc1_bias: Optional[torch.Tensor], dw_weight: torch.Tensor,
                   dw_bias: Optional[torch.Tensor], fc2_weight: torch.Tensor,
                   fc2_bias: Optional[torch.Tensor], relu: bool,
                   rows: Optional[int] = None) -> torch.Tensor:
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
        fc1 = _Fc1Rows(x[b], W, H, rows, fc1_weight, fc1_bias, relu)
        for r0, r1 in _row_blocks(H, rows):
            window = fc1.window(r0, r1)
            lo = max(r0 - 1, 0)
            n_in = window.shape[0] // W
            hid = F.conv2d(_as_image(window, n_in, W), dw_weight, dw_bias, 1, 1, 1, hidden)
            hid = _as_tokens(hid[:, :, r0 - lo:r1 - lo])
            # a fresh tensor only this function holds: GELU in place
            hid = torch.ops.aten.gelu_(hid)
            dst = out[b, r0 * W:r1 * W]
            if fc2_bias is None:
                torch.mm(hid, fc2_weight_t, out=dst)
            else:
                torch.addmm(fc2_bias, hid, fc2_weight_t, out=dst)
    return out
