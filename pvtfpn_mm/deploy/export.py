"""``tools/export_onnx.py``: a config + checkpoint -> one ONNX file, preprocessing to NMS.

The model is built from the config, the checkpoint loaded strictly (foreign layouts
converted first), wrapped by :func:`pvtfpn_mm.deploy.graph.end_to_end` and exported with
``torch.onnx.export(dynamo=True)`` (why not the TorchScript exporter: docs/deploy.md),
image height and width dynamic. The file's metadata (``metadata_props``) holds what
:mod:`pvtfpn_mm.deploy.infer` needs: the task, the class names, the test pipeline.
"""

import contextlib
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .graph import end_to_end

if TYPE_CHECKING:
    from mmengine.model import BaseModel

#: ONNX opset (RoiAlign with half_pixel coordinates needs >= 16).
OPSET = 18
#: Image size of the example input traced; every pyramid level of it must be larger
#: than 1 x 1 (size-1 dimensions are specialized by the tracer).
TRACE_SIZE = (320, 384)


def output_names(kind: str, model: 'BaseModel') -> tuple[str, ...]:
    if kind == 'segmentor':
        return ('seg_logits', 'labels')
    if kind == 'two_stage' and getattr(model.roi_head, 'with_mask', False):
        return ('boxes', 'scores', 'labels', 'mask_probs')
    return ('boxes', 'scores', 'labels')


def load_model(
    config: str, checkpoint: str | None, cfg_options: dict | None = None
):
    """``(cfg, model)``: ``config``'s model in eval mode, with ``checkpoint`` loaded
    strictly (None: the model's own initialization, for tests)."""
    from mmengine.model import revert_sync_batchnorm

    from pvtfpn_mm.engine.build import (
        build_model_from_config,
        drop_pretrained,
        init_quietly,
        load_model_config,
    )
    from pvtfpn_mm.weights import (
        convert_to_model_layout,
        load_state_dict_strict,
        read_state_dict,
    )

    cfg = load_model_config(config, cfg_options)
    cfg.model = drop_pretrained(cfg.model)
    model = revert_sync_batchnorm(build_model_from_config(cfg))
    if checkpoint is None:
        init_quietly(model)
    else:
        state, layout = convert_to_model_layout(
            read_state_dict(checkpoint), model
        )
        if layout is not None:
            print(
                f'checkpoint {checkpoint!r}: converted from the {layout!r} layout'
            )
        load_state_dict_strict(
            model, state, source=f'checkpoint {checkpoint!r}'
        )
    return cfg, model.eval()


def _upsample_by_factor(self, x):
    """mmseg ``Upsample.forward`` with ``size=None``: ``resize`` to ``int(s * factor)``,
    written as a scale factor (the same output: for these integer factors ``int(s *
    factor) == s * factor`` and the source coordinates are ``(d + 0.5) / factor - 0.5``
    either way) so that the size stays symbolic."""
    return F.interpolate(
        x,
        scale_factor=self.scale_factor,
        mode=self.mode,
        align_corners=self.align_corners,
    )


def _pool_matrix(size, bins: int, like):
    """``(bins, size)``: row ``i`` averages input rows ``floor(i size / bins)`` to
    ``ceil((i + 1) size / bins)`` (exclusive), PyTorch's adaptive-pooling bins."""
    index = torch.arange(bins, device=like.device)
    start = (index * size) // bins
    end = ((index + 1) * size + bins - 1) // bins
    rows = torch.arange(size, device=like.device)
    inside = (rows[None] >= start[:, None]) & (rows[None] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def _adaptive_avg_pool(self, x):
    """``nn.AdaptiveAvgPool2d`` as two products with averaging matrices built from the
    symbolic input size (the same bins as PyTorch's kernel; sums in another order), so
    that the bins follow the image; the exporter's own decomposition fixes them at the
    traced size."""
    from torch.nn.modules.utils import _pair

    out_h, out_w = _pair(self.output_size)
    if out_h is None or out_w is None:
        raise NotImplementedError(
            f'AdaptiveAvgPool2d(output_size={self.output_size!r})'
        )
    h, w = x.shape[-2:]
    return (
        _pool_matrix(h, out_h, x)
        @ x
        @ _pool_matrix(w, out_w, x).transpose(0, 1)
    )


@contextlib.contextmanager
def exportable(model: nn.Module) -> Iterator[None]:
    """Makes Python-side size handling symbolic while exporting, with the same numbers
    (each still needed on torch 2.14.1, tried unpatched at untraced sizes):

    - input validation (``_check_inputs`` of our necks and heads) is left out of the
      traced graph -- it turns sizes into Python ints, which would fix the image size
      (the eager run on the example input before export still checks it);
    - mmseg's ``Upsample`` modules computing their output size as ``int(size *
      scale_factor)`` interpolate by the (integer) factor instead (unpatched: the
      Semantic FPN's logits are wrong);
    - adaptive average pooling (UPerNet's pyramid pooling, PVT-v2-li's attention) is
      computed with averaging matrices built from the symbolic size (unpatched:
      onnxruntime fails on UPerNet's graph).
    """
    patched = []
    modules: list[Any] = list(model.modules())  # patched below, put back after
    for module in modules:
        if callable(getattr(module, '_check_inputs', None)):
            module._check_inputs = lambda *args, **kwargs: None
            patched.append((module, '_check_inputs'))
        if isinstance(module, nn.AdaptiveAvgPool2d):
            # an instance attribute over the method, deleted again below
            module.forward = _adaptive_avg_pool.__get__(module)  # type: ignore[method-assign]
            patched.append((module, 'forward'))
        if (
            type(module).__name__ == 'Upsample'
            and getattr(module, 'size', 0) is None
            and float(module.scale_factor).is_integer()
        ):
            module.forward = _upsample_by_factor.__get__(module)
            patched.append((module, 'forward'))
    try:
        yield
    finally:
        for module, name in patched:
            delattr(module, name)


def _test_dataset(cfg) -> dict:
    """The config's test dataset (inside any dataset wrappers)."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset', {})
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def class_names(cfg, model: 'BaseModel') -> list:
    """The class names of the config's test dataset (metainfo), else ``class i``."""
    dataset = _test_dataset(cfg)
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes is None:
        try:
            from mmengine.registry import DATASETS, init_default_scope

            init_default_scope(cfg.default_scope)
            classes = DATASETS.get(dataset['type']).METAINFO['classes']
        except Exception:  # any dataset class: names are optional
            classes = None
    if classes is None:
        head = getattr(model, 'bbox_head', None) or getattr(
            model, 'decode_head', None
        )
        if head is None and hasattr(model, 'roi_head'):
            head = model.roi_head.bbox_head
        classes = [
            f'class {i}' for i in range(int(getattr(head, 'num_classes', 0)))
        ]
    return list(classes)


def test_pipeline(cfg) -> list:
    """The config's test pipeline without annotation loading (the helper's input)."""
    pipeline = (
        _test_dataset(cfg).get('pipeline') or cfg.get('test_pipeline') or []
    )
    return [
        dict(step)
        for step in pipeline
        if not str(step.get('type', ''))
        .split('.')[-1]
        .startswith('LoadAnnotations')
    ]


def export_onnx(
    config: str,
    checkpoint: str | None,
    out: str,
    force: bool = False,
    cfg_options: dict | None = None,
    check: bool = True,
) -> str:
    """Exports ``config`` with ``checkpoint`` end to end to ``out`` (see the module doc).

    Args:
        config (str): One of our mmdet / mmseg configs.
        checkpoint (str, optional): Its trained weights (None: initialization only).
        out (str): The ``.onnx`` file to write (``~`` expanded; its folder must exist).
        force (bool): Overwrite ``out``. Defaults to False.
        cfg_options (dict, optional): Overrides of the config.
        check (bool): Run ``onnx.checker`` on the result. Defaults to True.

    Returns:
        str: The file written.
    """
    import onnx

    from pvtfpn_mm.weights import atomic_write, check_output

    out = os.path.expanduser(out)
    check_output(out, force, checkpoint)
    cfg, model = load_model(config, checkpoint, cfg_options)
    graph, kind = end_to_end(model)
    graph.eval()
    example = [torch.randint(0, 256, (1, 3, *TRACE_SIZE)).float()]
    # DYNAMIC, not AUTO: an export that would fix the image size fails instead
    dims: dict[str, dict[int, Any] | None] = {
        'image': {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    }
    if kind != 'segmentor':
        example.append(torch.ones(2))
        dims['scale_factor'] = None
    with torch.no_grad():
        # eager run: the models' own input checks see the example
        graph(*example)
        with exportable(model):
            program = torch.onnx.export(
                graph,
                tuple(example),
                dynamo=True,
                opset_version=OPSET,
                input_names=list(dims),
                output_names=list(output_names(kind, model)),
                dynamic_shapes=dims,
                external_data=False,
                verbose=False,
            )
    assert program is not None  # dynamo=True returns the program
    proto = program.model_proto
    meta = dict(
        task=cfg.default_scope,
        kind=kind,
        classes=json.dumps(class_names(cfg, model)),
        pipeline=json.dumps(test_pipeline(cfg)),
        align_corners=bool(
            getattr(
                getattr(model, 'decode_head', None), 'align_corners', False
            )
        ),
        config=os.path.basename(config),
        exporter=f'torch {torch.__version__} dynamo, opset {OPSET}',
    )
    if kind == 'segmentor':  # a one-channel head's labels: sigmoid > threshold
        meta['threshold'] = graph.threshold
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=str(value))
    if check:
        onnx.checker.check_model(proto)
    atomic_write(out, lambda f: f.write(proto.SerializeToString()))
    return out
