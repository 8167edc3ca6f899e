"""ONNX export end to end (tools/export_onnx.py, pvtfpn_mm.deploy) against PyTorch.

The graph pieces are checked eagerly against mmdet's / mmcv's own functions (cheap);
the exported files are run with onnxruntime on several images of sizes other than the
traced one and compared with ``model.test_step`` (= mmdet's / mmseg's ``predict``):
the same detections (count, labels, order), boxes within 1e-3 relative to the image
size, scores within 1e-4; segmentation label maps equal. Models have random weights of
a sensible scale (nothing is downloaded), so that there are many detections.
"""

import glob
import os.path as osp
import sys

import numpy as np
import pytest
import torch

import pvtfpn_mm  # noqa: F401

from _helpers import random_params_

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

from pvtfpn_mm.deploy import OnnxModel, export_onnx
from pvtfpn_mm.deploy.export import load_model
from pvtfpn_mm.deploy.graph import Preprocess, batched_nms, delta2bbox

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SIZES = [(96, 128), (61, 77), (160, 96)]  # the export traces 320 x 384


def config(pattern):
    found = sorted(glob.glob(osp.join(REPO, 'configs', pattern)))
    assert len(found) == 1, (pattern, found)
    return found[0]


def images(sizes=SIZES, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8)
        for h, w in sizes
    ]


def random_checkpoint(cfg_path, path, seed=1):
    """The config's model with random weights (and BN statistics), saved to ``path``."""
    _, model = load_model(cfg_path, None)
    random_params_(model, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_var.copy_(
                torch.rand(m.running_var.shape, generator=gen) + 0.5
            )
            m.running_mean.copy_(
                torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1
            )
    # confident enough for detections above score_thr
    if hasattr(model, 'roi_head'):
        model.roi_head.bbox_head.fc_cls.weight.data *= 6
    torch.save({'state_dict': model.state_dict()}, path)
    return str(path)


def torch_predict(model, img, kind):
    h, w = img.shape[1:]
    if kind == 'segmentor':
        from mmseg.structures import SegDataSample

        sample = SegDataSample(
            metainfo=dict(img_shape=(h, w), ori_shape=(h, w))
        )
    else:
        from mmdet.structures import DetDataSample

        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)
            )
        )
    with torch.no_grad():
        return model.test_step(dict(inputs=[img], data_samples=[sample]))[0]


def onnx_run(onnx_model, img, kind):
    feed = {'image': img[None].float().numpy()}
    if kind != 'segmentor':
        feed['scale_factor'] = np.ones(2, np.float32)
    return dict(
        zip(
            onnx_model.outputs,
            onnx_model.session.run(None, feed),
            strict=True,
        )
    )


def assert_same_detections(outs, pred, img):
    ref = pred.pred_instances
    assert len(outs['boxes']) == len(ref) > 0
    assert np.array_equal(outs['labels'], ref.labels.numpy())
    size = max(img.shape[1:])
    box_diff = np.abs(outs['boxes'] - ref.bboxes.numpy()).max()
    assert box_diff <= 1e-3 * size, box_diff
    assert np.abs(outs['scores'] - ref.scores.numpy()).max() <= 1e-4
    return box_diff


# ----------------------------------------------------------- graph pieces, eagerly


def test_delta2bbox_is_mmdets():
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import (
        delta2bbox as mmdet_delta2bbox,
    )

    gen = torch.Generator().manual_seed(0)
    rois = torch.rand(200, 2, generator=gen) * 80
    rois = torch.cat(
        [rois, rois + torch.rand(200, 2, generator=gen) * 40 + 1], 1
    )
    deltas = torch.randn(200, 4, generator=gen) * 2  # some beyond the wh clip
    kwargs = dict(means=(0.0, 0.0, 0.0, 0.0), stds=(0.1, 0.1, 0.2, 0.2))
    ours = delta2bbox(rois, deltas, max_hw=(90, 100), **kwargs)
    theirs = mmdet_delta2bbox(rois, deltas, max_shape=(90, 100), **kwargs)
    assert torch.equal(ours, theirs)


def test_batched_nms_is_mmcvs():
    from mmcv.ops import batched_nms as mmcv_batched_nms

    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + torch.rand(300, 2, generator=gen) * 30 + 1], 1)
    scores = torch.rand(300, generator=gen)
    labels = torch.randint(0, 5, (300,), generator=gen)
    _, theirs = mmcv_batched_nms(
        boxes, scores, labels, dict(type='nms', iou_threshold=0.5)
    )
    assert torch.equal(batched_nms(boxes, scores, labels, 0.5), theirs)
    assert batched_nms(boxes[:0], scores[:0], labels[:0], 0.5).numel() == 0


def test_preprocess_is_the_data_preprocessors():
    _, model = load_model(
        config('retinanet/retinanet_pvtv2-b0_*1x_coco.py'), None
    )
    img = images([(61, 77)])[0]
    data = model.data_preprocessor(dict(inputs=[img]), False)
    assert torch.equal(
        Preprocess(model.data_preprocessor)(img[None].float()), data['inputs']
    )


def test_adaptive_pool_written_out_is_pytorchs():
    from pvtfpn_mm.deploy.export import _adaptive_avg_pool

    gen = torch.Generator().manual_seed(0)
    for size, out in (
        ((13, 7), 6),
        ((3, 4), 6),
        ((29, 31), 7),
        ((5, 5), (2, 3)),
    ):
        pool = torch.nn.AdaptiveAvgPool2d(out)
        x = torch.randn(2, 3, *size, generator=gen)
        assert torch.allclose(
            _adaptive_avg_pool(pool, x), pool(x), atol=1e-6, rtol=0
        )


# ---------------------------------------------------------- exported, onnxruntime


@pytest.fixture(scope='module')
def segmentor(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('seg')
    cfg_path = config('sem_fpn/fpn_pvtv2-b0_*ade20k-512x512.py')
    ckpt = random_checkpoint(cfg_path, tmp / 'seg.pth')
    out = export_onnx(cfg_path, ckpt, str(tmp / 'seg.onnx'))
    return load_model(cfg_path, ckpt)[1], OnnxModel(out, threads=2), tmp


@pytest.mark.slow
def test_segmentor_label_maps_equal(segmentor):
    model, onnx_model, _ = segmentor
    for img in images():
        outs = onnx_run(onnx_model, img, 'segmentor')
        pred = torch_predict(model, img, 'segmentor')
        logits = pred.seg_logits.data.numpy()
        assert outs['seg_logits'].shape[-2:] == img.shape[1:]
        assert (
            np.abs(outs['seg_logits'][0] - logits).max()
            <= 1e-4 * np.abs(logits).max()
        )
        assert np.array_equal(
            outs['labels'][0], pred.pred_sem_seg.data[0].numpy()
        )


@pytest.mark.slow
def test_segmentor_helper_resizes_like_mmseg(segmentor, tmp_path):
    """Through the helper: the test pipeline (Resize to 2048 x 512, keep ratio) on a
    file, then mmseg's resize of the logits to the original image and arg-max."""
    import mmcv
    from mmseg.apis import inference_model

    model, onnx_model, _ = segmentor
    # the head's sigmoid threshold travels in the file (used by one-channel heads)
    assert onnx_model.threshold == (model.decode_head.threshold or 0.3)
    image = np.random.default_rng(0).integers(
        0, 256, (90, 120, 3), dtype=np.uint8
    )
    path = str(tmp_path / 'img.png')
    mmcv.imwrite(image, path)
    result = onnx_model(path)
    model.cfg = load_model(
        config('sem_fpn/fpn_pvtv2-b0_*ade20k-512x512.py'), None
    )[0]
    with torch.no_grad():
        ref = inference_model(model, path)
    assert result['labels'].shape == (90, 120)
    agree = (result['labels'] == ref.pred_sem_seg.data[0].numpy()).mean()
    assert agree >= 0.999, agree
    drawn = onnx_model.draw(path, result, str(tmp_path / 'drawn.png'))
    assert drawn.shape == (90, 120, 3) and osp.isfile(tmp_path / 'drawn.png')


@pytest.mark.slow
def test_retinanet_detections_equal(tmp_path):
    cfg_path = config('retinanet/retinanet_pvtv2-b0_*1x_coco.py')
    ckpt = random_checkpoint(cfg_path, tmp_path / 'retinanet.pth')
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import export_onnx as tool
    finally:
        sys.path.pop(0)
    out = tool.main([cfg_path, ckpt, str(tmp_path / 'retinanet.onnx')])
    model, onnx_model = (
        load_model(cfg_path, ckpt)[1],
        OnnxModel(out, threads=2),
    )
    diffs = [
        assert_same_detections(
            onnx_run(onnx_model, img, 'det'),
            torch_predict(model, img, 'det'),
            img,
        )
        for img in images()
    ]
    print('RetinaNet max |box diff|', max(diffs))
    with pytest.raises(FileExistsError, match='--force'):
        tool.main([cfg_path, ckpt, out])


@pytest.mark.slow
def test_mask_rcnn_detections_and_masks_equal(tmp_path, monkeypatch):
    """The exported graph is the backbone's module-by-module path (export traces it; the
    CPU kernels stand aside): against that path in PyTorch, masks are identical. With the
    CPU kernels on (oneDNN's matmul: other fp32 summation order), mask probabilities at the
    0.5 threshold may flip a few pixels; their count is bounded too."""
    from pvtfpn_mm.deploy import paste_masks
    from pvtfpn_mm.models.backbones.pvt_v2 import (
        MixFFN,
        SpatialReductionAttention,
    )

    cfg_path = config('mask_rcnn/mask-rcnn_pvtv2-b0_*1x_coco.py')
    ckpt = random_checkpoint(cfg_path, tmp_path / 'mask_rcnn.pth')
    out = export_onnx(cfg_path, ckpt, str(tmp_path / 'mask_rcnn.onnx'))
    model, onnx_model = (
        load_model(cfg_path, ckpt)[1],
        OnnxModel(out, threads=2),
    )
    assert onnx_model.outputs == ['boxes', 'scores', 'labels', 'mask_probs']
    flipped, total = 0, 0
    for img in images():
        outs = onnx_run(onnx_model, img, 'det')
        masks = paste_masks(outs['mask_probs'], outs['boxes'], *img.shape[1:])
        pred = torch_predict(model, img, 'det')  # the CPU kernels on
        assert_same_detections(outs, pred, img)
        flipped += int((masks != pred.pred_instances.masks.numpy()).sum())
        total += masks.size
        with monkeypatch.context() as m:
            m.setattr(MixFFN, 'fused', False)
            m.setattr(SpatialReductionAttention, 'onednn', False)
            plain = torch_predict(model, img, 'det')
        assert_same_detections(outs, plain, img)
        assert np.array_equal(masks, plain.pred_instances.masks.numpy())
    print(
        f'Mask R-CNN: {flipped} of {total} mask pixels differ (CPU kernels on)'
    )
    assert flipped <= total * 1e-4, (flipped, total)


@pytest.mark.slow
def test_upernet_label_maps_equal(tmp_path):
    """UPerNet's pyramid pooling (adaptive pools) follows the image size."""
    cfg_path = config('upernet/upernet_pvtv2-b0_*.py')
    ckpt = random_checkpoint(cfg_path, tmp_path / 'upernet.pth')
    out = export_onnx(cfg_path, ckpt, str(tmp_path / 'upernet.onnx'))
    model, onnx_model = (
        load_model(cfg_path, ckpt)[1],
        OnnxModel(out, threads=2),
    )
    for img in images():
        outs = onnx_run(onnx_model, img, 'segmentor')
        pred = torch_predict(model, img, 'segmentor')
        assert np.array_equal(
            outs['labels'][0], pred.pred_sem_seg.data[0].numpy()
        )
