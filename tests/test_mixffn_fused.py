"""The row-blocked CPU path of PVT-v2's MLP: equal to the op-by-op path for every block
layout, taken only when no observer can tell the difference."""

import itertools

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.module import register_module_forward_hook

from pvtfpn_mm.models.backbones import mixffn_fused, pvt_v2
from pvtfpn_mm.models.backbones.pvt_v2 import MixFFN, PVTv2

from _helpers import random_params_

# fp32: the same products, only summed in blocks of other sizes
ATOL = 1e-5


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread (no OpenMP fork/join per block)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_mlp(dims=8, hidden=24, relu=False, seed=0):
    return random_params_(
        MixFFN(dims, hidden, extra_relu=relu), seed=seed
    ).eval()


def reference(mlp, x, hw):
    mlp.fused = False
    try:
        with torch.no_grad():
            return mlp(x, hw)
    finally:
        del mlp.fused


@pytest.mark.parametrize('relu', [False, True])
@pytest.mark.parametrize(
    'h, w', [(1, 1), (1, 5), (2, 3), (3, 1), (5, 4), (7, 3)]
)
def test_blocked_forward_equals_op_by_op(h, w, relu):
    mlp = make_mlp(relu=relu)
    x = torch.randn(2, h * w, 8)
    ref = reference(mlp, x, (h, w))
    for rows in range(
        1, h + 2
    ):  # one row per block ... one block for the whole image
        out = mixffn_fused.mixffn_forward(
            x,
            (h, w),
            mlp.fc1.weight,
            mlp.fc1.bias,
            mlp.dwconv.weight,
            mlp.dwconv.bias,
            mlp.fc2.weight,
            mlp.fc2.bias,
            relu=relu,
            rows=rows,
        )
        torch.testing.assert_close(
            out, ref, rtol=0, atol=ATOL, msg=f'rows={rows}'
        )


def test_blocked_forward_without_biases():
    mlp = make_mlp(seed=1)
    for m in (mlp.fc1, mlp.dwconv, mlp.fc2):
        m.bias = None
    x = torch.randn(1, 6 * 5, 8)
    ref = reference(mlp, x, (6, 5))
    out = mixffn_fused.mixffn_forward(
        x,
        (6, 5),
        mlp.fc1.weight,
        None,
        mlp.dwconv.weight,
        None,
        mlp.fc2.weight,
        None,
        relu=False,
        rows=2,
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=ATOL)


def test_input_is_not_changed_and_output_is_new(monkeypatch):
    calls = Calls(monkeypatch)
    mlp = make_mlp()
    x = torch.randn(2, 4 * 4, 8)
    x_clone = x.clone()
    with torch.no_grad():
        out = mlp(x, (4, 4))
    assert calls.n == 1
    assert torch.equal(x, x_clone)
    assert out.data_ptr() != x.data_ptr() and out.is_contiguous()


@pytest.mark.parametrize(
    'width, hidden, rows',
    [
        (128, 512, 16),  # b2 stage 0 at 512 x 512: 4 MiB blocks
        (336, 256, 12),  # b0 stage 0 at 800 x 1344
        (32, 1280, 32),  # b2 stage 2 at 512 x 512: at least 1024 tokens
        (5000, 512, 1),  # at least one row
    ],
)
def test_block_rows(width, hidden, rows):
    assert mixffn_fused.block_rows(width, hidden, 4) == rows


class Calls:
    """Counts the calls of the blocked forward."""

    def __init__(self, monkeypatch):
        self.n = 0
        monkeypatch.setattr(pvt_v2, 'FUSED_MIN_BYTES', 0)  # tiny test tensors
        original = pvt_v2.mixffn_forward

        def counting(*args, **kwargs):
            self.n += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(pvt_v2, 'mixffn_forward', counting)


def _run(mlp, grad=False, autocast=False):
    x = torch.randn(1, 9, 8)
    with torch.set_grad_enabled(grad), torch.autocast('cpu', enabled=autocast):
        return mlp(x, (3, 3))


def test_fused_only_when_unobservable(monkeypatch):
    calls = Calls(monkeypatch)
    mlp = make_mlp()
    _run(mlp)
    assert calls.n == 1  # eval, no grad: fused

    for child in ('fc1', 'relu', 'dwconv', 'act', 'drop', 'fc2'):
        for register in ('register_forward_hook', 'register_forward_pre_hook'):
            handle = getattr(getattr(mlp, child), register)(lambda *args: None)
            _run(mlp)
            assert calls.n == 1, (child, register)
            handle.remove()
    handle = mlp.fc2.register_full_backward_hook(lambda *args: None)
    _run(mlp)
    assert calls.n == 1
    handle.remove()
    handle = register_module_forward_hook(lambda *args: None)
    _run(mlp)
    assert calls.n == 1
    handle.remove()

    mlp.register_forward_hook(lambda *args: None)  # on the MLP itself: fine
    _run(mlp)
    assert calls.n == 2

    mlp.fused = False
    _run(mlp)
    assert calls.n == 2
    del mlp.fused
    _run(mlp, autocast=True)
    assert calls.n == 2
    _run(mlp, grad=True)
    assert calls.n == 2  # autograd, small hidden tensors: op by op
    dropout = make_mlp()
    dropout.drop.p = 0.1
    _run(dropout.train())
    assert calls.n == 2
    _run(dropout.eval())
    assert calls.n == 3


def test_fused_only_for_large_hidden_tensors(monkeypatch):
    calls = Calls(monkeypatch)
    monkeypatch.setattr(pvt_v2, 'FUSED_MIN_BYTES', 9 * 24 * 4 + 1)
    mlp = make_mlp()
    _run(mlp)  # 1 x 9 tokens x 24 hidden channels x 4 bytes
    assert calls.n == 0
    monkeypatch.setattr(pvt_v2, 'FUSED_MIN_BYTES', 9 * 24 * 4)
    _run(mlp)
    assert calls.n == 1


def test_fused_not_taken_for_replaced_submodules(monkeypatch):
    calls = Calls(monkeypatch)
    mlp = make_mlp()
    mlp.act = nn.GELU(approximate='tanh')
    _run(mlp)
    mlp = make_mlp()
    mlp.fc1 = type('MyLinear', (nn.Linear,), {})(8, 24)
    _run(mlp)
    assert calls.n == 0


def test_whole_model_any_block_layout_equals_timm(monkeypatch):
    """PVTv2 with blocks of one row, three rows and whole images gives timm's features
    (batch 2, odd sizes); every MLP took the blocked path."""
    import timm

    calls = Calls(monkeypatch)
    ref = random_params_(
        timm.create_model('pvt_v2_b0', features_only=True), seed=2
    ).eval()
    model = PVTv2('b0').eval()
    pvt_v2.load_pretrained(model, ref.state_dict())
    x = torch.randn(2, 3, 75, 97)
    with torch.no_grad():
        expected = ref(x)
        for rows, block_bytes in itertools.product((1, 3), (0, 1 << 30)):
            monkeypatch.setattr(mixffn_fused, 'BLOCK_BYTES', block_bytes)
            monkeypatch.setattr(mixffn_fused, 'BLOCK_MIN_TOKENS', rows)
            n = calls.n
            outs = model(x)
            assert calls.n - n == sum(model.depths)
            for out, exp in zip(outs, expected, strict=True):
                torch.testing.assert_close(out, exp, rtol=0, atol=ATOL)


# ---- autograd: MixFFNFunction / mixffn_backward ---------------------------------------


def _params(mlp):
    return (
        mlp.fc1.weight,
        mlp.fc1.bias,
        mlp.dwconv.weight,
        mlp.dwconv.bias,
        mlp.fc2.weight,
        mlp.fc2.bias,
    )


@pytest.mark.parametrize('relu', [False, True])
@pytest.mark.parametrize('b, h, w', [(2, 5, 3), (1, 1, 4), (1, 4, 1)])
def test_function_gradcheck(b, h, w, relu):
    mlp = MixFFN(3, 5, extra_relu=relu).double()
    x = torch.randn(b, h * w, 3, dtype=torch.double, requires_grad=True)

    def f(x, *params):
        return mixffn_fused.MixFFNFunction.apply(x, (h, w), *params, relu)

    assert torch.autograd.gradcheck(f, (x, *_params(mlp)), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize('relu', [False, True])
@pytest.mark.parametrize('h, w', [(1, 3), (2, 2), (6, 3), (7, 2)])
def test_blocked_backward_equals_autograd(h, w, relu):
    """Every block size (one row ... one block), every subset of wanted gradients."""
    mlp = MixFFN(4, 12, extra_relu=relu).double()
    mlp.fused = False
    x = torch.randn(2, h * w, 4, dtype=torch.double, requires_grad=True)
    out = mlp(x, (h, w))
    grad_out = torch.randn_like(out)
    inputs = (x, *_params(mlp))
    expected = torch.autograd.grad(out, inputs, grad_out)
    detached = [t.detach() for t in inputs]
    for rows in range(1, h + 2):
        for needs in (
            [True] * 7,
            [True] + [False] * 6,
            [False] + [True] * 6,
            [False, False, False, True, False, True, False],
        ):
            grads = mixffn_fused.mixffn_backward(
                grad_out,
                detached[0],
                (h, w),
                *detached[1:],
                relu,
                needs,
                rows=rows,
            )
            for need, grad, exp in zip(needs, grads, expected, strict=True):
                if not need:
                    assert grad is None
                else:
                    torch.testing.assert_close(
                        grad,
                        exp,
                        rtol=1e-10,
                        atol=1e-10,
                        msg=f'rows={rows} needs={needs}',
                    )


def test_module_takes_the_autograd_path_for_large_hidden_tensors(monkeypatch):
    calls = []
    apply = mixffn_fused.MixFFNFunction.apply
    monkeypatch.setattr(
        pvt_v2.MixFFNFunction,
        'apply',
        lambda *args: calls.append(1) or apply(*args),
    )
    mlp = make_mlp().train()
    x = torch.randn(2, 5 * 4, 8, requires_grad=True)
    expected = torch.autograd.grad(reference_grad(mlp, x, (5, 4)), x)
    mlp(x, (5, 4)).square().sum().backward()
    assert (
        calls == []
    )  # 2 x 20 tokens x 24 hidden: below FUSED_AUTOGRAD_MIN_BYTES
    monkeypatch.setattr(pvt_v2, 'FUSED_AUTOGRAD_MIN_BYTES', 2 * 20 * 24 * 4)
    out = mlp(x, (5, 4))
    assert calls == [1]
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(grad, expected[0], rtol=1e-5, atol=1e-5)


def reference_grad(mlp, x, hw):
    mlp.fused = False
    try:
        return mlp(x, hw).square().sum()
    finally:
        del mlp.fused


@pytest.mark.parametrize('with_cp', [False, True])
def test_whole_model_training_step_equals_op_by_op(monkeypatch, with_cp):
    """Same loss and gradients (b2_li: the ReLU; frozen stage 0: no parameter grads
    there) with the blocked autograd path forced for every MLP, with and without
    with_cp."""
    monkeypatch.setattr(pvt_v2, 'FUSED_AUTOGRAD_MIN_BYTES', 0)
    calls = []
    apply = mixffn_fused.MixFFNFunction.apply
    monkeypatch.setattr(
        pvt_v2.MixFFNFunction,
        'apply',
        lambda *args: calls.append(1) or apply(*args),
    )
    kwargs = dict(depths=(1, 2, 1, 1), frozen_stages=0, with_cp=with_cp)
    fused = random_params_(PVTv2('b2_li', **kwargs), seed=3).train()
    plain = PVTv2('b2_li', **kwargs).train()
    plain.load_state_dict(fused.state_dict())
    for m in plain.modules():
        if isinstance(m, MixFFN):
            m.fused = False
    x = torch.randn(2, 3, 64, 48)
    grads = []
    for model in (fused, plain):
        loss = sum(
            (o * torch.linspace(-1, 1, o.shape[1])[:, None, None])
            .square()
            .mean()
            for o in model(x)
        )
        loss.backward()
        grads.append(
            {
                n: p.grad
                for n, p in model.named_parameters()
                if p.grad is not None
            }
        )
    # stage 0 is frozen (no autograd there); with_cp runs the others again in backward
    assert len(calls) == 4 * (2 if with_cp else 1)
    assert grads[0].keys() == grads[1].keys()
    assert not any(n.startswith('stages.0.') for n in grads[0])
    for name, grad in grads[0].items():
        torch.testing.assert_close(
            grad, grads[1][name], rtol=1e-4, atol=1e-6, msg=name
        )


# ---- fp32: every block size, every subset of wanted gradients ---------------------------


def _assert_relative(grad, expected, rel, msg):
    """``max |grad - expected| <= rel * max |expected|`` (fp32 sums in another order)."""
    err = float((grad - expected).abs().max())
    scale = float(expected.abs().max())
    assert err <= rel * scale, (
        f'{msg}: max|diff| {err:.3g} > {rel} * {scale:.3g}'
    )


@pytest.mark.parametrize('relu', [False, True])
@pytest.mark.parametrize('b, h, w', [(2, 5, 3), (1, 7, 4), (2, 1, 5)])
def test_blocked_backward_fp32_every_subset(b, h, w, relu):
    """fp32 gradients within 1e-5 (relative to the largest) of autograd's, for every one
    of the 127 non-empty subsets of wanted gradients (the unwanted ones are None), with
    blocks of 1 and 3 rows (carried rows overlap the moved ones), 4 rows and one block
    for the image."""
    mlp = random_params_(MixFFN(6, 20, extra_relu=relu), seed=4)
    mlp.fused = False
    x = torch.randn(b, h * w, 6, requires_grad=True)
    out = mlp(x, (h, w))
    grad_out = torch.randn_like(out)
    inputs = (x, *_params(mlp))
    expected = torch.autograd.grad(out, inputs, grad_out)
    detached = [t.detach() for t in inputs]
    for rows in sorted({1, 3, 4, h + 1}):
        for needs in itertools.product((False, True), repeat=7):
            if not any(needs):
                continue
            grads = mixffn_fused.mixffn_backward(
                grad_out,
                detached[0],
                (h, w),
                *detached[1:],
                relu,
                needs,
                rows=rows,
            )
            for i, (need, grad, exp) in enumerate(
                zip(needs, grads, expected, strict=True)
            ):
                msg = f'rows={rows} needs={needs} grad {i}'
                if not need:
                    assert grad is None, msg
                else:
                    assert grad.shape == exp.shape and grad.is_contiguous()
                    _assert_relative(grad, exp, 1e-5, msg)


def test_blocked_backward_without_biases():
    mlp = random_params_(MixFFN(5, 15, extra_relu=True), seed=5)
    mlp.fused = False
    for m in (mlp.fc1, mlp.dwconv, mlp.fc2):
        m.bias = None
    x = torch.randn(2, 6 * 5, 5, requires_grad=True)
    out = mlp(x, (6, 5))
    grad_out = torch.randn_like(out)
    weights = (mlp.fc1.weight, mlp.dwconv.weight, mlp.fc2.weight)
    expected = torch.autograd.grad(out, (x, *weights), grad_out)
    for rows in (1, 2, 4, 7):
        grads = mixffn_fused.mixffn_backward(
            grad_out,
            x.detach(),
            (6, 5),
            mlp.fc1.weight.detach(),
            None,
            mlp.dwconv.weight.detach(),
            None,
            mlp.fc2.weight.detach(),
            None,
            True,
            [True] * 7,
            rows=rows,
        )
        assert grads[2] is None and grads[4] is None and grads[6] is None
        for grad, exp in zip(
            (grads[0], grads[1], grads[3], grads[5]), expected, strict=True
        ):
            _assert_relative(grad, exp, 1e-5, f'rows={rows}')


@pytest.mark.parametrize('relu', [False, True])
def test_function_every_requires_grad_subset(monkeypatch, relu):
    """Through the module (MixFFNFunction, ctx.needs_input_grad): for every subset of
    x and the six parameters requiring grad, the same .grad as op by op, and no .grad
    where none is required."""
    monkeypatch.setattr(pvt_v2, 'FUSED_AUTOGRAD_MIN_BYTES', 0)
    monkeypatch.setattr(
        mixffn_fused, 'BLOCK_MIN_TOKENS', 2 * 5
    )  # 2-row blocks
    calls = []
    apply = mixffn_fused.MixFFNFunction.apply
    monkeypatch.setattr(
        pvt_v2.MixFFNFunction,
        'apply',
        lambda *args: calls.append(1) or apply(*args),
    )
    fused = random_params_(MixFFN(4, 12, extra_relu=relu), seed=6).train()
    plain = MixFFN(4, 12, extra_relu=relu).train()
    plain.load_state_dict(fused.state_dict())
    plain.fused = False
    x0 = torch.randn(2, 7 * 5, 4)
    weight = torch.linspace(-1, 1, 4)
    for flags in itertools.product((False, True), repeat=7):
        if not any(flags):
            continue
        results = []
        for mlp in (fused, plain):
            x = x0.clone().requires_grad_(flags[0])
            for p, flag in zip(_params(mlp), flags[1:], strict=True):
                p.requires_grad_(flag)
                p.grad = None
            (mlp(x, (7, 5)) * weight).square().sum().backward()
            results.append([x.grad] + [p.grad for p in _params(mlp)])
        for i, (got, exp) in enumerate(zip(*results, strict=True)):
            if exp is None:
                assert got is None, (flags, i)
            else:
                _assert_relative(got, exp, 1e-5, f'{flags} grad {i}')
    assert len(calls) == 127


def test_onednn_matmul_only_where_allowed(monkeypatch):
    x = torch.randn(2, 3)
    expected = (
        hasattr(torch.ops.mkldnn, '_linear_pointwise')
        and torch.backends.mkldnn.is_available()
    )
    assert mixffn_fused.use_onednn_matmul(x) == expected
    assert not mixffn_fused.use_onednn_matmul(x.double())
    with torch.backends.mkldnn.flags(enabled=False):
        assert not mixffn_fused.use_onednn_matmul(x)
    monkeypatch.setattr(mixffn_fused, 'ONEDNN_MATMUL', False)
    assert not mixffn_fused.use_onednn_matmul(x)


@pytest.mark.parametrize('relu', [False, True])
def test_mkl_and_onednn_kernels_agree(monkeypatch, relu):
    """The blocked kernels with MKL's and with oneDNN's matmul: the same forward and
    gradients (fp32, within 1e-5 of the largest), both equal to op by op."""
    mlp = random_params_(MixFFN(8, 24, extra_relu=relu), seed=7)
    x = torch.randn(2, 6 * 5, 8, requires_grad=True)
    mlp.fused = False
    out = mlp(x, (6, 5))
    grad_out = torch.randn_like(out)
    expected = torch.autograd.grad(out, (x, *_params(mlp)), grad_out)
    params = [p.detach() for p in _params(mlp)]
    for onednn in (False, True):
        monkeypatch.setattr(mixffn_fused, 'ONEDNN_MATMUL', onednn)
        fwd = mixffn_fused.mixffn_forward(
            x.detach(), (6, 5), *params, relu, rows=2
        )
        _assert_relative(fwd, out.detach(), 1e-5, f'onednn={onednn}')
        grads = mixffn_fused.mixffn_backward(
            grad_out, x.detach(), (6, 5), *params, relu, [True] * 7, rows=2
        )
        for i, (grad, exp) in enumerate(zip(grads, expected, strict=True)):
            _assert_relative(grad, exp, 1e-5, f'onednn={onednn} grad {i}')


def test_smaller_limit_with_onednn(monkeypatch):
    """With oneDNN's matmul both blocked paths start at ONEDNN_MIN_BYTES (MKL: their own
    limits), so a forward with and without autograd runs the same kernels."""
    calls = Calls(monkeypatch)
    applied = []
    apply = mixffn_fused.MixFFNFunction.apply
    monkeypatch.setattr(
        pvt_v2.MixFFNFunction,
        'apply',
        lambda *args: applied.append(1) or apply(*args),
    )
    monkeypatch.setattr(pvt_v2, 'FUSED_MIN_BYTES', 1 << 30)
    monkeypatch.setattr(pvt_v2, 'ONEDNN_MIN_BYTES', 9 * 24 * 4 + 1)
    mlp = make_mlp().train()
    _run(mlp)  # 9 tokens x 24 hidden channels x 4 bytes: below both
    _run(mlp, grad=True)
    assert calls.n == 0 and applied == []
    monkeypatch.setattr(pvt_v2, 'ONEDNN_MIN_BYTES', 9 * 24 * 4)
    _run(mlp)
    with torch.no_grad():
        fast = mlp(torch.ones(1, 9, 8), (3, 3))
    slow = mlp(torch.ones(1, 9, 8), (3, 3))
    onednn = mixffn_fused.use_onednn_matmul(torch.ones(1))
    assert calls.n == 2 * onednn and applied == [1] * onednn
    assert torch.equal(fast, slow.detach())
    monkeypatch.setattr(mixffn_fused, 'ONEDNN_MATMUL', False)
    _run(mlp)
    _run(mlp, grad=True)
    assert calls.n == 2 * onednn and applied == [1] * onednn
