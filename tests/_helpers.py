"""Small builders shared by several test files."""

import math

import numpy as np
import torch
from mmengine.structures import InstanceData


def random_params_(model, seed=0):
    """Fills every parameter in place with uniform random values of a sensible scale:
    LayerNorm weights 1 + U(-0.2, 0.2), biases U(-0.2, 0.2), weights with variance
    1 / fan_in (uniform: cheap to draw for the large variants). Returns ``model``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1:
                center = 1.0 if name.endswith('weight') else 0.0
                param.uniform_(center - 0.2, center + 0.2, generator=gen)
            else:
                bound = math.sqrt(3 / param[0].numel())
                param.uniform_(-bound, bound, generator=gen)
    return model


def det_sample(h, w, boxes, with_mask=False):
    """A ``DetDataSample`` of an h x w image with gt ``boxes`` (labels 0, 2, ...) and,
    with ``with_mask``, a bitmap mask 2 px inside each box."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks

    sample = DetDataSample(
        metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)
        )
    )
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    gt = InstanceData(bboxes=boxes, labels=torch.arange(len(boxes)) * 2)
    if with_mask:
        masks = np.zeros((len(boxes), h, w), dtype=np.uint8)
        for m, (x1, y1, x2, y2) in zip(
            masks, boxes.int().tolist(), strict=True
        ):
            m[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2] = 1
        gt.masks = BitmapMasks(masks, h, w)
    sample.gt_instances = gt
    return sample


#: The kinds of broken checkpoint files :func:`write_bad_checkpoint` makes.
BAD_CHECKPOINTS = (
    'empty',
    'text',
    'truncated',
    'truncated-5k',
    'truncated-50k',
    'random',
    'module',
    'truncated-safetensors',
)


def write_bad_checkpoint(folder, kind):
    """Writes ``<folder>/<kind>.pth`` (``.safetensors`` for ``'truncated-safetensors'``), a
    checkpoint file broken as ``kind`` says (one of :data:`BAD_CHECKPOINTS`); returns its
    path."""
    path = folder / f'{kind}.pth'
    if (
        kind == 'truncated-safetensors'
    ):  # a Hugging Face model.safetensors cut short
        from safetensors.torch import save_file

        path = folder / f'{kind}.safetensors'
        save_file({'w': torch.zeros(1000)}, str(path))
        path.write_bytes(path.read_bytes()[:1500])
    elif kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'text':
        path.write_text('model weights: see https://example.com\n')
    elif kind == 'truncated':
        torch.save({'w': torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:1500])
    elif kind.startswith('truncated-'):  # cut inside a larger tensor's data
        size = int(kind.split('-')[1][:-1]) * 1024
        torch.save({'w': torch.zeros(100_000)}, path)
        path.write_bytes(path.read_bytes()[:size])
    elif kind == 'random':
        path.write_bytes(
            torch.randint(
                0,
                256,
                (4096,),
                generator=torch.Generator().manual_seed(0),
                dtype=torch.uint8,
            )
            .numpy()
            .tobytes()
        )
    elif kind == 'module':
        # a pickled module, not a state dict
        torch.save(torch.nn.Linear(2, 2), path)
    else:
        raise ValueError(
            f'unknown kind {kind!r}; expected one of {BAD_CHECKPOINTS}'
        )
    return str(path)
