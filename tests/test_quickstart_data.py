"""The toy dataset: deterministic, and in the real COCO / ADE20K / NYU-depth formats that
mmdet's CocoDataset, mmseg's ADE-style BaseSegDataset and NYUDataset read."""

import copy
import hashlib
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from pvtfpn_tools.toy_data import (
    CLASSES,
    SEG_CLASSES,
    make_scene,
    toy_data_ready,
    write_toy_data,
)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL = dict(num_train=6, num_val=3, img_size=64, seed=3)


def tree_digest(root):
    digest = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                digest[osp.relpath(path, root)] = hashlib.sha256(
                    f.read()
                ).hexdigest()
    return digest


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('toy'))
    write_toy_data(root, **SMALL)
    return root


def test_deterministic(toy, tmp_path):
    write_toy_data(str(tmp_path), **SMALL)
    assert tree_digest(toy) == tree_digest(str(tmp_path))
    other = tmp_path / 'other'
    write_toy_data(str(other), **{**SMALL, 'seed': 4})
    assert tree_digest(toy) != tree_digest(str(other))
    assert toy_data_ready(toy, **SMALL)
    assert not toy_data_ready(toy, **{**SMALL, 'num_train': 7})
    assert not toy_data_ready(str(tmp_path / 'missing'))


def test_layout(toy):
    expected = [
        'coco/annotations/instances_train2017.json',
        'coco/annotations/instances_val2017.json',
        'coco/train2017/000000000001.jpg',
        'coco/val2017/000000000003.jpg',
        'ade/ADEChallengeData2016/images/training/ADE_train_00000006.jpg',
        'ade/ADEChallengeData2016/annotations/training/ADE_train_00000006.png',
        'ade/ADEChallengeData2016/images/validation/ADE_val_00000001.jpg',
        'ade/ADEChallengeData2016/annotations/validation/ADE_val_00000001.png',
        'nyu/images/train/scene_00001.jpg',
        'nyu/annotations/train/scene_00001.png',
        'nyu/images/test/scene_00003.jpg',
        'nyu/annotations/test/scene_00003.png',
    ]
    for rel in expected:
        assert osp.isfile(osp.join(toy, rel)), rel
    assert (
        len(os.listdir(osp.join(toy, 'coco', 'train2017')))
        == SMALL['num_train']
    )


def test_coco_annotations(toy):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    ann_file = osp.join(toy, 'coco', 'annotations', 'instances_train2017.json')
    with open(ann_file) as f:
        raw = json.load(f)
    assert set(raw) >= {
        'images',
        'annotations',
        'categories',
        'info',
        'licenses',
    }
    coco = COCO(ann_file)
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
        CLASSES
    )
    assert len(coco.getImgIds()) == SMALL['num_train']
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        assert 1 <= len(anns) <= 3
        scene = make_scene(
            SMALL['seed'], 'train', img_id - 1, SMALL['img_size']
        )
        for ann, obj in zip(anns, scene['objects'], strict=True):
            x, y, w, h = ann['bbox']
            assert (
                0 <= x
                and 0 <= y
                and x + w <= info['width']
                and y + h <= info['height']
            )
            assert (
                ann['iscrowd'] == 0 and ann['category_id'] == obj['label'] + 1
            )
            # the polygon rasterises to the drawn mask, up to a pixel at the border
            rle = mask_utils.frPyObjects(
                ann['segmentation'], info['height'], info['width']
            )
            m = mask_utils.decode(mask_utils.merge(rle)).astype(bool)
            iou = (m & obj['mask']).sum() / (m | obj['mask']).sum()
            assert iou > 0.7, iou
            grown = cv2.dilate(
                obj['mask'].astype(np.uint8), np.ones((3, 3), np.uint8)
            )
            assert not (m & ~grown.astype(bool)).any()
            assert ann['area'] == obj['mask'].sum()


def test_ade_and_nyu_maps(toy):
    ade = osp.join(toy, 'ade', 'ADEChallengeData2016')
    label = cv2.imread(
        osp.join(ade, 'annotations', 'training', 'ADE_train_00000001.png'),
        cv2.IMREAD_UNCHANGED,
    )
    assert label.dtype == np.uint8 and label.shape == (64, 64)
    assert set(np.unique(label)) <= set(range(1, len(SEG_CLASSES) + 1))
    assert (label >= 2).any() and (label == 1).any()
    depth = cv2.imread(
        osp.join(toy, 'nyu', 'annotations', 'train', 'scene_00001.png'),
        cv2.IMREAD_UNCHANGED,
    )
    assert (
        depth.dtype == np.uint16 and 500 < depth.min() and depth.max() <= 7000
    )


def quickstart_cfg(name, data_root):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'quickstart', name))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = data_root
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
    return cfg


def test_mmdet_reads_coco(toy):
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = quickstart_cfg(
        'retinanet_pvtv2-b0_topdownfpn_toy-96.py', osp.join(toy, 'coco') + '/'
    )
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(ds) == SMALL['num_train'] and ds.metainfo['classes'] == CLASSES
    sample = ds[0]
    # resized to the quickstart's scale
    assert sample['inputs'].shape[-2:] == (96, 96)
    assert len(sample['data_samples'].gt_instances) >= 1


def test_mmseg_reads_ade(toy):
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = quickstart_cfg(
        'fpn_pvtv2-b0_topdownfpn_toy-96.py',
        osp.join(toy, 'ade', 'ADEChallengeData2016'),
    )
    ds = DATASETS.build(cfg.val_dataloader.dataset)
    assert (
        len(ds) == SMALL['num_val'] and ds.metainfo['classes'] == SEG_CLASSES
    )
    seg = ds[0]['data_samples'].gt_sem_seg.data
    # reduce_zero_label: 1.. -> 0..
    assert set(seg.unique().tolist()) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_depth_config_trains_and_evaluates_on_toy_nyu(toy):
    """The depth config's data pipeline, loss and DepthMetric on the toy NYU layout."""
    from mmengine.evaluator import Evaluator
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import Runner
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(
        osp.join(
            ROOT,
            'configs',
            'depth',
            'fpn-depth_pvtv2-b2_topdownfpn_4xb8-25k_nyu-480x480.py',
        )
    )
    init_default_scope('mmseg')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(arch='b0', init_cfg=None)
    model_cfg.neck.in_channels = [32, 64, 160, 256]
    model_cfg.data_preprocessor.size = None
    model_cfg.data_preprocessor.size_divisor = 32
    model_cfg.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    model = MODELS.build(model_cfg)
    for key in ('train_dataloader', 'val_dataloader'):
        cfg[key].update(batch_size=2, num_workers=0, persistent_workers=False)
        cfg[key].dataset.data_root = osp.join(toy, 'nyu')
    cfg.train_dataloader.dataset.pipeline[4].crop_size = (64, 64)
    train_loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batch = next(iter(train_loader))
    # metres
    assert batch['data_samples'][0].gt_depth_map.data.max() <= 7.0 + 1e-4
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    losses = model.train_step(batch, optim)
    assert torch.isfinite(losses['loss']).item()

    val_loader = Runner.build_dataloader(cfg.val_dataloader, seed=0)
    evaluator = Evaluator(dict(type='DepthMetric', max_depth_eval=10.0))
    evaluator.dataset_meta = val_loader.dataset.metainfo
    model.eval()
    for batch in val_loader:
        evaluator.process(model.val_step(batch), batch)
    metrics = evaluator.evaluate(len(val_loader.dataset))
    assert {'rmse', 'abs_rel', 'd1'} <= set(metrics)
