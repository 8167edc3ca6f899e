"""Issue 9, items 7 and 8: every bad value is refused up front with an error that names
the argument (or file), the value received and what is allowed. One ``pytest.raises``
per bad argument."""

import os.path as osp
import re

import pytest
import torch

import pvtfpn_mm  # noqa: F401
from pvtfpn_mm.models.backbones import PVTv2

from _helpers import BAD_CHECKPOINTS, write_bad_checkpoint

# ---------------------------------------------------------------------------- PVTv2


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (
            dict(out_indices=(True,)),
            TypeError,
            r'out_indices\[0\] must be an int index, got True \(bool\)',
        ),
        (
            dict(out_indices=None),
            TypeError,
            'out_indices must be a list or tuple .* got None',
        ),
        (
            dict(out_indices='0123'),
            TypeError,
            "out_indices must be .* got '0123'",
        ),
        (
            dict(out_indices=(0.0,)),
            TypeError,
            r'out_indices\[0\] must be an int index, got 0\.0',
        ),
        (
            dict(linear='False'),
            TypeError,
            r"linear must be True or False \(or 1 / 0\), got 'False'",
        ),
        (
            dict(linear=2),
            TypeError,
            r'linear must be True or False \(or 1 / 0\), got 2',
        ),
        (
            dict(drop_path_rate=1.5),
            ValueError,
            r'drop_path_rate must be in \[0, 1\], got 1.5',
        ),
        (
            dict(drop_path_rate=-0.1),
            ValueError,
            r'drop_path_rate must be in \[0, 1\], got -0.1',
        ),
        (
            dict(drop_path_rate='0.1'),
            TypeError,
            "drop_path_rate must be a number .* got '0.1'",
        ),
        (
            dict(attn_drop_rate=1.5),
            ValueError,
            r'attn_drop_rate must be in \[0, 1\], got 1.5',
        ),
        (
            dict(drop_rate=1.01),
            ValueError,
            r'drop_rate must be in \[0, 1\], got 1.01',
        ),
        (
            dict(frozen_stages='1'),
            TypeError,
            "frozen_stages must be an int, got '1'",
        ),
        (
            dict(frozen_stages=True),
            TypeError,
            'frozen_stages must be an int, got True',
        ),
        (
            dict(num_heads=[0, 2, 5, 8]),
            ValueError,
            r'num_heads\[0\] must be positive, got 0',
        ),
        (
            dict(num_heads=[1, 2, 5.0, 8]),
            TypeError,
            r'num_heads\[2\] must be an int, got 5.0',
        ),
        (
            dict(embed_dims=[32, -64, 160, 256]),
            ValueError,
            r'embed_dims\[1\] must be positive',
        ),
        (
            dict(depths=[2, 0, 2, 2]),
            ValueError,
            r'depths\[1\] must be positive, got 0',
        ),
        (
            dict(sr_ratios=[8, 4, 2, 0]),
            ValueError,
            r'sr_ratios\[3\] must be positive, got 0',
        ),
        (
            dict(mlp_ratios=[8, 8, 4, -4]),
            ValueError,
            r'mlp_ratios\[3\] must be positive',
        ),
        (
            dict(embed_dims=64),
            TypeError,
            r'embed_dims must be a sequence .* got 64 .*_delete_=True',
        ),
        (
            dict(in_channels=0),
            ValueError,
            'in_channels must be a positive int, got 0',
        ),
        (
            dict(in_channels='3'),
            TypeError,
            "in_channels must be a positive int, got '3'",
        ),
        (
            dict(qkv_bias='yes'),
            TypeError,
            r"qkv_bias must be True or False \(or 1 / 0\), got 'yes'",
        ),
        (
            dict(norm_eval=None),
            TypeError,
            r'norm_eval must be True or False \(or 1 / 0\), got None',
        ),
        (
            dict(with_cp='1'),
            TypeError,
            r"with_cp must be True or False \(or 1 / 0\), got '1'",
        ),
        (
            dict(embed_norm_eps=0),
            ValueError,
            r'embed_norm_eps must be a number in \(0, 1\), got 0',
        ),
    ],
)
def test_pvtv2_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        with torch.device('meta'):
            PVTv2(**kwargs)


@pytest.mark.parametrize(
    'kwargs, match',
    [
        # mmdet's PyramidVisionTransformerV2 keywords (our dict pasted under its _base_)
        (
            dict(num_layers=[2, 2, 2, 2]),
            r"\['num_layers'\] .*_delete_=True.*num_layers -> depths",
        ),
        (
            dict(pretrained='x.pth', convert_weights=True),
            r"\['convert_weights', 'pretrained'\].*"
            r"_delete_=True",
        ),
        # mmdet's ResNet keywords (our dict pasted under a retinanet_r50 _base_)
        (
            dict(
                depth=50,
                num_stages=4,
                norm_cfg=dict(type='BN'),
                style='pytorch',
            ),
            r"\['depth', 'norm_cfg', 'num_stages', 'style'\].*_delete_=True",
        ),
        (dict(foo=1), r"unexpected keyword arguments \['foo'\]$"),
    ],
)
def test_pvtv2_foreign_keywords_say_delete(kwargs, match):
    with pytest.raises(TypeError, match=match):
        with torch.device('meta'):
            PVTv2(**kwargs)


@pytest.fixture(scope='module')
def b0():
    return PVTv2('b0').eval()


@pytest.mark.parametrize(
    'arch, expected', [('b0', 29), ('b5', 29), ('b2_li', 1)]
)
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


@pytest.mark.parametrize(
    'shape, error, match',
    [
        (
            (1, 3, 28, 64),
            ValueError,
            'input of 28x64 pixels is too small: .* at least 29 pixels',
        ),
        (
            (1, 3, 64, 20),
            ValueError,
            'input of 64x20 pixels is too small: .* at least 29 pixels',
        ),
        (
            (3, 64, 64),
            ValueError,
            r'4-D \(B, C, H, W\) batch, got a 3-D tensor of shape '
            r'\(3, 64, 64\) \(one image\? add the batch dimension',
        ),
        (
            (1, 1, 64, 64),
            ValueError,
            r'expects 3 input channels \(in_channels=3\), got 1',
        ),
    ],
)
def test_pvtv2_bad_inputs(b0, shape, error, match):
    with pytest.raises(error, match=match):
        b0(torch.rand(*shape))


def test_pvtv2_not_a_tensor(b0):
    with pytest.raises(
        TypeError, match=r'expects a \(B, C, H, W\) tensor, got list'
    ):
        b0([torch.rand(1, 3, 64, 64)])


def test_pvtv2_empty_batch_gives_empty_maps():
    model = PVTv2('b0', out_indices=(1, 3)).eval()
    empty = model(torch.rand(0, 3, 67, 93))
    full = model(torch.rand(1, 3, 67, 93))
    assert [tuple(e.shape) for e in empty] == [
        (0,) + tuple(f.shape[1:]) for f in full
    ]
    assert [tuple(e.shape) for e in empty] == [(0, 64, 9, 12), (0, 256, 3, 3)]


# ----------------------------------------------------------------------- TopDownFPN


def test_fpn_keywords_of_mmdet_say_delete():
    from pvtfpn_mm.models.necks import TopDownFPN

    with pytest.raises(
        TypeError,
        match=r"\['add_extra_convs'\] are keywords of mmdet's / "
        r"mmseg's FPN.*_delete_=True.*TopDownFPN names: add_extra_convs -> "
        'extra_source',
    ):
        TopDownFPN([32, 64], 16, add_extra_convs='on_input')


@pytest.mark.parametrize(
    'shapes, match',
    [
        ([(1, 32, 8, 8), (2, 64, 4, 4)], 'different batch sizes'),
        (
            [(1, 32, 4, 4), (1, 64, 8, 8)],
            r'input 1 \(8x8\) is larger than input 0 \(4x4\): inputs '
            'must come finest first',
        ),
    ],
)
def test_fpn_bad_inputs(shapes, match):
    from pvtfpn_mm.models.necks import TopDownFPN

    neck = TopDownFPN([32, 64], 16)
    with pytest.raises(ValueError, match=match):
        neck([torch.rand(*s) for s in shapes])


def test_empty_batch_through_backbone_and_neck():
    from pvtfpn_mm.models.necks import TopDownFPN

    backbone = PVTv2('b0').eval()
    neck = TopDownFPN(
        [32, 64, 160, 256], 16, start_level=1, num_outs=5, extra_source='input'
    ).eval()
    outs = neck(backbone(torch.rand(0, 3, 64, 64)))
    assert [tuple(o.shape) for o in outs] == [
        (0, 16, 8, 8),
        (0, 16, 4, 4),
        (0, 16, 2, 2),
        (0, 16, 1, 1),
        (0, 16, 1, 1),
    ]


# ---------------------------------------------------------------------------- heads


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (
            dict(in_channels=32),
            TypeError,
            r'in_channels must be a list or tuple of positive ints, got 32 \(int\)',
        ),
        (
            dict(in_index=0),
            TypeError,
            r'in_index must be a list or tuple .* got 0 \(int\)',
        ),
        (
            dict(in_index=[0, 1, 2, True]),
            TypeError,
            r'in_index\[3\] must be an int index, got True \(bool\)',
        ),
        (
            dict(in_index=[0, 1, 2, 1.0]),
            TypeError,
            r'in_index\[3\] must be an int index, got 1\.0 \(float\)',
        ),
        (
            dict(in_channels=[32, 32, 0, 32]),
            ValueError,
            r'in_channels\[2\] must be a positive int, '
            'got 0',
        ),
        (
            dict(in_index=[0, 1, 2]),
            ValueError,
            r'in_channels=\[32, 32, 32, 32\] and in_index=\[0, 1, '
            r'2\] must have one entry per selected level',
        ),
        (
            dict(channels=0),
            ValueError,
            'channels must be a positive int, got 0',
        ),
        (
            dict(channels='16'),
            TypeError,
            "channels must be a positive int, got '16'",
        ),
    ],
)
def test_fpn_concat_head_bad_arguments(kwargs, error, match):
    from pvtfpn_mm.models.heads import FPNConcatHead

    args = dict(
        in_channels=[32] * 4, channels=16, in_index=[0, 1, 2, 3], num_classes=3
    )
    with pytest.raises(error, match=match):
        FPNConcatHead(**{**args, **kwargs})


@pytest.mark.parametrize(
    'max_depth, error, match',
    [
        (
            float('inf'),
            ValueError,
            'max_depth must be a finite positive number .* got inf',
        ),
        (
            float('nan'),
            ValueError,
            'max_depth must be a finite positive number .* got nan',
        ),
        (0, ValueError, 'max_depth must be a finite positive number .* got 0'),
        (
            -10.0,
            ValueError,
            'max_depth must be a finite positive number .* got -10.0',
        ),
        ('10', TypeError, "max_depth must be a number, got '10'"),
    ],
)
def test_fpn_depth_head_bad_max_depth(max_depth, error, match):
    from pvtfpn_mm.models.heads import FPNDepthHead

    with pytest.raises(error, match=match):
        FPNDepthHead(max_depth=max_depth, in_channels=[16] * 4, channels=8)


# ----------------------------------------------------------------- TimmFeatures norms


@pytest.mark.parametrize(
    'name, cls_name',
    [
        ('BN', 'BatchNorm2d'),
        ('BN2d', 'BatchNorm2d'),
        ('SyncBN', 'SyncBatchNorm'),
        ('IN', 'InstanceNorm2d'),
        ('IN2d', 'InstanceNorm2d'),
    ],
)
def test_timm_features_mm_norm_names_on_resnet(name, cls_name):
    """The classes mmseg's TIMMBackbone gives these names (mmengine's MODELS.get)."""
    from mmengine.registry import MODELS as MMENGINE_MODELS

    from pvtfpn_mm.models.backbones import TimmFeatures

    model = TimmFeatures(
        'resnet18', out_indices=(1, 2), norm_layer=name
    ).train()
    norms = {type(m) for m in model.modules() if 'Norm' in type(m).__name__}
    assert norms == {MMENGINE_MODELS.get(name)}
    assert {c.__name__ for c in norms} == {cls_name}
    # SyncBN without a process group acts as BN
    outs = model(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 64, 16, 16), (2, 128, 8, 8)]


def test_timm_features_group_norm_takes_its_groups():
    from pvtfpn_mm.models.backbones import TimmFeatures

    model = TimmFeatures(
        'resnet18', out_indices=(1,), norm_layer=dict(type='GN', num_groups=8)
    )
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 8 for m in norms)
    assert tuple(model(torch.rand(1, 3, 64, 64))[0].shape) == (1, 64, 16, 16)
    with pytest.raises(
        ValueError,
        match=r"norm_layer='GN': GN needs its number of groups, "
        r"e.g. norm_layer=dict\(type='GN', num_groups=32\)",
    ):
        TimmFeatures('resnet18', norm_layer='GN')
    with pytest.raises(
        ValueError, match=r"norm_layer=\{'type': 'XN'\}: type must be one of"
    ):
        TimmFeatures('resnet18', norm_layer=dict(type='XN'))


def test_timm_features_layer_norms():
    from mmpretrain.models.utils.norm import LayerNorm2d

    from pvtfpn_mm.models.backbones import TimmFeatures

    # timm's pvt_v2 default is LayerNorm(eps=1e-6); 'LN' is nn.LayerNorm (eps 1e-5)
    model = TimmFeatures('pvt_v2_b0', norm_layer='LN')
    assert model.model.stages_0.blocks[0].norm1.eps == 1e-5
    convnext = TimmFeatures('convnext_atto', norm_layer='LN2d', conv_mlp=True)
    assert any(type(m) is LayerNorm2d for m in convnext.modules())
    assert tuple(convnext(torch.rand(1, 3, 64, 64))[0].shape) == (
        1,
        40,
        16,
        16,
    )


# ------------------------------------------------------------------ toy data, tools


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (
            dict(img_size=0),
            ValueError,
            r'img_size \(--size\) must be at least 32, got 0',
        ),
        (
            dict(img_size=20),
            ValueError,
            r'img_size \(--size\) must be at least 32, got 20',
        ),
        (
            dict(img_size=5000),
            ValueError,
            r'img_size \(--size\) must be at most 2048, got 5000',
        ),
        (
            dict(img_size=64.0),
            TypeError,
            r'img_size \(--size\) must be an int, got 64\.0',
        ),
        (
            dict(num_train=0),
            ValueError,
            r'num_train \(--num-train\) must be at least 1, got 0',
        ),
        (
            dict(num_val=0),
            ValueError,
            r'num_val \(--num-val\) must be at least 1, got 0',
        ),
        (
            dict(num_val=-3),
            ValueError,
            r'num_val \(--num-val\) must be at least 1, got -3',
        ),
        (
            dict(seed=-1),
            ValueError,
            r'seed \(--seed\) must be at least 0, got -1',
        ),
        (dict(formats=[]), ValueError, 'formats must be a non-empty list'),
        (dict(formats=['voc']), ValueError, r"unknown formats \['voc'\]"),
    ],
)
def test_toy_data_bad_arguments(tmp_path, kwargs, error, match):
    from pvtfpn_tools.toy_data import write_toy_data

    args = dict(num_train=1, num_val=1, img_size=32, seed=0)
    with pytest.raises(error, match=match):
        write_toy_data(str(tmp_path / 'toy'), **{**args, **kwargs})
    assert not (tmp_path / 'toy').exists()  # refused before writing anything


def test_toy_data_rewrite_needs_force_and_leaves_no_stale_image(tmp_path):
    from pvtfpn_tools.toy_data import toy_data_ready, write_toy_data

    root = str(tmp_path / 'toy')
    write_toy_data(root, num_train=5, num_val=3, img_size=32)
    with pytest.raises(
        FileExistsError, match=r'already holds coco/, ade/, nyu/; pass --force'
    ):
        write_toy_data(root, num_train=2, num_val=1, img_size=32)
    write_toy_data(root, num_train=2, num_val=1, img_size=32, force=True)
    ade = tmp_path / 'toy' / 'ade' / 'ADEChallengeData2016'
    assert len(list((ade / 'images' / 'training').iterdir())) == 2
    assert len(list((ade / 'annotations' / 'validation').iterdir())) == 1
    assert len(list((tmp_path / 'toy' / 'coco' / 'train2017').iterdir())) == 2
    assert (
        len(list((tmp_path / 'toy' / 'nyu' / 'images' / 'test').iterdir()))
        == 1
    )
    # no staging folder left
    assert sorted(p.name for p in (tmp_path / 'toy').iterdir()) == [
        'ade',
        'coco',
        'nyu',
        'toy_data.json',
    ]
    assert toy_data_ready(root, num_train=2, num_val=1, img_size=32)


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (
            dict(det_iters=0),
            ValueError,
            '--det-iters must be at least 1, got 0',
        ),
        (
            dict(seg_iters=-5),
            ValueError,
            '--seg-iters must be at least 1, got -5',
        ),
        (dict(threads=0), ValueError, '--threads must be at least 1, got 0'),
        (
            dict(det_iters=2.5),
            TypeError,
            r'det_iters must be an int, got 2\.5',
        ),
        (
            dict(tasks=('cls',)),
            ValueError,
            "tasks must be a non-empty sequence of 'det' / 'seg'",
        ),
    ],
)
def test_quickstart_bad_arguments(tmp_path, kwargs, error, match):
    from pvtfpn_tools.quickstart import main

    with pytest.raises(error, match=match):
        main(
            out_dir=str(tmp_path / 'qs'),
            data_root=str(tmp_path / 'toy'),
            **kwargs,
        )
    assert not (
        tmp_path / 'toy'
    ).exists()  # refused before anything is written


# --------------------------------------------------------------------- datasets


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    from pvtfpn_tools.toy_data import write_toy_data

    root = tmp_path_factory.mktemp('toydata')
    write_toy_data(
        str(root), num_train=4, num_val=2, img_size=32, formats=['coco', 'ade']
    )
    return root


def coco_loader(toy, classes, ann='instances_val2017.json', **dataset):
    return dict(
        batch_size=1,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='CocoDataset',
            data_root=str(toy / 'coco') + '/',
            ann_file=f'annotations/{ann}',
            data_prefix=dict(img='val2017/'),
            metainfo=dict(classes=classes),
            pipeline=[],
            **dataset,
        ),
    )


def test_class_names_not_in_the_annotation_file(toy):
    from mmengine.registry import init_default_scope

    from pvtfpn_mm.engine import DatasetError, SafeRunner

    init_default_scope('mmdet')
    with pytest.raises(
        DatasetError,
        match=r"the class names \['disc', 'box'\] of the config "
        r".* are not categories of the annotation file, whose categories are "
        r"\('circle', 'square', 'triangle'\)",
    ):
        SafeRunner.build_dataloader(
            coco_loader(toy, ('disc', 'box')),
        )
    with pytest.raises(
        DatasetError, match=r"the class names \['tri'\] of the config"
    ):
        SafeRunner.build_dataloader(
            coco_loader(toy, ('circle', 'square', 'tri'))
        )
    loader = SafeRunner.build_dataloader(
        coco_loader(toy, ('circle', 'square', 'triangle'))
    )
    assert len(loader.dataset) == 2


def test_empty_val_sets(toy, tmp_path):
    import json

    from mmengine.registry import init_default_scope

    from pvtfpn_mm.engine import DatasetError, SafeRunner

    init_default_scope('mmdet')
    empty = json.loads(
        (toy / 'coco' / 'annotations' / 'instances_val2017.json').read_text()
    )
    empty['images'], empty['annotations'] = [], []
    (toy / 'coco' / 'annotations' / 'empty.json').write_text(json.dumps(empty))
    with pytest.raises(
        DatasetError,
        match=r"CocoDataset\(.*ann_file='annotations/empty\.json'"
        r".* is empty: the annotation file .*empty\.json' lists no image",
    ):
        SafeRunner.build_dataloader(
            coco_loader(toy, ('circle',), ann='empty.json')
        )
    init_default_scope('mmseg')
    (tmp_path / 'images').mkdir()
    (tmp_path / 'labels').mkdir()
    seg = dict(
        batch_size=1,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='BaseSegDataset',
            data_root=str(tmp_path),
            data_prefix=dict(img_path='images', seg_map_path='labels'),
            metainfo=dict(classes=('a', 'b')),
            pipeline=[],
        ),
    )
    with pytest.raises(
        DatasetError,
        match=r"BaseSegDataset\(.*\) is empty: the folder "
        r".*images' holds no file",
    ):
        SafeRunner.build_dataloader(seg)


# ------------------------------------------------------------------ checkpoint files


@pytest.mark.parametrize(
    'kind, match',
    [
        ('empty', r"empty\.pth' is empty \(0 bytes\)"),
        (
            'text',
            r"text\.pth' \(\d+ bytes\) is a text file, not a PyTorch checkpoint; it starts "
            "with 'model weights",
        ),
        (
            'truncated',
            r"truncated\.pth' \(1500 bytes\) is a damaged or truncated PyTorch zip file",
        ),
        # cut inside a tensor's data: the zip reader's seek failed with a bare OSError
        (
            'truncated-5k',
            r"truncated-5k\.pth' \(5120 bytes\) is a damaged or truncated PyTorch "
            'zip file',
        ),
        (
            'truncated-50k',
            r"truncated-50k\.pth' \(51200 bytes\) is a damaged or truncated "
            'PyTorch zip file',
        ),
        ('random', r"random\.pth' \(4096 bytes\) is not a PyTorch checkpoint"),
        (
            'module',
            r"module\.pth' \(\d+ bytes\) holds Python objects \(torch\.nn\.modules\.linear"
            r"\.Linear\) that safe loading does not allow",
        ),
        (
            'truncated-safetensors',
            r"truncated-safetensors\.safetensors' \(1500 bytes\) is a damaged or "
            'truncated safetensors file',
        ),
    ],
)
def test_bad_checkpoint_files_are_named(tmp_path, kind, match):
    from pvtfpn_mm.weights import CheckpointReadError, read_checkpoint

    with pytest.raises(CheckpointReadError, match=match) as info:
        read_checkpoint(write_bad_checkpoint(tmp_path, kind))
    assert 'weights_only=False' not in str(info.value)


@pytest.mark.parametrize('kind', BAD_CHECKPOINTS)
def test_bad_checkpoint_files_everywhere_we_load(tmp_path, kind):
    """PVTv2 / TopDownFPN / TimmFeatures Pretrained all say what is wrong with the file
    (SafeRunner's load_from / --resume / tools/test.py: tests/test_reliability.py)."""
    from pvtfpn_mm.models.backbones import TimmFeatures
    from pvtfpn_mm.models.necks import TopDownFPN
    from pvtfpn_mm.weights import CheckpointReadError

    path = write_bad_checkpoint(tmp_path, kind)
    name = re.escape(osp.basename(path))
    with pytest.raises(CheckpointReadError, match=name):
        PVTv2(
            'b0', init_cfg=dict(type='Pretrained', checkpoint=path)
        ).init_weights()
    with pytest.raises(CheckpointReadError, match=name):
        TopDownFPN(
            [8], 4, init_cfg=dict(type='Pretrained', checkpoint=path)
        ).init_weights()
    with pytest.raises(CheckpointReadError, match=name):
        TimmFeatures('resnet18', checkpoint=path)


def test_non_tensors_in_a_state_dict_are_named(tmp_path):
    from pvtfpn_mm.models.necks import TopDownFPN
    from pvtfpn_mm.weights import CheckpointFormatError

    path = tmp_path / 'strings.pth'
    torch.save(
        {'state_dict': {'lateral_convs.0.conv.weight': 'a string'}}, path
    )
    with pytest.raises(
        CheckpointFormatError,
        match=r"'lateral_convs\.0\.conv\.weight' holds a "
        "str",
    ):
        TopDownFPN(
            [8], 4, init_cfg=dict(type='Pretrained', checkpoint=str(path))
        ).init_weights()


def test_home_is_expanded(tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import _load_checkpoint

    from pvtfpn_mm.weights import read_checkpoint

    monkeypatch.setenv('HOME', str(tmp_path))
    torch.save({'w': torch.ones(2)}, tmp_path / 'x.pth')
    assert torch.equal(read_checkpoint('~/x.pth')['w'], torch.ones(2))
    assert torch.equal(
        _load_checkpoint('~/x.pth', map_location='cpu')['w'], torch.ones(2)
    )
    with pytest.raises(
        FileNotFoundError,
        match=rf"'{re.escape(str(tmp_path))}/y\.pth' does "
        "not exist",
    ):
        read_checkpoint('~/y.pth')
