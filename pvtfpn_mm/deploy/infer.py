"""Runs an exported ONNX file with onnxruntime on an image and draws the result.

The config's test pipeline stored in the file resizes the image outside the graph;
results come back for the original image, as mmdet's / mmseg's ``predict`` gives them.
Usage and what was tested: docs/deploy.md.
"""

import json

import numpy as np
import torch
import torch.nn.functional as F

ImageLike = str | np.ndarray


def paste_masks(
    mask_probs: np.ndarray,
    boxes: np.ndarray,
    height: int,
    width: int,
    threshold: float = 0.5,
) -> np.ndarray:
    """Each detection's mask probabilities ``(N, h, w)`` pasted into its box of an
    ``height x width`` image and thresholded (``>=``), with mmdet's ``_do_paste_mask``
    one detection at a time as mmdet on the CPU. Returns ``(N, height, width)`` bool."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask

    out = np.zeros((len(boxes), height, width), dtype=bool)
    probs = torch.from_numpy(np.ascontiguousarray(mask_probs))[:, None]
    boxes_t = torch.from_numpy(np.ascontiguousarray(boxes))
    for i in range(len(boxes)):
        pasted, (ys, xs) = _do_paste_mask(
            probs[i : i + 1],
            boxes_t[i : i + 1],
            height,
            width,
            skip_empty=True,
        )
        out[i, ys, xs] = (pasted[0] >= threshold).numpy()
    return out


def _tuples(node):
    """JSON made tuples lists; sizes (lists of numbers) become tuples again, as mmcv's
    transforms want them."""
    if isinstance(node, dict):
        return {k: _tuples(v) for k, v in node.items()}
    if isinstance(node, list):
        items = [_tuples(v) for v in node]
        numbers = items and all(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            for v in items
        )
        return tuple(items) if numbers else items
    return node


class OnnxModel:
    """An exported detector / segmentor, run with onnxruntime (see the module doc).

    Args:
        path (str): The ``.onnx`` file written by ``tools/export_onnx.py``.
        threads (int, optional): onnxruntime intra-op threads (default: its own).
        mask_thr (float): Threshold of pasted mask probabilities. Defaults to 0.5 (the
            configs' ``mask_thr_binary``).
    """

    def __init__(
        self, path: str, threads: int | None = None, mask_thr: float = 0.5
    ):
        import onnxruntime as ort
        from mmengine.dataset import Compose
        from mmengine.registry import init_default_scope

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            path, options, providers=['CPUExecutionProvider']
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        for key in ('task', 'kind', 'classes', 'pipeline'):
            if key not in meta:
                raise ValueError(
                    f'{path!r} has no {key!r} metadata: not a file written by '
                    f'tools/export_onnx.py'
                )
        self.task, self.kind = meta['task'], meta['kind']
        self.classes = json.loads(meta['classes'])
        self.align_corners = meta.get('align_corners', 'False') == 'True'
        # a one-channel segmentor's (files exported before it was recorded: mmseg's 0.3)
        self.threshold = float(meta.get('threshold', 0.3))
        self.mask_thr = mask_thr
        self.outputs = [o.name for o in self.session.get_outputs()]
        # the task's TRANSFORMS registry imports its transforms when asked
        init_default_scope(self.task)
        steps = _tuples(json.loads(meta['pipeline']))
        # an array or a file read by preprocess
        steps[0] = dict(type='LoadImageFromNDArray')
        self.pipeline = Compose(steps)

    def preprocess(self, image: ImageLike) -> dict:
        """The test pipeline on ``image`` (a path, or a BGR ``H x W x 3`` uint8 array)."""
        import mmcv

        return self.pipeline(
            dict(img=mmcv.imread(image), img_id=0, img_path=None)
        )

    def __call__(self, image: ImageLike) -> dict[str, np.ndarray]:
        """Detections (``boxes`` ``(N, 4)``, ``scores``, ``labels`` and for Mask R-CNN
        ``masks`` ``(N, H, W)`` bool) or a segmentation (``labels`` ``(H, W)``,
        ``seg_logits`` at the network's input size), for the original image."""
        data = self.preprocess(image)
        meta = data['data_samples'].metainfo
        feed = {'image': data['inputs'][None].float().numpy()}
        if self.kind != 'segmentor':
            feed['scale_factor'] = np.asarray(
                meta['scale_factor'], dtype=np.float32
            )
        outs = dict(
            zip(self.outputs, self.session.run(None, feed), strict=True)
        )
        ori_h, ori_w = meta['ori_shape'][:2]
        if self.kind == 'segmentor':
            logits = torch.from_numpy(outs['seg_logits'])
            # mmseg: resize, then arg-max
            if tuple(logits.shape[-2:]) != (ori_h, ori_w):
                logits = F.interpolate(
                    logits,
                    size=(ori_h, ori_w),
                    mode='bilinear',
                    align_corners=self.align_corners,
                )
                labels = (
                    logits.argmax(1)
                    if logits.shape[1] > 1
                    else (logits.sigmoid() > self.threshold).long()[:, 0]
                )
                outs['labels'] = labels.numpy()
            outs['labels'] = outs['labels'][0]
            return outs
        if 'mask_probs' in outs:
            outs['masks'] = paste_masks(
                outs.pop('mask_probs'),
                outs['boxes'],
                ori_h,
                ori_w,
                self.mask_thr,
            )
        return outs

    def draw(
        self,
        image: ImageLike,
        result: dict[str, np.ndarray],
        out_file: str | None = None,
        score_thr: float = 0.3,
    ) -> np.ndarray:
        """``image`` (BGR) with the detections above ``score_thr`` (boxes, class names,
        scores, masks) or the label map blended in; written to ``out_file`` if given."""
        import cv2
        import mmcv

        canvas = mmcv.imread(image).copy()
        palette = np.random.default_rng(0).integers(
            0, 255, size=(max(len(self.classes), 1) + 1, 3), dtype=np.uint8
        )
        if self.kind == 'segmentor':
            colors = palette[result['labels'] % len(palette)]
            canvas = (0.5 * canvas + 0.5 * colors).astype(np.uint8)
        else:
            keep = result['scores'] > score_thr
            for i in np.flatnonzero(keep):
                color = tuple(int(c) for c in palette[result['labels'][i]])
                if 'masks' in result:
                    m = result['masks'][i]
                    canvas[m] = (
                        0.5 * canvas[m] + 0.5 * np.array(color)
                    ).astype(np.uint8)
                x1, y1, x2, y2 = (int(round(v)) for v in result['boxes'][i])
                cv2.rectangle(canvas, (x1, y1), (x2, y2), color, 2)
                label = int(result['labels'][i])
                name = (
                    self.classes[label]
                    if label < len(self.classes)
                    else str(label)
                )
                cv2.putText(
                    canvas,
                    f'{name} {result["scores"][i]:.2f}',
                    (x1, max(y1 - 3, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.4,
                    color,
                    1,
                    cv2.LINE_AA,
                )
        if out_file is not None:
            mmcv.imwrite(canvas, out_file)
        return canvas
