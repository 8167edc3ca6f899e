"""Issue 9, items 7 and 8: every bad value is refused up front with an error that names
the argument (or file), the value received and what is allowed. One ``pytest.raises``
per bad argument."""
import pytest
import torch

import pvtfpn_mm  # noqa: F401
from pvtfpn_mm.models.backbones import PVTv2

# ---------------------------------------------------------------------------- PVTv2


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(out_indices=(1, 1, 2, 3)), ValueError, r'out_indices=\(1, 1, 2, 3\) selects a stage '
     'twice'),
    (dict(out_indices=(True, )), TypeError, r'out_indices=\(True,\): True is not a stage index'),
    (dict(out_indices=None), TypeError, 'out_indices must be a stage index or a sequence .* '
     'got None'),
    (dict(out_indices='0123'), TypeError, "out_indices must be .* got '0123'"),
    (dict(out_indices=(0.0, )), TypeError, r'0\.0 is not a stage index'),
    (dict(linear='False'), TypeError, "linear must be True or False, got 'False'"),
    (dict(linear=1), TypeError, 'linear must be True or False, got 1'),
    (dict(drop_path_rate=1.5), ValueError, r'drop_path_rate must be in \[0, 1\), got 1.5'),
    (dict(drop_path_rate=-0.1), ValueError, r'drop_path_rate must be in \[0, 1\), got -0.1'),
    (dict(drop_path_rate='0.1'), TypeError, "drop_path_rate must be a number .* got '0.1'"),
    (dict(attn_drop_rate=1.5), ValueError, r'attn_drop_rate must be in \[0, 1\), got 1.5'),
    (dict(drop_rate=1.0), ValueError, r'drop_rate must be in \[0, 1\), got 1.0'),
    (dict(frozen_stages='1'), TypeError, "frozen_stages must be an int .* got '1'"),
    (dict(frozen_stages=True), TypeError, 'frozen_stages must be an int .* got True'),
    (dict(num_heads=[0, 2, 5, 8]), ValueError, r'num_heads\[0\] must be positive, got 0'),
    (dict(num_heads=[1, 2, 5.0, 8]), TypeError, r'num_heads\[2\] must be an int, got 5.0'),
    (dict(embed_dims=[32, -64, 160, 256]), ValueError, r'embed_dims\[1\] must be positive'),
    (dict(depths=[2, 0, 2, 2]), ValueError, r'depths\[1\] must be positive, got 0'),
    (dict(sr_ratios=[8, 4, 2, 0]), ValueError, r'sr_ratios\[3\] must be positive, got 0'),
    (dict(mlp_ratios=[8, 8, 4, -4]), ValueError, r'mlp_ratios\[3\] must be positive'),
    (dict(embed_dims=64), TypeError, r'embed_dims must be a sequence .* got 64 .*_delete_=True'),
    (dict(in_channels=0), ValueError, 'in_channels must be a positive int, got 0'),
    (dict(in_channels='3'), TypeError, "in_channels must be a positive int, got '3'"),
    (dict(qkv_bias='yes'), TypeError, "qkv_bias must be True or False, got 'yes'"),
    (dict(norm_eval=None), TypeError, 'norm_eval must be True or False, got None'),
    (dict(with_cp=1), TypeError, 'with_cp must be True or False, got 1'),
    (dict(embed_norm_eps=0), ValueError, r'embed_norm_eps must be a number in \(0, 1\), got 0'),
])
def test_pvtv2_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        with torch.device('meta'):
            PVTv2(**kwargs)


@pytest.mark.parametrize('kwargs, match', [
    # mmdet's PyramidVisionTransformerV2 keywords (our dict pasted under its _base_)
    (dict(num_layers=[2, 2, 2, 2]), r"\['num_layers'\] .*_delete_=True.*num_layers -> depths"),
    (dict(pretrained='x.pth', convert_weights=True), r"\['convert_weights', 'pretrained'\].*"
     r"_delete_=True"),
    # mmdet's ResNet keywords (our dict pasted under a retinanet_r50 _base_)
    (dict(depth=50, num_stages=4, norm_cfg=dict(type='BN'), style='pytorch'),
     r"\['depth', 'norm_cfg', 'num_stages', 'style'\].*_delete_=True"),
    (dict(foo=1), r"unexpected keyword arguments \['foo'\]$"),
])
def test_pvtv2_foreign_keywords_say_delete(kwargs, match):
    with pytest.raises(TypeError, match=match):
        with torch.device('meta'):
            PVTv2(**kwargs)


@pytest.fixture(scope='module')
def b0():
    return PVTv2('b0').eval()


@pytest.mark.parametrize('arch, expected', [('b0', 29), ('b5', 29), ('b2_li', 1)])
def test_min_input_size(arch, expected):
    with torch.device('meta'):
        assert PVTv2(arch).min_input_size == expected


def test_min_input_size_is_the_true_minimum(b0):
    b0(torch.rand(1, 3, 29, 29))  # works
    b0.min_input_size = 1  # without the check, 28 px fails deep inside
    try:
        with pytest.raises(RuntimeError):
            b0(torch.rand(1, 3, 28, 28))
    finally:
        b0.min_input_size = 29


@pytest.mark.parametrize('shape, error, match', [
    ((1, 3, 28, 64), ValueError, 'input of 28x64 pixels is too small: .* at least 29 pixels'),
    ((1, 3, 64, 20), ValueError, 'input of 64x20 pixels is too small: .* at least 29 pixels'),
    ((3, 64, 64), ValueError, r'4-D \(B, C, H, W\) batch, got a 3-D tensor of shape '
     r'\(3, 64, 64\) \(one image\? add the batch dimension'),
    ((1, 1, 64, 64), ValueError, r'expects 3 input channels \(in_channels=3\), got 1'),
])
def test_pvtv2_bad_inputs(b0, shape, error, match):
    with pytest.raises(error, match=match):
        b0(torch.rand(*shape))


def test_pvtv2_not_a_tensor(b0):
    with pytest.raises(TypeError, match=r'expects a \(B, C, H, W\) tensor, got list'):
        b0([torch.rand(1, 3, 64, 64)])


def test_pvtv2_empty_batch_gives_empty_maps():
    model = PVTv2('b0', out_indices=(1, 3)).eval()
    empty = model(torch.rand(0, 3, 67, 93))
    full = model(torch.rand(1, 3, 67, 93))
    assert [tuple(e.shape) for e in empty] == [(0, ) + tuple(f.shape[1:]) for f in full]
    assert [tuple(e.shape) for e in empty] == [(0, 64, 9, 12), (0, 256, 3, 3)]
