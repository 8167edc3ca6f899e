"""PVTv2 backbone: parity with timm and mmdet for every variant, options, bad arguments.

Weights are random (nothing is downloaded): a timm model is built on the meta device,
filled with random values and converted with :mod:`pvtfpn_mm.weights`.
"""

import pytest
import timm
import torch
import torch.nn.functional as F

from pvtfpn_mm.models.backbones import pvt_v2
from pvtfpn_mm.models.backbones.pvt_v2 import ARCH_SETTINGS, PVTv2
from pvtfpn_mm.weights import (
    from_ours,
    load_pretrained,
    load_state_dict_strict,
)

from _helpers import random_params_

ARCHS = tuple(ARCH_SETTINGS)  # b0 ... b5, b2_li
MMDET_ARCHS = (
    'b0',
    'b1',
    'b2',
    'b3',
    'b4',
    'b5',
)  # mmdet has no linear SRA (b2_li)
# fp32 rounding only: the same weights, but differently ordered sums (channels-last
# convolutions, oneDNN vs MKL GEMMs, fused vs explicit attention).
ATOL = 1e-5


def random_timm(arch: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """timm's ``pvt_v2_<arch>`` (features_only) with random weights, in eval mode."""
    try:  # built on the meta device: no initialization to pay for
        model = timm.create_model(
            f'pvt_v2_{arch}', features_only=True, device='meta', **kwargs
        ).to_empty(device='cpu')
    except TypeError as err:  # timm 0.9 (the oldest stack) takes no device
        if 'device' not in str(err):
            raise
        model = timm.create_model(
            f'pvt_v2_{arch}', features_only=True, **kwargs
        )
    return random_params_(model, seed).eval()


def mmdet_pvt(arch: str) -> torch.nn.Module:
    """mmdet's PyramidVisionTransformerV2 configured as ``arch`` (mmdet's configs)."""
    from mmdet.models.backbones.pvt import PyramidVisionTransformerV2

    settings = pvt_v2.arch_settings(arch)
    return PyramidVisionTransformerV2(
        embed_dims=settings['embed_dims'][0],
        num_layers=list(settings['depths']),
        num_heads=list(settings['num_heads']),
        mlp_ratios=list(settings['mlp_ratios']),
        drop_path_rate=0.0,
    ).eval()


@pytest.fixture
def one_thread():
    """One intra-op thread for the deep variants on tiny inputs: each op is too small
    for OpenMP's fork/join to pay off, and on a shared machine every join can wait a
    scheduler slice for a descheduled worker (minutes instead of seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def max_diffs(outs_a, outs_b):
    assert len(outs_a) == len(outs_b)
    for a, b in zip(outs_a, outs_b, strict=True):
        assert a.shape == b.shape
    return [
        float((a - b).abs().max()) for a, b in zip(outs_a, outs_b, strict=True)
    ]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_pvt(arch: str, **kwargs) -> PVTv2:
    """A PVTv2 on the meta device (no memory, no init), for loading with assign=True."""
    with torch.device('meta'):
        return PVTv2(arch, **kwargs).eval()


def empty_pvt(arch: str, **kwargs) -> PVTv2:
    """An uninitialized PVTv2 on the CPU, to load weights into."""
    return meta_pvt(arch, **kwargs).to_empty(device='cpu')


@pytest.mark.parametrize('arch', ARCHS)
def test_parity_with_timm_and_mmdet(arch, one_thread):
    """Given the same weights, the four feature maps equal timm's and mmdet's.

    timm: to fp32 rounding (``ATOL``).

    mmdet (b0-b5; it has no linear SRA): mmdet builds every LayerNorm with eps 1e-6,
    where the official model and timm (and our default) use 1e-5 in the
    patch-embedding and spatial-reduction norms.

    * ``embed_norm_eps=1e-6`` is mmdet's model: equal to fp32 rounding (``ATOL``);
    * with the default 1e-5 each of those norms divides by ``sqrt(var + 1e-5)``
      instead of ``sqrt(var + 1e-6)``, a relative change of about ``4.5e-6 / var``.
      The test weights keep the variances near 1 (weights ~ 1/sqrt(fan_in)), so the
      features (which end in a LayerNorm) move by well under 1e-4: we check that
      bound, and that the difference is the eps's (larger than the exact setting's).
    """
    timm_model = random_timm(arch)
    model = meta_pvt(
        arch
    )  # assign=True: takes timm's tensors, no copy of b5's weights
    assert (
        load_pretrained(model, timm_model.state_dict(), assign=True)
        == 'timm_features'
    )
    assert n_params(model) == n_params(timm_model)
    assert model.out_channels == timm_model.feature_info.channels()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        timm_diffs = max_diffs(out, timm_model(x))
    assert max(timm_diffs) <= ATOL, timm_diffs
    if arch not in MMDET_ARCHS:
        return

    del timm_model
    mmdet_model = mmdet_pvt(arch)
    load_state_dict_strict(mmdet_model, from_ours(model.state_dict(), 'mmdet'))
    exact = meta_pvt(arch, embed_norm_eps=1e-6)
    assert (
        load_pretrained(exact, mmdet_model.state_dict(), assign=True)
        == 'mmdet'
    )
    assert n_params(mmdet_model) == n_params(model)
    with torch.no_grad():
        out_mmdet = mmdet_model(x)
        exact_diffs = max_diffs(exact(x), out_mmdet)
        default_diffs = max_diffs(out, out_mmdet)
    assert max(exact_diffs) <= ATOL, exact_diffs
    assert max(default_diffs) <= 1e-4, default_diffs
    assert max(default_diffs) > max(exact_diffs), (default_diffs, exact_diffs)


@pytest.mark.parametrize('arch', ARCHS)
def test_param_count_equals_timm(arch):
    # The plain (classifier) model without its head; built on meta, so no memory.
    try:
        ref = timm.create_model(f'pvt_v2_{arch}', num_classes=0, device='meta')
    except TypeError as err:  # timm 0.9 (the oldest stack) takes no device
        if 'device' not in str(err):
            raise
        ref = timm.create_model(f'pvt_v2_{arch}', num_classes=0)
    with torch.device('meta'):
        model = PVTv2(arch)
    assert n_params(model) == n_params(ref)


def test_timm_parity_batch_and_odd_size():
    ref = random_timm('b0', seed=1)
    model = empty_pvt('b0')
    load_pretrained(model, ref.state_dict())
    x = torch.randn(2, 3, 97, 75)
    with torch.no_grad():
        diffs = max_diffs(model(x), ref(x))
    assert max(diffs) <= ATOL, diffs


def test_explicit_settings_match_timm():
    settings = dict(
        embed_dims=(16, 32, 48, 64),
        depths=(1, 2, 1, 1),
        num_heads=(1, 2, 3, 4),
        sr_ratios=(4, 2, 2, 1),
        mlp_ratios=(2, 3, 4, 4),
    )
    ref = random_timm('b0', seed=3, **settings)
    model = empty_pvt('b3', **settings)  # every per-stage setting overridden
    load_pretrained(model, ref.state_dict())
    assert model.out_channels == [16, 32, 48, 64]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert max(max_diffs(model(x), ref(x))) <= ATOL


def test_linear_override_is_b2_li():
    with torch.device('meta'):
        li = PVTv2('b2_li')
        b2_linear = PVTv2('b2', linear=True)
        b2 = PVTv2('b2')
    shapes = {k: v.shape for k, v in li.state_dict().items()}
    assert shapes == {k: v.shape for k, v in b2_linear.state_dict().items()}
    assert shapes != {k: v.shape for k, v in b2.state_dict().items()}
    assert li.linear and b2_linear.linear and not b2.linear


@pytest.mark.parametrize(
    'size, expected',
    [
        ((511, 513), [(128, 129), (64, 65), (32, 33), (16, 17)]),
        ((32, 32), [(8, 8), (4, 4), (2, 2), (1, 1)]),
        ((33, 47), [(9, 12), (5, 6), (3, 3), (2, 2)]),
    ],
)
def test_any_input_size(size, expected):
    model = PVTv2('b0').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert (
        [o.shape[1] for o in outs] == model.out_channels == [32, 64, 160, 256]
    )
    assert all(o.is_contiguous() and torch.isfinite(o).all() for o in outs)


def test_out_indices():
    model = PVTv2('b0', out_indices=(1, 3)).eval()
    assert model.out_channels == [64, 256]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 8, 8), (1, 256, 2, 2)]
    assert PVTv2('b0', out_indices=2).out_channels == [160]


def test_uses_scaled_dot_product_attention(monkeypatch):
    calls = []

    def counting_sdpa(*args, **kwargs):
        calls.append(args[0].shape)
        return torch.ops.aten.scaled_dot_product_attention(*args, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', counting_sdpa)
    model = PVTv2('b0').eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert len(calls) == sum(model.depths)


def test_frozen_stages_and_norm_eval():
    model = PVTv2('b0', frozen_stages=1, norm_eval=True)
    model.train()
    for i, stage in enumerate(model.stages):
        frozen = i <= 1
        assert all(p.requires_grad != frozen for p in stage.parameters())
        assert (
            stage.training != frozen
            and stage.blocks[0].attn.training != frozen
        )
        if frozen:
            assert not any(m.training for m in stage.modules())
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and not any(m.training for m in norms)
    assert PVTv2('b0', frozen_stages=3).train().stages[3].training is False
    assert all(
        p.requires_grad for p in PVTv2('b0', frozen_stages=-1).parameters()
    )


def test_with_cp_same_gradients(monkeypatch, one_thread):
    calls = []
    checkpoint = pvt_v2.cp.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(1)
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(pvt_v2.cp, 'checkpoint', counting_checkpoint)
    plain = random_params_(PVTv2('b0'), seed=4).train()
    with_cp = PVTv2('b0', with_cp=True).train()
    with_cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, with_cp):
        loss = sum((o.float() ** 2).mean() for o in model(x))
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert len(calls) == sum(with_cp.depths)
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-6), name


def test_grad_and_no_grad_forward_agree():
    """The in-place shortcuts of the no-grad path do not change the result."""
    model = random_params_(PVTv2('b2_li', depths=(1, 1, 1, 1)), seed=5).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fast = model(x)
    slow = model(x)
    assert all(s.requires_grad for s in slow)
    assert max(max_diffs(fast, [s.detach() for s in slow])) <= 1e-6


def test_drop_path_rates():
    model = PVTv2('b0', drop_path_rate=0.3)
    rates = [
        getattr(block.drop_path, 'drop_prob', 0.0)
        for stage in model.stages
        for block in stage.blocks
    ]
    assert rates == pytest.approx([0.3 * i / 7 for i in range(8)])
    model.train()
    x = torch.randn(1, 3, 32, 32)
    assert not torch.equal(
        model(x)[3], model(x)[3]
    )  # stochastic depth in training
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[3], model(x)[3])


def test_init_weights_without_checkpoint_is_timm_like():
    model = PVTv2('b0')
    model.init_weights()
    assert model.is_init
    fc1 = model.stages[0].blocks[0].mlp.fc1
    assert fc1.bias.abs().max() == 0 and 0.01 < float(fc1.weight.std()) < 0.03


def test_registered_for_mmdet_and_mmseg():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmseg.registry import MODELS as MMSEG_MODELS

    import pvtfpn_mm  # noqa: F401  (registers)
    from pvtfpn_mm.registry import MODELS

    for registry, cfg in (
        (MMDET_MODELS, dict(type='PVTv2', arch='b1', out_indices=(2,))),
        (MMSEG_MODELS, dict(type='PVTv2', arch='b1', out_indices=(2,))),
        (MODELS, dict(type='pvtfpn_mm.PVTv2', arch='b1', out_indices=(2,))),
    ):
        model = registry.build(cfg)
        assert isinstance(model, PVTv2) and model.out_channels == [320]


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (dict(arch='b9'), ValueError, "'b9'"),
        (dict(arch='b2-li'), ValueError, "'b2-li'"),
        (
            dict(out_indices=(0, 4)),
            ValueError,
            r'out_indices\[1\]=4 is out of range for 4 entries',
        ),
        (
            dict(out_indices=(-5,)),
            ValueError,
            r'out_indices\[0\]=-5 is out of range for 4 entries',
        ),
        (dict(out_indices=()), ValueError, 'out_indices must not be empty'),
        (
            dict(embed_dims=(32, 64, 160)),
            ValueError,
            r'embed_dims=\(32, 64, 160\) has 3 entries',
        ),
        (
            dict(num_heads=(1, 2, 5, 8, 8)),
            ValueError,
            r'num_heads=\(1, 2, 5, 8, 8\)',
        ),
        (
            dict(depths=(2, 2, 2)),
            ValueError,
            r'has 4 entries, expected one per stage: 3',
        ),
        (dict(sr_ratios=8), TypeError, 'sr_ratios .* got 8'),
        (dict(num_heads=(1, 2, 3, 8)), ValueError, '3 does not divide 160'),
        (
            dict(frozen_stages=4),
            ValueError,
            'frozen_stages=4 is past the last',
        ),
        (
            dict(init_cfg=dict(type='Pretrained')),
            ValueError,
            'names no checkpoint',
        ),
        (
            dict(
                init_cfg=[
                    dict(type='Pretrained', checkpoint='x.pth'),
                    dict(type='Pretrained', checkpoint='y.pth'),
                ]
            ),
            ValueError,
            'has 2 Pretrained entries',
        ),
        (
            dict(
                init_cfg=dict(type='Pretrained', checkpoint='x.pth', strict=1)
            ),
            ValueError,
            r"unknown keys \['strict'\]",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        with torch.device('meta'):
            PVTv2(**kwargs)


def test_load_state_dict_strict_reports_keys():
    model = PVTv2('b0')
    state = model.state_dict()
    state['stages.0.extra.weight'] = torch.zeros(1)
    del state['stages.3.norm.bias']
    with pytest.raises(RuntimeError, match='stages.3.norm.bias') as info:
        load_state_dict_strict(model, state)
    assert 'stages.0.extra.weight' in str(info.value)
    assert info.value.missing == ['stages.3.norm.bias']
    assert info.value.unexpected == ['stages.0.extra.weight']


def test_b2_li_to_mmdet_is_refused():
    with torch.device('meta'):
        model = PVTv2('b2_li')
    with pytest.raises(
        ValueError, match=r'stages\.0\.blocks\.0\.attn\.sr\.weight'
    ):
        from_ours(model.state_dict(), 'mmdet')
