"""Every PVT-v2 recipe config (configs/{retinanet,mask_rcnn,upernet,sem_fpn,fpn_concat,
depth,quickstart}) loads, builds offline, has the reference parameter count and runs a
small forward.

References:

* RetinaNet b0-b5: mmdet's own ``configs/pvt/retinanet_pvtv2-b*_fpn_1x_coco.py`` (its
  ``PyramidVisionTransformerV2`` and ``FPN``; ours are named ``..._topdownfpn_...``): the
  same parameter count.
* every other config: the same config with our ``PVTv2`` replaced by mmdet's
  ``PyramidVisionTransformerV2`` and our ``TopDownFPN`` by mmdet's ``FPN`` in the
  equivalent setting (for b2_li, which mmdet's backbone lacks: timm's ``pvt_v2_b2_li``
  backbone plus the rest of the b2 model): the same parameter count.
* the paper's parameter counts (PVT v2: RetinaNet / Mask R-CNN 1x on COCO, Semantic FPN
  on ADE20K), to within 0.1 M (they are given to 0.1 M; b0 and b1 come out 0.05 M
  below the printed values, b2-b5 and b2-li round to them).
"""

import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The folders of the PVT-v2 recipes (other folders are tested with their own modules).
RECIPE_DIRS = (
    'retinanet',
    'mask_rcnn',
    'upernet',
    'sem_fpn',
    'fpn_concat',
    'depth',
    'quickstart',
)
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for d in RECIPE_DIRS
    for p in glob.glob(osp.join(ROOT, 'configs', d, '*.py'))
)

#: Millions of parameters in the PVT v2 paper (Table 3), COCO models with 80 classes.
PAPER_PARAMS_M = {
    'retinanet': dict(
        b0=13.0, b1=23.8, b2=35.1, b2_li=32.3, b3=55.0, b4=72.3, b5=91.7
    ),
    'mask-rcnn': dict(
        b0=23.5, b1=33.7, b2=45.0, b2_li=42.2, b3=64.9, b4=82.2, b5=101.6
    ),
    # Semantic FPN on ADE20K (150 classes), PVT v2 paper's segmentation table
    'fpn': dict(b0=7.6, b1=17.8, b2=29.1, b3=49.0, b4=66.3, b5=85.7),
}
EXTRA_CONVS = {
    'pool': False,
    'input': 'on_input',
    'lateral': 'on_lateral',
    'output': 'on_output',
}


def load(path: str) -> Config:
    cfg = Config.fromfile(
        osp.join(ROOT, path) if not osp.isabs(path) else path
    )
    cfg.model.backbone.init_cfg = None  # never download in tests
    return cfg


def registry(cfg: Config):
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


def build(cfg: Config):
    return registry(cfg).build(copy.deepcopy(cfg.model))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def mmdet_backbone(backbone: ConfigDict) -> dict:
    """mmdet's PyramidVisionTransformerV2 equivalent to our PVTv2 config."""
    from pvtfpn_mm.models.backbones.pvt_v2 import arch_settings

    s = arch_settings(backbone.get('arch', 'b0'))
    assert not s['linear'], 'mmdet has no linear-SRA PVT-v2'
    return dict(
        type='mmdet.PyramidVisionTransformerV2',
        embed_dims=s['embed_dims'][0],
        num_layers=list(s['depths']),
        num_heads=list(s['num_heads']),
        sr_ratios=list(s['sr_ratios']),
        mlp_ratios=list(s['mlp_ratios']),
        out_indices=tuple(backbone.get('out_indices', (0, 1, 2, 3))),
        init_cfg=None,
    )


def mmdet_neck(neck: ConfigDict) -> dict:
    """mmdet's FPN equivalent to our TopDownFPN config."""
    assert neck.type == 'TopDownFPN'
    start = neck.get('start_level', 0)
    return dict(
        type='mmdet.FPN',
        in_channels=list(neck.in_channels),
        out_channels=neck.get('out_channels', 256),
        start_level=start,
        num_outs=neck.get('num_outs') or len(neck.in_channels) - start,
        add_extra_convs=EXTRA_CONVS[neck.get('extra_source', 'pool')],
        relu_before_extra_convs=neck.get('relu_before_extra_convs', False),
        conv_cfg=neck.get('conv_cfg'),
        norm_cfg=neck.get('norm_cfg'),
        act_cfg=neck.get('act_cfg'),
        upsample_cfg=dict(mode=neck.get('upsample_mode', 'nearest')),
    )


def reference_count(cfg: Config) -> int:
    """Parameters of the same model made of mmdet's (or timm's) modules."""
    ref = copy.deepcopy(cfg)
    arch = cfg.model.backbone.get('arch', 'b0')
    if arch == 'b2_li':
        ref.model.backbone.arch = 'b2'
    ref.model.backbone = mmdet_backbone(ref.model.backbone)
    if 'neck' in ref.model:
        ref.model.neck = mmdet_neck(ref.model.neck)
    model = build(ref)
    total = count(model)
    if arch == 'b2_li':
        import timm

        li = timm.create_model('pvt_v2_b2_li', pretrained=False, num_classes=0)
        total += count(li) - count(model.backbone)
    return total


def mmdet_pvt_config(path: str) -> str:
    import mmdet

    return osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', 'pvt', path
    )


def test_all_recipes_present():
    names = {osp.basename(p) for p in CONFIGS}
    for a in ('b0', 'b1', 'b2', 'b2-li', 'b3', 'b4', 'b5'):
        assert f'retinanet_pvtv2-{a}_topdownfpn_1x_coco.py' in names
        assert f'mask-rcnn_pvtv2-{a}_topdownfpn_1x_coco.py' in names
    for a in ('b0', 'b2'):
        assert f'mask-rcnn_pvtv2-{a}_topdownfpn_ms-3x_coco.py' in names
    for a in ('b0', 'b1', 'b2', 'b3', 'b4', 'b5'):
        assert (
            f'upernet_pvtv2-{a}_pvtfpnmm_8xb2-160k_ade20k-512x512.py' in names
        )
        assert f'fpn_pvtv2-{a}_topdownfpn_8xb4-40k_ade20k-512x512.py' in names
    assert any(p.startswith('configs/fpn_concat/') for p in CONFIGS)
    assert any(p.startswith('configs/depth/') for p in CONFIGS)


def dummy_batch(cfg: Config, size: int = 64) -> dict:
    """One random image as the data preprocessor expects it, with its metainfo."""
    img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    meta = dict(
        img_shape=(size, size),
        ori_shape=(size, size),
        pad_shape=(size, size),
        scale_factor=(1.0, 1.0),
        img_path='dummy.jpg',
    )
    if cfg.default_scope == 'mmdet':
        from mmdet.structures import DetDataSample

        sample = DetDataSample(metainfo=meta)
    else:
        from mmseg.structures import SegDataSample

        sample = SegDataSample(metainfo=meta)
    return dict(inputs=[img], data_samples=[sample])


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_counts_and_runs(path):
    cfg = load(path)
    assert 'pvtfpn_mm' in cfg.custom_imports['imports']
    assert cfg.default_scope in ('mmdet', 'mmseg')
    assert cfg.model.backbone.type == 'PVTv2'
    model = build(cfg)
    n = count(model)

    assert n == reference_count(cfg), (
        'parameter count differs from the reference model'
    )
    name = osp.basename(path)
    # the model index states the count of the built model
    from pvtfpn_mm.model_index import get_model_info

    assert get_model_info(name)['Metadata']['Parameters'] == n, name
    if 'quickstart' not in path:
        task = name.split('_')[0]
        arch = cfg.model.backbone.arch
        if task in PAPER_PARAMS_M and '3x' not in name:
            assert abs(n / 1e6 - PAPER_PARAMS_M[task][arch]) < 0.1, (
                n,
                'paper',
            )
        if task == 'retinanet' and arch != 'b2_li':
            mmdet_name = name.replace('-li', '_li').replace(
                '_topdownfpn_', '_fpn_'
            )
            ref = load(mmdet_pvt_config(mmdet_name))
            assert n == count(build(ref)), "differs from mmdet's own config"

    # Every data pipeline builds (catches misspelled transforms and arguments).
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import TRANSFORMS
    else:
        from mmseg.registry import TRANSFORMS
    from mmengine.dataset import Compose

    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[key].dataset
        while 'pipeline' not in dataset:
            dataset = dataset.dataset
        Compose([TRANSFORMS.build(t) for t in dataset.pipeline])

    # A small forward through the whole model (data preprocessor, predict).
    if cfg.default_scope == 'mmseg':
        model.data_preprocessor.size = (
            None  # no padding of the 64x64 image to 512
        )
        model.data_preprocessor.size_divisor = 32
    model.eval()
    with torch.no_grad():
        out = model.test_step(dummy_batch(cfg))
    assert len(out) == 1
    if cfg.default_scope == 'mmdet':
        assert 'bboxes' in out[0].pred_instances
    elif cfg.model.type == 'DepthEstimator':
        depth = out[0].pred_depth_map.data
        assert depth.shape[-2:] == (64, 64)
        assert (
            0 <= depth.min() and depth.max() <= cfg.model.decode_head.max_depth
        )
    else:
        assert out[0].pred_sem_seg.data.shape[-2:] == (64, 64)
