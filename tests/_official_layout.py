"""Key lists (with shapes) of the official whai362/PVT detection and segmentation
checkpoints, written from the official code -- not from our models.

- Backbone: ``detection/pvt_v2.py`` of whai362/PVT (the segmentation code registers the
  same class in mmseg): stages ``i = 1..4`` are ``patch_embed{i}`` (``proj`` conv,
  ``norm``), ``block{i}.{j}`` (``norm1``, ``attn.q`` / ``attn.kv`` / ``attn.proj``
  linears, ``attn.sr`` conv + ``attn.norm`` when ``sr_ratio > 1`` -- always, as a
  1 x 1 conv, with ``linear=True`` --, ``norm2``, ``mlp.fc1``, ``mlp.dwconv.dwconv``
  depthwise conv, ``mlp.fc2``) and ``norm{i}``; no classifier.
- Necks and heads: mmdet 2.13 (``FPN``: ``lateral_convs`` / ``fpn_convs`` ConvModules
  without norm; ``RetinaHead``: 4 ``cls_convs`` / ``reg_convs``, ``retina_cls`` /
  ``retina_reg``; ``RPNHead``: ``rpn_conv`` / ``rpn_cls`` / ``rpn_reg`` with 3 anchors
  and a sigmoid; ``Shared2FCBBoxHead``: ``shared_fcs.{0,1}``, ``fc_cls`` (81),
  ``fc_reg`` (80 x 4); ``FCNMaskHead``: 4 ``convs``, ``upsample`` deconv,
  ``conv_logits``) and mmseg 0.13 (``FPNHead``: ``scale_heads.{i}`` of
  ``max(1, log2(stride_i / 4))`` ConvModules with SyncBN, each followed by an
  ``Upsample`` for i > 0; ``conv_seg``), as the official configs build them.
- The release's 3x detectors (mmdet 2.13 modules, as their configs build them; the
  lists were checked against mmdet 2.13.0 models built from those configs): Cascade
  Mask R-CNN (``RPNHead``; three ``ConvFCBBoxHead`` stages ``roi_head.bbox_head.{s}``
  with 4 ``shared_convs`` -- conv without bias + SyncBN ``bn`` -- one ``shared_fcs``,
  ``fc_cls`` (81), class-specific ``fc_reg``; three ``FCNMaskHead`` stages); ATSS
  (``cls_convs`` / ``reg_convs`` with GN ``gn`` and no conv bias, ``atss_cls``,
  ``atss_reg``, ``atss_centerness``, one ``scales.{i}.scale`` per level); GFL (the same
  convs and scales, ``gfl_cls``, ``gfl_reg`` with 4 x (reg_max + 1) outputs, the
  ``integral.project`` buffer ``linspace(0, reg_max, reg_max + 1)``); Sparse R-CNN
  (``EmbeddingRPNHead`` ``init_proposal_bboxes`` / ``init_proposal_features``; six
  ``DIIHead`` stages: ``attention.attn`` = ``nn.MultiheadAttention``, DynamicConv
  ``instance_interactive_conv`` with ``dynamic_layer``, ``norm_in``, ``norm_out``,
  ``fc_layer``, ``fc_norm``; FFN ``ffn.layers.{0.0,1}``; ``cls_fcs`` / ``reg_fcs``
  linears without bias, each followed by a LayerNorm; ``fc_cls`` (80, sigmoid),
  ``fc_reg`` (4)).
"""

import math
from collections import OrderedDict

import torch

ARCHS = {  # embed_dims, depths, sr_ratios, mlp_ratios, linear (detection/pvt_v2.py)
    'b0': (
        [32, 64, 160, 256],
        [2, 2, 2, 2],
        [8, 4, 2, 1],
        [8, 8, 4, 4],
        False,
    ),
    'b2': (
        [64, 128, 320, 512],
        [3, 4, 6, 3],
        [8, 4, 2, 1],
        [8, 8, 4, 4],
        False,
    ),
    'b2_li': (
        [64, 128, 320, 512],
        [3, 4, 6, 3],
        [8, 4, 2, 1],
        [8, 8, 4, 4],
        True,
    ),
}


def backbone_shapes(arch='b0'):
    dims, depths, srs, mlps, linear = ARCHS[arch]
    shapes = OrderedDict()
    for i in range(4):
        c, cin, k = dims[i], 3 if i == 0 else dims[i - 1], 7 if i == 0 else 3
        p = f'patch_embed{i + 1}.'
        shapes.update(
            {
                p + 'proj.weight': (c, cin, k, k),
                p + 'proj.bias': (c,),
                p + 'norm.weight': (c,),
                p + 'norm.bias': (c,),
            }
        )
        hidden = c * mlps[i]
        for j in range(depths[i]):
            b = f'block{i + 1}.{j}.'
            shapes.update(
                {
                    b + 'norm1.weight': (c,),
                    b + 'norm1.bias': (c,),
                    b + 'attn.q.weight': (c, c),
                    b + 'attn.q.bias': (c,),
                    b + 'attn.kv.weight': (2 * c, c),
                    b + 'attn.kv.bias': (2 * c,),
                    b + 'attn.proj.weight': (c, c),
                    b + 'attn.proj.bias': (c,),
                }
            )
            if linear or srs[i] > 1:
                k_sr = 1 if linear else srs[i]
                shapes.update(
                    {
                        b + 'attn.sr.weight': (c, c, k_sr, k_sr),
                        b + 'attn.sr.bias': (c,),
                        b + 'attn.norm.weight': (c,),
                        b + 'attn.norm.bias': (c,),
                    }
                )
            shapes.update(
                {
                    b + 'norm2.weight': (c,),
                    b + 'norm2.bias': (c,),
                    b + 'mlp.fc1.weight': (hidden, c),
                    b + 'mlp.fc1.bias': (hidden,),
                    b + 'mlp.dwconv.dwconv.weight': (hidden, 1, 3, 3),
                    b + 'mlp.dwconv.dwconv.bias': (hidden,),
                    b + 'mlp.fc2.weight': (c, hidden),
                    b + 'mlp.fc2.bias': (c,),
                }
            )
        shapes.update({f'norm{i + 1}.weight': (c,), f'norm{i + 1}.bias': (c,)})
    return shapes


def _conv(shapes, prefix, cout, cin, k, bias=True):
    shapes[prefix + 'weight'] = (cout, cin, k, k)
    if bias:
        shapes[prefix + 'bias'] = (cout,)


def fpn_shapes(in_channels, start_level, num_outs, extra_convs):
    """mmdet 2.x / mmseg 0.x ``FPN`` (no norm: the convs have biases).

    ``extra_convs``: its ``add_extra_convs`` -- False (max-pooled extra levels),
    True or ``'on_input'`` (the first extra conv reads the last input),
    ``'on_output'`` (it reads the last output)."""
    shapes = OrderedDict()
    used = in_channels[start_level:]
    for i, c in enumerate(used):
        _conv(shapes, f'neck.lateral_convs.{i}.conv.', 256, c, 1)
    for i in range(len(used)):
        _conv(shapes, f'neck.fpn_convs.{i}.conv.', 256, 256, 3)
    on_input = extra_convs in (True, 'on_input')
    for n in range(num_outs - len(used) if extra_convs else 0):
        _conv(
            shapes,
            f'neck.fpn_convs.{len(used) + n}.conv.',
            256,
            in_channels[-1] if n == 0 and on_input else 256,
            3,
        )
    return shapes


def retinanet_head_shapes(num_classes=80, anchors=9):
    shapes = OrderedDict()
    for branch in ('cls_convs', 'reg_convs'):
        for i in range(4):
            _conv(shapes, f'bbox_head.{branch}.{i}.conv.', 256, 256, 3)
    _conv(shapes, 'bbox_head.retina_cls.', anchors * num_classes, 256, 3)
    _conv(shapes, 'bbox_head.retina_reg.', anchors * 4, 256, 3)
    return shapes


def mask_rcnn_head_shapes(num_classes=80, anchors=3):
    shapes = OrderedDict()
    _conv(shapes, 'rpn_head.rpn_conv.', 256, 256, 3)
    _conv(shapes, 'rpn_head.rpn_cls.', anchors, 256, 1)
    _conv(shapes, 'rpn_head.rpn_reg.', anchors * 4, 256, 1)
    b = 'roi_head.bbox_head.'
    for name, (cout, cin) in (
        ('shared_fcs.0', (1024, 256 * 7 * 7)),
        ('shared_fcs.1', (1024, 1024)),
        ('fc_cls', (num_classes + 1, 1024)),  # background last
        ('fc_reg', (num_classes * 4, 1024)),
    ):
        shapes.update(
            {f'{b}{name}.weight': (cout, cin), f'{b}{name}.bias': (cout,)}
        )
    for i in range(4):
        _conv(shapes, f'roi_head.mask_head.convs.{i}.conv.', 256, 256, 3)
    # ConvTranspose2d: in, out
    shapes['roi_head.mask_head.upsample.weight'] = (256, 256, 2, 2)
    shapes['roi_head.mask_head.upsample.bias'] = (256,)
    _conv(shapes, 'roi_head.mask_head.conv_logits.', num_classes, 256, 1)
    return shapes


def sem_fpn_head_shapes(num_classes=150, channels=128, strides=(4, 8, 16, 32)):
    shapes = OrderedDict()
    for i, stride in enumerate(strides):
        length = max(1, int(math.log2(stride) - math.log2(strides[0])))
        for k in range(length):
            p = f'decode_head.scale_heads.{i}.{2 * k if i > 0 else k}.'
            _conv(
                shapes,
                p + 'conv.',
                channels,
                256 if k == 0 else channels,
                3,
                bias=False,
            )
            for name in ('weight', 'bias', 'running_mean', 'running_var'):
                shapes[p + 'bn.' + name] = (channels,)
            shapes[p + 'bn.num_batches_tracked'] = ()
    _conv(shapes, 'decode_head.conv_seg.', num_classes, channels, 1)
    return shapes


def _linear(shapes, prefix, cout, cin, bias=True):
    shapes[prefix + 'weight'] = (cout, cin)
    if bias:
        shapes[prefix + 'bias'] = (cout,)


def _norm(shapes, prefix, channels, buffers=False):
    shapes[prefix + 'weight'] = (channels,)
    shapes[prefix + 'bias'] = (channels,)
    if buffers:
        shapes[prefix + 'running_mean'] = (channels,)
        shapes[prefix + 'running_var'] = (channels,)
        shapes[prefix + 'num_batches_tracked'] = ()


def rpn_head_shapes(anchors=3):
    shapes = OrderedDict()
    _conv(shapes, 'rpn_head.rpn_conv.', 256, 256, 3)
    _conv(shapes, 'rpn_head.rpn_cls.', anchors, 256, 1)
    _conv(shapes, 'rpn_head.rpn_reg.', anchors * 4, 256, 1)
    return shapes


def cascade_head_shapes(num_classes=80, stages=3):
    """RPN + ``stages`` ConvFCBBoxHead (4conv1fc, SyncBN) and FCNMaskHead stages."""
    shapes = rpn_head_shapes()
    for s in range(stages):
        b = f'roi_head.bbox_head.{s}.'
        _linear(shapes, b + 'fc_cls.', num_classes + 1, 1024)
        _linear(shapes, b + 'fc_reg.', num_classes * 4, 1024)
        for i in range(4):
            _conv(
                shapes, f'{b}shared_convs.{i}.conv.', 256, 256, 3, bias=False
            )
            _norm(shapes, f'{b}shared_convs.{i}.bn.', 256, buffers=True)
        _linear(shapes, b + 'shared_fcs.0.', 1024, 256 * 7 * 7)
    for s in range(stages):
        m = f'roi_head.mask_head.{s}.'
        for i in range(4):
            _conv(shapes, f'{m}convs.{i}.conv.', 256, 256, 3)
        shapes[m + 'upsample.weight'] = (256, 256, 2, 2)
        shapes[m + 'upsample.bias'] = (256,)
        _conv(shapes, m + 'conv_logits.', num_classes, 256, 1)
    return shapes


def _gn_towers(shapes):
    for branch in ('cls_convs', 'reg_convs'):
        for i in range(4):
            p = f'bbox_head.{branch}.{i}.'
            _conv(shapes, p + 'conv.', 256, 256, 3, bias=False)
            _norm(shapes, p + 'gn.', 256)


def atss_head_shapes(num_classes=80, levels=5):
    shapes = OrderedDict()
    _gn_towers(shapes)
    _conv(shapes, 'bbox_head.atss_cls.', num_classes, 256, 3)
    _conv(shapes, 'bbox_head.atss_reg.', 4, 256, 3)
    _conv(shapes, 'bbox_head.atss_centerness.', 1, 256, 3)
    for i in range(levels):
        shapes[f'bbox_head.scales.{i}.scale'] = ()
    return shapes


def gfl_head_shapes(num_classes=80, levels=5, reg_max=16):
    shapes = OrderedDict()
    _gn_towers(shapes)
    _conv(shapes, 'bbox_head.gfl_cls.', num_classes, 256, 3)
    _conv(shapes, 'bbox_head.gfl_reg.', 4 * (reg_max + 1), 256, 3)
    for i in range(levels):
        shapes[f'bbox_head.scales.{i}.scale'] = ()
    shapes['bbox_head.integral.project'] = (reg_max + 1,)
    return shapes


def sparse_rcnn_head_shapes(num_classes=80, num_proposals=300, stages=6):
    shapes = OrderedDict()
    shapes['rpn_head.init_proposal_bboxes.weight'] = (num_proposals, 4)
    shapes['rpn_head.init_proposal_features.weight'] = (num_proposals, 256)
    for s in range(stages):
        b = f'roi_head.bbox_head.{s}.'
        _linear(shapes, b + 'fc_cls.', num_classes, 256)
        _linear(shapes, b + 'fc_reg.', 4, 256)
        shapes[b + 'attention.attn.in_proj_weight'] = (3 * 256, 256)
        shapes[b + 'attention.attn.in_proj_bias'] = (3 * 256,)
        _linear(shapes, b + 'attention.attn.out_proj.', 256, 256)
        _norm(shapes, b + 'attention_norm.', 256)
        d = b + 'instance_interactive_conv.'
        _linear(shapes, d + 'dynamic_layer.', 2 * 256 * 64, 256)
        _norm(shapes, d + 'norm_in.', 64)
        _norm(shapes, d + 'norm_out.', 256)
        _linear(shapes, d + 'fc_layer.', 256, 256 * 7 * 7)
        _norm(shapes, d + 'fc_norm.', 256)
        _norm(shapes, b + 'instance_interactive_conv_norm.', 256)
        _linear(shapes, b + 'ffn.layers.0.0.', 2048, 256)
        _linear(shapes, b + 'ffn.layers.1.', 256, 2048)
        _norm(shapes, b + 'ffn_norm.', 256)
        _linear(shapes, b + 'cls_fcs.0.', 256, 256, bias=False)
        _norm(shapes, b + 'cls_fcs.1.', 256)
        for i in (0, 3, 6):
            _linear(shapes, f'{b}reg_fcs.{i}.', 256, 256, bias=False)
            _norm(shapes, f'{b}reg_fcs.{i + 1}.', 256)
    return shapes


#: The release's neck of each detector (``FPN`` start_level, num_outs,
#: add_extra_convs) and its heads.
KINDS = {
    'retinanet': ((1, 5, 'on_input'), retinanet_head_shapes),
    'mask_rcnn': ((0, 5, False), mask_rcnn_head_shapes),
    'sem_fpn': ((0, 4, False), sem_fpn_head_shapes),
    'cascade_mask_rcnn': ((0, 5, False), cascade_head_shapes),
    'atss': ((1, 5, 'on_output'), atss_head_shapes),
    'gfl': ((1, 5, 'on_output'), gfl_head_shapes),
    'sparse_rcnn': ((0, 4, 'on_input'), sparse_rcnn_head_shapes),
}


def official_checkpoint(kind, arch='b0', seed=0):
    """``{'meta', 'state_dict'}`` of an official ``kind`` checkpoint (a key of
    :data:`KINDS`) with random values of a sensible scale."""
    if kind not in KINDS:
        raise ValueError(kind)
    dims = ARCHS[arch][0]
    shapes = OrderedDict(
        ('backbone.' + k, v) for k, v in backbone_shapes(arch).items()
    )
    (start_level, num_outs, extra_convs), heads = KINDS[kind]
    shapes.update(fpn_shapes(dims, start_level, num_outs, extra_convs))
    shapes.update(heads())
    gen = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape in shapes.items():
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(1000)
        elif key.endswith('running_var'):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith('running_mean'):
            state[key] = torch.rand(shape, generator=gen) * 0.2 - 0.1
        elif key.endswith('integral.project'):  # a fixed buffer
            state[key] = torch.linspace(0, shape[0] - 1, shape[0])
        elif key.endswith('init_proposal_bboxes.weight'):
            # normalised (cx, cy, w, h) inside the image
            cxcy = torch.rand((shape[0], 2), generator=gen) * 0.6 + 0.2
            wh = torch.rand((shape[0], 2), generator=gen) * 0.5 + 0.1
            state[key] = torch.cat([cxcy, wh], dim=1)
        elif len(shape) <= 1:  # norms, biases, the heads' per-level scales
            center = 1.0 if key.endswith(('weight', 'scale')) else 0.0
            state[key] = torch.rand(shape, generator=gen) * 0.4 - 0.2 + center
        else:
            fan_in = (
                math.prod(shape[1:]) if 'upsample' not in key else shape[0] * 4
            )
            bound = math.sqrt(3 / fan_in)
            state[key] = (torch.rand(shape, generator=gen) * 2 - 1) * bound
    meta = dict(
        mmdet_version='2.13.0',
        epoch=12,
        CLASSES=tuple(f'c{i}' for i in range(80)),
    )
    return dict(meta=meta, state_dict=state)
