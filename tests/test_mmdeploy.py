"""mmdeploy 1.3.1 deploys our RetinaNet-b0 (oldest stack; docs/deploy.md).

Through mmdeploy's Python API, as its ``tools/deploy.py`` does, with an inline deploy
config equal to mmdeploy's ``configs/mmdet/detection/detection_onnxruntime_dynamic.py``:
``torch2onnx`` (dynamic image size) from one image, then onnxruntime through the task
processor's backend model on images of other sizes, against PyTorch's ``model.predict``
on the same preprocessed inputs: the same detections in the same order, the same
labels, boxes within 1e-3 px, scores within 1e-4.

That holds where the resized image needs no padding (its sides multiples of 32).
mmdeploy's dynamic graph clips boxes to the padded network input
(``torch._shape_as_tensor(input)``), mmdet to the resized image: on a padded input,
mmdeploy's boxes reach into the padding, beyond the image (checked: by at most the
padding), and as their overlaps differ, NMS may keep other boxes than mmdet's.

Only where mmdeploy is installed (tools/setup_env.sh oldest): mmdeploy 1.3.1 cannot
export on torch >= 2.9 (``torch.onnx.export``'s dynamo exporter, the default there,
rejects its ``dynamic_axes``).
"""

import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from pvtfpn_mm.deploy.export import load_model
from pvtfpn_mm.engine.build import drop_pretrained

from _helpers import random_params_

CONFIG = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))),
    'configs/retinanet/retinanet_pvtv2-b0_topdownfpn_1x_coco.py',
)

#: mmdeploy's detection_onnxruntime_dynamic.py with its _base_ files written out
#: (configs/_base_/onnx_config.py, mmdet/_base_/base_static.py + base_dynamic.py,
#: _base_/backends/onnxruntime.py of open-mmlab/mmdeploy v1.3.1).
DEPLOY_CFG = dict(
    onnx_config=dict(
        type='onnx',
        export_params=True,
        keep_initializers_as_inputs=False,
        opset_version=11,
        save_file='end2end.onnx',
        input_names=['input'],
        output_names=['dets', 'labels'],
        input_shape=None,
        optimize=True,
        dynamic_axes={
            'input': {0: 'batch', 2: 'height', 3: 'width'},
            'dets': {0: 'batch', 1: 'num_dets'},
            'labels': {0: 'batch', 1: 'num_dets'},
        },
    ),
    codebase_config=dict(
        type='mmdet',
        task='ObjectDetection',
        model_type='end2end',
        post_processing=dict(
            score_threshold=0.05,
            confidence_threshold=0.005,
            iou_threshold=0.5,
            max_output_boxes_per_class=200,
            pre_top_k=5000,
            keep_top_k=100,
            background_label_id=-1,
        ),
    ),
    backend_config=dict(type='onnxruntime'),
)

#: The test pipeline resizes (keep ratio) into 224 x 160 (w x h) instead of 1333 x 800.
SCALE = (224, 160)
EXPORT_HW = (96, 96)  # h x w
TRACED_HW = (160, 160)  # the network input it becomes: the export traces that
#: -> 160 x 224: no padding
UNPADDED_HW = [(160, 224), (100, 140)]
#: -> 160 x 203, padded to 160 x 224
PADDED_HW = (150, 190)


def _model_cfg():
    cfg = Config.fromfile(CONFIG)
    cfg.model = drop_pretrained(cfg.model)
    for pipeline in (
        cfg.test_dataloader.dataset.pipeline,
        cfg.test_pipeline,
    ):
        for step in pipeline:
            if step['type'] == 'Resize':
                step['scale'] = SCALE
    return cfg


def _image(hw, seed):
    gen = np.random.default_rng(seed)
    return gen.integers(0, 256, (*hw, 3), dtype=np.uint8)  # BGR


@pytest.mark.slow
def test_mmdeploy_onnxruntime_equals_pytorch(tmp_path):
    # Imported here, not at collection: mmdeploy imports transformers and more.
    pytest.importorskip('mmdeploy')
    pytest.importorskip('onnxruntime')
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import build_task_processor

    model_cfg = _model_cfg()
    deploy_cfg = Config(DEPLOY_CFG)
    _, model = load_model(model_cfg, None)
    random_params_(model, seed=1)
    ckpt = str(tmp_path / 'retinanet_b0.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)

    torch2onnx(
        _image(EXPORT_HW, 0),
        str(tmp_path),
        'end2end.onnx',
        deploy_cfg,
        model_cfg,
        ckpt,
        device='cpu',
    )
    processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    ort_model = processor.build_backend_model([str(tmp_path / 'end2end.onnx')])
    torch_model = processor.build_pytorch_model(ckpt)

    def run(hw, seed):
        data, _ = processor.create_input(_image(hw, seed), input_shape=None)
        with torch.no_grad():
            ort = ort_model.test_step(data)[0].pred_instances
            prep = torch_model.data_preprocessor(data, False)
            ref = torch_model.predict(prep['inputs'], prep['data_samples'])
        sample = ref[0]
        assert tuple(prep['inputs'].shape[-2:]) != TRACED_HW
        return ort, sample.pred_instances, sample, prep['inputs'].shape[-2:]

    # Resized to a multiple of 32: no padding, the same detections.
    for seed, hw in enumerate(UNPADDED_HW, 1):
        ort, ref, sample, pad_hw = run(hw, seed)
        assert tuple(pad_hw) == sample.img_shape == (160, 224)
        assert len(ort) == len(ref) > 20, (hw, len(ort), len(ref))
        assert torch.equal(ort.labels, ref.labels), hw
        box_diff = (ort.bboxes - ref.bboxes).abs().max().item()
        assert box_diff <= 1e-3, (hw, box_diff)
        assert (ort.scores - ref.scores).abs().max() <= 1e-4, hw

    # Padded: mmdeploy's boxes reach into the padding (mmdet's stop at the image), by
    # at most the padding (in the original image's pixels).
    ort, ref, sample, (pad_h, pad_w) = run(PADDED_HW, 3)
    img_h, img_w = sample.img_shape
    assert (pad_h, pad_w) == (160, 224) and (img_h, img_w) == (160, 203)
    sx, _ = sample.scale_factor
    over = (ort.bboxes[:, 2].max() - PADDED_HW[1]).item()
    assert 0 < over <= (pad_w - img_w) / sx + 1e-3, over
    assert ref.bboxes[:, 2].max() <= PADDED_HW[1]
