"""oneDNN's matmul for the attention's linear layers: F.linear's numbers and gradients,
taken only when nobody could tell the difference."""

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pvtfpn_mm.models.backbones import mixffn_fused, pvt_v2
from pvtfpn_mm.models.backbones.onednn_ops import onednn_linear
from pvtfpn_mm.models.backbones.pvt_v2 import SpatialReductionAttention

from _helpers import random_params_

ONEDNN = mixffn_fused.use_onednn_matmul(torch.ones(1))
needs_onednn = pytest.mark.skipif(
    not ONEDNN, reason="torch has no oneDNN matmul here"
)


def _relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


@needs_onednn
@pytest.mark.parametrize('bias', [False, True])
def test_equals_f_linear_forward_and_every_gradient_subset(bias):
    x0 = torch.randn(2, 7, 5)
    weight0 = torch.randn(3, 5)
    bias0 = torch.randn(3) if bias else None
    grad = torch.randn(2, 7, 3)
    with torch.no_grad():
        assert (
            _relative(
                onednn_linear(x0, weight0, bias0), F.linear(x0, weight0, bias0)
            )
            < 1e-6
        )
    for flags in itertools.product((False, True), repeat=3 if bias else 2):
        if not any(flags):
            continue
        grads = []
        for fn in (onednn_linear, F.linear):
            leaves = [
                t.clone().requires_grad_(f)
                for t, f in zip((x0, weight0, bias0), flags, strict=False)
            ]
            out = fn(*leaves, *([None] if not bias else []))
            out.backward(grad)
            grads.append([t.grad for t in leaves])
        for got, exp in zip(*grads, strict=True):
            if exp is None:
                assert got is None, flags
            else:
                assert got.shape == exp.shape
                assert _relative(got, exp) < 1e-5, flags


@needs_onednn
def test_non_contiguous_input():
    """Gradients equal to F.linear's at a non-contiguous input (fp32: oneDNN has no
    fp64 matmul, so no gradcheck)."""
    x = torch.randn(4, 6, 3).transpose(0, 1).requires_grad_()
    weight = torch.randn(2, 3, requires_grad=True)
    out = onednn_linear(x, weight, None)
    assert out.shape == (6, 4, 2)
    (gx, gw) = torch.autograd.grad(out.square().sum(), (x, weight))
    ex, ew = torch.autograd.grad(
        F.linear(x, weight).square().sum(), (x, weight)
    )
    assert _relative(gx, ex) < 1e-5 and _relative(gw, ew) < 1e-5


class Counting:
    def __init__(self, monkeypatch):
        self.n = 0
        original = pvt_v2.onednn_linear

        def counting(*args):
            self.n += 1
            return original(*args)

        monkeypatch.setattr(pvt_v2, 'onednn_linear', counting)


@pytest.mark.parametrize('grad', [False, True])
def test_attention_uses_onednn_only_where_unobservable(monkeypatch, grad):
    calls = Counting(monkeypatch)
    attn = random_params_(SpatialReductionAttention(8, 2, sr_ratio=2))
    x = torch.randn(2, 4 * 6, 8)
    plain = SpatialReductionAttention(8, 2, sr_ratio=2)
    plain.load_state_dict(attn.state_dict())
    plain.onednn = False
    with torch.set_grad_enabled(grad):
        expected = plain(x, (4, 6))
        out = attn(x, (4, 6))
    assert calls.n == 3 * ONEDNN  # q, kv, proj
    assert out.requires_grad == grad
    assert _relative(out, expected) < 1e-5
    if grad:
        grads = torch.autograd.grad(
            out.square().sum(), list(attn.parameters())
        )
        ref = torch.autograd.grad(
            expected.square().sum(), list(plain.parameters())
        )
        for g, r in zip(grads, ref, strict=True):
            assert _relative(g, r) < 1e-5
    seen = []
    handle = attn.kv.register_forward_hook(lambda m, i, o: seen.append(o))
    attn(x, (4, 6))
    assert len(seen) == 1 and calls.n == 5 * ONEDNN  # kv by its module call
    handle.remove()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        attn(x, (4, 6))
    attn.q = type('MyLinear', (nn.Linear,), {})(8, 8)
    attn(x, (4, 6))
    assert calls.n == 7 * ONEDNN
    monkeypatch.setattr(mixffn_fused, 'ONEDNN_MATMUL', False)
    attn(x, (4, 6))
    assert calls.n == 7 * ONEDNN


def _qkv(B=2, h=3, N=13, M=5, d=4):
    """Queries and keys / values laid out as the attention makes them: heads of
    ``(B, N, h, d)`` tokens, keys and values interleaved (strided, not dense)."""
    q = torch.randn(B, N, h, d).transpose(1, 2)
    kv = torch.randn(B, M, 2, h, d).permute(2, 0, 3, 1, 4)
    k, v = kv.unbind(0)
    return q, k, v


@needs_onednn
@pytest.mark.parametrize('h', [1, 3])
def test_attention_equals_sdpa_every_gradient_subset(monkeypatch, h):
    """Blocks of 3 queries (13 = 4 blocks + 1), one head and three; forward and, for
    every subset of q / k / v requiring grad, the gradients, within 1e-5 of torch's."""
    from pvtfpn_mm.models.backbones import onednn_ops

    monkeypatch.setattr(onednn_ops, 'ATTENTION_BLOCK_BYTES', 3 * 5 * 4)
    q0, k0, v0 = _qkv(h=h)
    grad = torch.randn(2, h, 13, 4)
    with torch.no_grad():
        out = onednn_ops.onednn_attention(q0, k0, v0)
        expected = F.scaled_dot_product_attention(q0, k0, v0)
    assert out.shape == expected.shape
    assert _relative(out, expected) < 1e-5
    # the heads' tokens side by side: flattening them is free
    assert out.transpose(1, 2).is_contiguous()
    for flags in itertools.product((False, True), repeat=3):
        if not any(flags):
            continue
        grads = []
        for fn in (
            onednn_ops.onednn_attention,
            F.scaled_dot_product_attention,
        ):
            leaves = [
                t.detach().clone().requires_grad_(f)
                for t, f in zip((q0, k0, v0), flags, strict=True)
            ]
            fn(*leaves).backward(grad)
            grads.append([t.grad for t in leaves])
        for got, exp in zip(*grads, strict=True):
            if exp is None:
                assert got is None, flags
            else:
                assert _relative(got, exp) < 1e-5, flags


def test_attention_module_uses_onednn_attention_where_it_pays(monkeypatch):
    from pvtfpn_mm.models.backbones import onednn_ops

    calls = []
    original = pvt_v2.onednn_attention
    monkeypatch.setattr(
        pvt_v2,
        'onednn_attention',
        lambda *args: calls.append(1) or original(*args),
    )
    attn = random_params_(SpatialReductionAttention(8, 2, sr_ratio=2)).train()
    x = torch.randn(2, 4 * 6, 8, requires_grad=True)
    attn(x, (4, 6))  # 24 queries x 6 keys: below ATTENTION_MIN_SCORES
    assert calls == []
    monkeypatch.setattr(pvt_v2, 'ATTENTION_MIN_SCORES', 24 * 6)
    monkeypatch.setattr(onednn_ops, 'ATTENTION_BLOCK_BYTES', 5 * 6 * 4)
    plain = SpatialReductionAttention(8, 2, sr_ratio=2).train()
    plain.load_state_dict(attn.state_dict())
    plain.onednn = False
    out = attn(x, (4, 6))
    assert calls == [1] * ONEDNN
    expected = plain(x, (4, 6))
    assert _relative(out, expected) < 1e-5
    inputs = [x, *attn.parameters()]
    grads = torch.autograd.grad(out.square().sum(), inputs)
    ref = torch.autograd.grad(
        expected.square().sum(), [x, *plain.parameters()]
    )
    for g, r in zip(grads, ref, strict=True):
        assert _relative(g, r) < 1e-5
    attn.attn_drop = 0.1  # dropout on the attention weights: torch's
    attn(x, (4, 6))
    assert calls == [1] * ONEDNN
    attn.eval()
    with torch.no_grad():
        attn(x, (4, 6))
    assert calls == [1, 1] * ONEDNN


@needs_onednn
@pytest.mark.parametrize('a_cols, b_cols', [(3, 7), (7, 3), (5, 5)])
def test_matmul_tn_either_orientation(a_cols, b_cols):
    from pvtfpn_mm.models.backbones.onednn_ops import matmul_tn

    a, b = torch.randn(11, a_cols), torch.randn(11, b_cols)
    out = matmul_tn(a, b)
    assert out.shape == (a_cols, b_cols)
    assert _relative(out, a.t() @ b) < 1e-6
