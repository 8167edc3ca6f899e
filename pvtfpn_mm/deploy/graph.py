"""End-to-end modules for ONNX export: image in, detections / label map out.

Each wraps a built mmdet / mmseg model and re-states its test-time path (preprocessing,
model, box decoding, NMS) with export-friendly operations that compute the same numbers.
What each computes, its inputs and the NMS-tie caveat: docs/deploy.md ("What the graph
computes").
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # no stubs: Any to mypy, documentation here
    from mmdet.models.detectors import SingleStageDetector, TwoStageDetector
    from mmengine.model import BaseDataPreprocessor, BaseModel
    from mmseg.models.segmentors import EncoderDecoder


class Preprocess(nn.Module):
    """The tensor path of mmengine's ``ImgDataPreprocessor`` for one image."""

    mean: Tensor  # buffers, when normalizing
    std: Tensor

    def __init__(
        self, data_preprocessor: 'BaseDataPreprocessor', pad: bool = True
    ):
        super().__init__()
        # mmengine / mmdet: _channel_conversion; mmseg: channel_conversion
        self.bgr_to_rgb = bool(
            getattr(data_preprocessor, '_channel_conversion', False)
            or getattr(data_preprocessor, 'channel_conversion', False)
        )
        self.normalize = bool(
            getattr(data_preprocessor, '_enable_normalize', False)
        )
        if self.normalize:
            self.register_buffer(
                'mean', data_preprocessor.mean.clone(), persistent=False
            )
            self.register_buffer(
                'std', data_preprocessor.std.clone(), persistent=False
            )
        self.divisor = (
            int(getattr(data_preprocessor, 'pad_size_divisor', 1))
            if pad
            else 1
        )
        self.pad_value = float(getattr(data_preprocessor, 'pad_value', 0))

    def forward(self, image: Tensor) -> Tensor:
        x = image.float()
        if self.bgr_to_rgb:
            x = x.flip(1)
        if self.normalize:
            x = (x - self.mean) / self.std
        if self.divisor > 1:
            h, w = x.shape[-2:]
            pad_h = (self.divisor - h % self.divisor) % self.divisor
            pad_w = (self.divisor - w % self.divisor) % self.divisor
            x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)
        return x


def delta2bbox(
    rois: Tensor,
    deltas: Tensor,
    means: Sequence[float],
    stds: Sequence[float],
    max_hw: tuple,
    wh_ratio_clip: float = 16 / 1000,
) -> Tensor:
    """mmdet's ``delta2bbox`` (``add_ctr_clamp=False``, clipped to ``max_hw``) with the
    same arithmetic, without in-place slices. ``rois`` ``(n, 4)``, ``deltas`` ``(n, 4)``."""
    mean_t = deltas.new_tensor(means).view(1, -1)
    std_t = deltas.new_tensor(stds).view(1, -1)
    denorm = deltas * std_t + mean_t
    dxy, dwh = denorm[:, :2], denorm[:, 2:]
    pxy = (rois[:, :2] + rois[:, 2:]) * 0.5
    pwh = rois[:, 2:] - rois[:, :2]
    dxy_wh = pwh * dxy
    max_ratio = float(np.abs(np.log(wh_ratio_clip)))
    dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    x1y1 = gxy - gwh * 0.5
    x2y2 = gxy + gwh * 0.5
    h, w = max_hw
    x1 = x1y1[:, 0:1].clamp(min=0).clamp(max=w)
    y1 = x1y1[:, 1:2].clamp(min=0).clamp(max=h)
    x2 = x2y2[:, 0:1].clamp(min=0).clamp(max=w)
    y2 = x2y2[:, 1:2].clamp(min=0).clamp(max=h)
    return torch.cat([x1, y1, x2, y2], dim=1)


def _coder_args(coder) -> dict:
    name = type(coder).__name__
    if (
        name != 'DeltaXYWHBBoxCoder'
        or getattr(coder, 'add_ctr_clamp', False)
        or not getattr(coder, 'clip_border', True)
    ):
        raise NotImplementedError(
            f'box coder {name} (add_ctr_clamp={getattr(coder, "add_ctr_clamp", None)}, '
            f'clip_border={getattr(coder, "clip_border", None)}): the exporter implements '
            f'DeltaXYWHBBoxCoder with clip_border=True and add_ctr_clamp=False'
        )
    return dict(means=tuple(coder.means), stds=tuple(coder.stds))


def _nms_iou(cfg, what: str) -> float:
    nms = cfg.get('nms')
    if (
        nms is None
        or nms.get('type', 'nms') != 'nms'
        or nms.get('class_agnostic', False)
    ):
        raise NotImplementedError(
            f'{what}: NMS config {nms!r}; the exporter implements type="nms" (class-wise)'
        )
    return float(nms['iou_threshold'])


def batched_nms(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float
) -> Tensor:
    """mmcv's ``batched_nms`` (offset path): indices of the kept boxes, by descending
    score. ``boxes`` are shifted by ``idxs * (boxes.max() + 1)`` so that one NMS keeps
    groups apart."""
    import torchvision

    # the largest coordinate; 0 joins in so that no boxes give 0, not an error (boxes
    # are clipped to >= 0, so it changes nothing otherwise)
    max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return torchvision.ops.nms(boxes + offsets[:, None], scores, iou_threshold)


class _DenseDetections:
    """A dense head's test path for one image (mmdet's ``_predict_by_feat_single`` +
    ``_bbox_post_process``) from its ``test_cfg`` (docs/deploy.md); the RPN
    (``rpn=True``) has no score threshold and runs NMS by level, not by class."""

    def __init__(self, head, cfg, rpn: bool = False):
        self.head, self.rpn = head, rpn
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.score_thr = None if rpn else float(cfg.get('score_thr', 0))
        self.min_size = cfg.get('min_bbox_size', -1)
        self.iou = _nms_iou(cfg, 'rpn' if rpn else type(head).__name__)
        self.max_per_img = int(cfg.get('max_per_img', 1000 if rpn else 100))
        self.coder = _coder_args(head.bbox_coder)

    def __call__(self, feats, h, w, scale_factor: Tensor | None = None):
        """``boxes``, ``scores`` and ``labels`` (the RPN: levels), by descending score."""
        cls_scores, bbox_preds = self.head(feats)
        priors = self.head.prior_generator.grid_priors(
            [c.shape[-2:] for c in cls_scores],
            dtype=feats[0].dtype,
            device=feats[0].device,
        )
        num_classes = self.head.cls_out_channels
        all_scores, all_idxs, all_deltas, all_priors = [], [], [], []
        for level, (cls, reg, pri) in enumerate(
            # plain zip: torch 2.1's dynamo refuses zip(strict=...)
            zip(cls_scores, bbox_preds, priors)  # noqa: B905
        ):
            scores = cls[0].permute(1, 2, 0).reshape(-1).sigmoid()
            n = scores.shape[0]
            top, index = scores.topk(
                min(self.nms_pre, n) if self.nms_pre > 0 else n
            )
            if self.score_thr is not None:
                keep = top > self.score_thr
                top, index = top[keep], index[keep]
            anchor = torch.div(index, num_classes, rounding_mode='floor')
            all_scores.append(top)
            all_idxs.append(
                torch.full_like(index, level)
                if self.rpn
                else index - anchor * num_classes
            )
            all_deltas.append(reg[0].permute(1, 2, 0).reshape(-1, 4)[anchor])
            all_priors.append(pri[anchor])
        scores, idxs = torch.cat(all_scores), torch.cat(all_idxs)
        boxes = delta2bbox(
            torch.cat(all_priors),
            torch.cat(all_deltas),
            max_hw=(h, w),
            **self.coder,
        )
        if scale_factor is not None:  # mmdet: scale_boxes by 1/s
            boxes = boxes * (1 / scale_factor).repeat(2)[None]
        if self.min_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            valid = (wh[:, 0] > self.min_size) & (wh[:, 1] > self.min_size)
            boxes, scores, idxs = boxes[valid], scores[valid], idxs[valid]
        keep = batched_nms(boxes, scores, idxs, self.iou)[: self.max_per_img]
        return boxes[keep], scores[keep], idxs[keep]


class SingleStageGraph(nn.Module):
    """RetinaNet-style detector, end to end (see the module doc).

    Returns ``boxes`` ``(N, 4)`` (x1, y1, x2, y2 in the original image), ``scores``
    ``(N,)`` and ``labels`` ``(N,)`` (int64), by descending score.
    """

    model: 'SingleStageDetector'

    def __init__(self, model: 'SingleStageDetector'):
        super().__init__()
        head = model.bbox_head
        if not getattr(head, 'use_sigmoid_cls', False) or type(
            head
        ).__name__ not in ('RetinaHead', 'AnchorHead'):
            raise NotImplementedError(
                f'{type(head).__name__}: the exporter implements RetinaHead-like heads '
                f'(anchors, sigmoid scores)'
            )
        self.model = model
        self.pre = Preprocess(model.data_preprocessor)
        self.detections = _DenseDetections(head, head.test_cfg)

    def forward(self, image: Tensor, scale_factor: Tensor):
        h, w = image.shape[-2:]
        feats = self.model.extract_feat(self.pre(image))
        return self.detections(feats, h, w, scale_factor)


class TwoStageGraph(nn.Module):
    """Mask R-CNN / Faster R-CNN, end to end (see the module doc).

    Returns ``boxes``, ``scores``, ``labels`` as :class:`SingleStageGraph` and, with a
    mask head, ``mask_probs`` ``(N, h, w)`` (each detection's mask of its class, before
    pasting).
    """

    model: 'TwoStageDetector'

    def __init__(self, model: 'TwoStageDetector'):
        super().__init__()
        rpn, roi = model.rpn_head, model.roi_head
        names = (
            type(rpn).__name__,
            type(roi).__name__,
            type(roi.bbox_head).__name__,
            type(roi.bbox_roi_extractor).__name__,
        )
        if (
            names[:2] != ('RPNHead', 'StandardRoIHead')
            or names[3] != 'SingleRoIExtractor'
            or getattr(roi.bbox_head, 'reg_class_agnostic', False)
            or getattr(roi.bbox_head, 'custom_cls_channels', False)
        ):
            raise NotImplementedError(
                f'{names}: the exporter implements RPNHead + StandardRoIHead with a '
                f'class-wise ConvFCBBoxHead and SingleRoIExtractor'
            )
        self.model = model
        self.pre = Preprocess(model.data_preprocessor)
        rcnn_cfg = model.test_cfg.rcnn
        self.proposals = _DenseDetections(rpn, model.test_cfg.rpn, rpn=True)
        self.score_thr = float(rcnn_cfg.get('score_thr', 0))
        self.iou = _nms_iou(rcnn_cfg, 'rcnn')
        self.max_per_img = int(rcnn_cfg.get('max_per_img', 100))
        self.coder = _coder_args(roi.bbox_head.bbox_coder)
        self.with_mask = bool(getattr(roi, 'with_mask', False))

    @staticmethod
    def _roi_features(
        extractor, feats: Sequence[Tensor], boxes: Tensor
    ) -> Tensor:
        """``SingleRoIExtractor``: RoIAlign of every RoI on its level (all levels are
        computed, each RoI takes its own: the same values as mmdet's gather)."""
        import torchvision

        feats = feats[: extractor.num_inputs]
        rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)
        scale = torch.sqrt(
            (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        )
        levels = torch.floor(torch.log2(scale / extractor.finest_scale + 1e-6))
        levels = levels.clamp(min=0, max=len(feats) - 1).long()
        out = None
        # plain zip: torch 2.1's dynamo refuses zip(strict=...)
        for i, (feat, layer) in enumerate(zip(feats, extractor.roi_layers)):  # noqa: B905
            if getattr(layer, 'pool_mode', 'avg') != 'avg':
                raise NotImplementedError(
                    f'RoIAlign pool_mode {layer.pool_mode!r}'
                )
            roi_feat = torchvision.ops.roi_align(
                feat,
                rois,
                layer.output_size,
                layer.spatial_scale,
                layer.sampling_ratio,
                layer.aligned,
            )
            if out is None:
                out = torch.zeros_like(roi_feat)
            out = torch.where(
                (levels == i)[:, None, None, None], roi_feat, out
            )
        assert out is not None  # an extractor has at least one level
        return out

    def forward(self, image: Tensor, scale_factor: Tensor):
        roi = self.model.roi_head
        h, w = image.shape[-2:]
        feats = self.model.extract_feat(self.pre(image))
        proposals = self.proposals(feats, h, w)[0]
        cls_score, bbox_pred = roi.bbox_head(
            self._roi_features(roi.bbox_roi_extractor, feats, proposals)
        )
        scores = F.softmax(cls_score, dim=-1)
        num_classes = scores.shape[1] - 1
        boxes = delta2bbox(
            proposals.repeat_interleave(num_classes, dim=0),
            bbox_pred.reshape(-1, 4),
            max_hw=(h, w),
            **self.coder,
        )
        # (proposal, class), the background dropped
        scores = scores[:, :-1].reshape(-1)
        labels = torch.arange(num_classes, device=scores.device).repeat(
            proposals.shape[0]
        )
        valid = scores > self.score_thr
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
        keep = batched_nms(boxes, scores, labels, self.iou)[: self.max_per_img]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        out = (boxes / scale_factor.repeat(2)[None], scores, labels)
        if not self.with_mask:
            return out
        mask_logits = roi.mask_head(
            self._roi_features(roi.mask_roi_extractor, feats, boxes)
        )
        index = torch.arange(labels.shape[0], device=labels.device)
        return (*out, mask_logits[index, labels].sigmoid())


class SegmentorGraph(nn.Module):
    """mmseg ``EncoderDecoder`` (whole-image inference), end to end.

    Returns ``seg_logits`` ``(1, C, H, W)`` resized to the input image (bilinear, as
    mmseg) and ``labels`` ``(1, H, W)`` (int64, their arg-max; a one-channel head gives
    ``sigmoid > threshold``).
    """

    model: 'EncoderDecoder'

    def __init__(self, model: 'EncoderDecoder'):
        super().__init__()
        mode = (
            model.test_cfg.get('mode', 'whole') if model.test_cfg else 'whole'
        )
        if mode != 'whole':
            raise NotImplementedError(
                f'test_cfg.mode={mode!r}: the exporter implements '
                f'whole-image inference'
            )
        if getattr(model.data_preprocessor, 'test_cfg', None):
            raise NotImplementedError(
                f'data_preprocessor.test_cfg={model.data_preprocessor.test_cfg!r}: the '
                f'exporter implements unpadded test inputs'
            )
        self.model = model
        self.pre = Preprocess(model.data_preprocessor, pad=False)
        self.threshold = float(
            getattr(model.decode_head, 'threshold', 0.3) or 0.3
        )

    def forward(self, image: Tensor):
        h, w = image.shape[-2:]
        logits = self.model.encode_decode(
            self.pre(image), [dict(img_shape=(h, w))]
        )
        if logits.shape[1] == 1:
            labels = (logits.sigmoid() > self.threshold).long()[:, 0]
        else:
            labels = logits.argmax(dim=1)
        return logits, labels


def end_to_end(model: 'BaseModel') -> tuple[nn.Module, str]:
    """The export module for ``model`` and its kind (``'single_stage'``,
    ``'two_stage'``, ``'segmentor'``)."""
    if hasattr(model, 'rpn_head') and hasattr(model, 'roi_head'):
        return TwoStageGraph(model), 'two_stage'
    if hasattr(model, 'bbox_head'):
        return SingleStageGraph(model), 'single_stage'
    if type(model).__name__ == 'EncoderDecoder':
        return SegmentorGraph(model), 'segmentor'
    raise NotImplementedError(
        f'{type(model).__name__}: the exporter handles RetinaNet-style single-stage '
        f'detectors, RPN + StandardRoIHead two-stage detectors and EncoderDecoder '
        f'segmentors'
    )
