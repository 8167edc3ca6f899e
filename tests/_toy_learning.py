"""Learning runs on the toy COCO shapes (circle / square / triangle): a shipped detector
config, made small enough to learn in a minute on one CPU thread.

What :func:`learning_config` changes in a config, and what it keeps:

* kept -- the detector family: the model type, neck, heads, assigners / matchers,
  samplers, losses, the optimizer type and its ``paramwise_cfg``, the optimizer wrapper
  (AMP -> ``CPUAmpOptimWrapper``, bfloat16 autocast without a GPU) and its gradient
  clipping, the data preprocessor;
* changed -- the backbone is PVT-v2-b0 from scratch (``arch='b0'``, no checkpoint, no
  drop path; the neck's / head's ``in_channels`` follow: b2's 64-128-320-512 -> b0's
  32-64-160-256), 3 classes, ``size`` x ``size`` images (a resize and a flip instead of
  the recipe's multi-scale / crop augmentation), ``lr`` with a linear warm-up over
  ``warmup`` iterations then a cosine decay, ``iters`` iterations of ``batch`` images,
  and fewer proposals / queries where ``queries`` says; evaluation on the toy val split.
"""

import copy
import os.path as osp

from mmengine.config import Config, ConfigDict

from pvtfpn_mm.engine.build import drop_pretrained

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLASSES = ('circle', 'square', 'triangle')
#: PVT-v2-b2's stage widths -> b0's.
B2_TO_B0 = {64: 32, 128: 64, 320: 160, 512: 256}
#: The transforms of a training pipeline the learning run keeps (the others resize /
#: crop at COCO's scale).
KEEP = ('LoadImageFromFile', 'LoadAnnotations', 'RandomFlip')
TAIL = ('FilterAnnotations', 'PackDetInputs')
#: Toy data of the learning runs.
DATA_ARGS = dict(num_train=64, num_val=16, seed=0, formats=('coco',))


def _b0_channels(channels):
    return [B2_TO_B0[c] for c in channels]


def _set_classes(model: ConfigDict, n: int) -> None:
    kind = model.type
    if kind in ('CascadeRCNN', 'SparseRCNN'):
        heads = model.roi_head.bbox_head
        for h in heads if isinstance(heads, list) else [heads]:
            h.num_classes = n
        if 'mask_head' in model.roi_head:
            model.roi_head.mask_head.num_classes = n
    elif kind == 'Mask2Former':
        head = model.panoptic_head
        head.num_things_classes = n
        head.num_stuff_classes = 0
        head.loss_cls.class_weight = [1.0] * n + [0.1]
        model.panoptic_fusion_head.num_things_classes = n
        model.panoptic_fusion_head.num_stuff_classes = 0
    else:  # ATSS, GFL, DINO
        model.bbox_head.num_classes = n


def _train_pipeline(pipeline, size):
    kept = [copy.deepcopy(t) for t in pipeline if t['type'] in KEEP]
    tail = [copy.deepcopy(t) for t in pipeline if t['type'] in TAIL]
    resize = dict(type='Resize', scale=(size, size), keep_ratio=True)
    # load, annotations, resize, flip, (filter,) pack
    return kept[:2] + [resize] + kept[2:] + tail


def _test_pipeline(pipeline, size):
    out = copy.deepcopy(pipeline)
    for t in out:
        if t['type'] == 'Resize':
            t['scale'] = (size, size)
    return out


def _narrow(model: ConfigDict, w: int) -> None:
    """The neck's and heads' 256 channels -> ``w`` (their fully connected layers and
    feed-forward widths in the same proportion); layers, stages and heads as they are."""
    model.neck.out_channels = w
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = w
    if model.type == 'CascadeRCNN':
        model.rpn_head.update(in_channels=w, feat_channels=w)
        for h in roi.bbox_head:
            h.update(in_channels=w, conv_out_channels=w, fc_out_channels=4 * w)
        roi.mask_roi_extractor.out_channels = w
        roi.mask_head.update(in_channels=w, conv_out_channels=w)
    elif model.type == 'SparseRCNN':
        model.rpn_head.proposal_feature_channel = w
        roi.proposal_feature_channel = w
        for h in roi.bbox_head:
            h.update(in_channels=w, feedforward_channels=8 * w)
            h.dynamic_conv_cfg.update(
                in_channels=w, feat_channels=w // 4, out_channels=w
            )
    else:
        raise ValueError(f'no narrowing for {model.type}')


def learning_config(
    path: str,
    coco_root: str,
    work_dir: str,
    *,
    iters: int,
    lr: float,
    size: int,
    batch: int = 2,
    warmup: int = 20,
    queries: int | None = None,
    width: int | None = None,
    eval_split: str = 'val',
    seed: int = 0,
) -> Config:
    """``path`` (relative to the repository) as a learning run on the toy data."""
    cfg = Config.fromfile(osp.join(ROOT, path))
    cfg.model = drop_pretrained(cfg.model)
    model = cfg.model
    model.backbone.update(arch='b0', drop_path_rate=0.0, init_cfg=None)
    if 'neck' in model:
        model.neck.in_channels = _b0_channels(model.neck.in_channels)
    if model.type == 'Mask2Former':
        head = model.panoptic_head
        head.in_channels = _b0_channels(head.in_channels)
        for t in model.data_preprocessor.batch_augments:
            t['size'] = (size, size)
        # of 12544 points a mask (the recipe's, for 1024-px images)
        model.train_cfg.num_points = 1024
    _set_classes(model, len(CLASSES))
    if width is not None:
        _narrow(model, width)
    if queries is not None:
        if model.type == 'SparseRCNN':
            model.rpn_head.num_proposals = queries
            model.test_cfg.rcnn.max_per_img = queries
        elif model.type == 'DINO':
            model.num_queries = queries
            model.test_cfg.max_per_img = queries
            model.dn_cfg.group_cfg.num_dn_queries = queries
        elif model.type == 'Mask2Former':
            model.panoptic_head.num_queries = queries
            model.test_cfg.max_per_image = queries
        else:
            raise ValueError(f'{model.type} has no queries to set')
    if model.type == 'CascadeRCNN':
        # a few objects an image: 64 proposals, 32 RoIs sampled a stage (of 2000 / 512)
        model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=64)
        for stage in model.train_cfg.rcnn:
            stage.sampler.num = 32
        model.test_cfg.rpn.update(nms_pre=200, max_per_img=64)
        model.test_cfg.rcnn.max_per_img = 20
    elif model.type in ('ATSS', 'GFL'):
        model.test_cfg.update(nms_pre=200, max_per_img=20)

    data = dict(
        data_root=coco_root + '/',
        metainfo=dict(classes=CLASSES),
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
    )
    dataset = cfg.train_dataloader.dataset
    cfg.train_dataloader = dict(
        batch_size=batch,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        batch_sampler=None,
        dataset=dict(
            type=dataset.type,
            **data,
            filter_cfg=dict(filter_empty_gt=True, min_size=0),
            pipeline=_train_pipeline(dataset.pipeline, size),
        ),
    )
    test = cfg.test_dataloader.dataset
    loader = dict(
        batch_size=4,
        num_workers=0,
        persistent_workers=False,
        drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type=test.type,
            **dict(
                data,
                ann_file=f'annotations/instances_{eval_split}2017.json',
                data_prefix=dict(img=f'{eval_split}2017/'),
            ),
            test_mode=True,
            pipeline=_test_pipeline(test.pipeline, size),
        ),
    )
    cfg.val_dataloader = loader
    cfg.test_dataloader = copy.deepcopy(loader)
    evaluator = dict(
        cfg.val_evaluator,
        ann_file=f'{coco_root}/annotations/instances_{eval_split}2017.json',
    )
    cfg.val_evaluator = evaluator
    cfg.test_evaluator = copy.deepcopy(evaluator)

    cfg.optim_wrapper.optimizer.lr = lr
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=iters, val_interval=iters
    )
    cfg.param_scheduler = [
        dict(
            type='LinearLR',
            start_factor=0.01,
            by_epoch=False,
            begin=0,
            end=warmup,
        ),
        dict(
            type='CosineAnnealingLR',
            eta_min=lr * 0.05,
            by_epoch=False,
            begin=warmup,
            end=iters,
        ),
    ]
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=batch)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    cfg.default_hooks.checkpoint = dict(
        type='AtomicCheckpointHook', by_epoch=False, interval=iters
    )
    cfg.log_processor = dict(by_epoch=False)
    cfg.env_cfg = dict(
        cudnn_benchmark=False, mp_cfg=dict(opencv_num_threads=1)
    )
    cfg.randomness = dict(seed=seed)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.work_dir = work_dir
    return cfg
