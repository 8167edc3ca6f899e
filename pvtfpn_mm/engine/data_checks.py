"""Clear errors for datasets that come out empty or whose class names do not match their
annotation file, raised when the dataloader is built (before any training step).

mmengine's ``BaseDataset`` fails on an empty dataset with numpy's ``need at least one
array to concatenate``; mmdet's ``CocoDataset`` silently drops the config's class names
that are not categories of the annotation file (and with them their objects), and comes
out empty when none is.
"""

import json
import os
import os.path as osp
from collections.abc import Iterator, Mapping

#: numpy's message when mmengine serializes an empty data list.
EMPTY_DATASET_MESSAGE = 'need at least one array to concatenate'


class DatasetError(ValueError):
    """A dataset that cannot be trained or evaluated on as configured."""


def _join(root: str | None, path: str | None) -> str | None:
    if not path:
        return None
    return (
        path
        if (not root or osp.isabs(path) or '://' in path)
        else osp.join(root, path)
    )


def _describe(cfg: Mapping) -> str:
    parts = [str(cfg.get('type', 'dataset'))]
    for key in ('data_root', 'ann_file', 'data_prefix'):
        if cfg.get(key):
            parts.append(f'{key}={cfg[key]!r}')
    return f'{parts[0]}({", ".join(parts[1:])})'


def _coco_summary(path: str | None) -> dict | None:
    if not (path and path.endswith('.json') and osp.isfile(path)):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or 'images' not in data:
        return None
    return dict(
        images=len(data.get('images') or []),
        annotations=len(data.get('annotations') or []),
        categories=[c.get('name') for c in data.get('categories') or []],
    )


def class_mismatch_message(
    classes: list[str], categories: list[str], source: str
) -> str:
    unknown = [c for c in classes if c not in categories]
    return (
        f'{source}: the class names {unknown} of the config (metainfo classes='
        f'{tuple(classes)}) are not categories of the annotation file, whose '
        f'categories are {tuple(categories)}; images of those classes would be '
        'dropped or unlabelled. Set metainfo=dict(classes=...) to names of the file'
    )


def explain_empty(dataset_cfg: Mapping) -> str:
    """Why a dataset built from ``dataset_cfg`` is empty, as far as can be told."""
    cfg = dict(dataset_cfg)
    while isinstance(cfg.get('dataset'), Mapping):  # RepeatDataset and friends
        cfg = dict(cfg['dataset'])
    source = _describe(cfg)
    root = cfg.get('data_root')
    ann = _join(root, cfg.get('ann_file'))
    coco = _coco_summary(ann)
    metainfo = cfg.get('metainfo') or {}
    classes = (
        metainfo.get('classes') if isinstance(metainfo, Mapping) else None
    )
    if coco is not None:
        if coco['images'] == 0:
            return f'{source} is empty: the annotation file {ann!r} lists no image'
        if classes is not None and not set(classes) & set(coco['categories']):
            return class_mismatch_message(
                list(classes), coco['categories'], source
            )
        return (
            f'{source} is empty: none of the {coco["images"]} images of {ann!r} is '
            'left after filtering (filter_cfg, e.g. filter_empty_gt=True drops images '
            'without objects of the config\'s classes)'
        )
    if ann and not osp.exists(ann):
        return f'{source} is empty: the annotation file {ann!r} does not exist'
    prefix = cfg.get('data_prefix') or {}
    folders = (
        [_join(root, v) for v in prefix.values()]
        if isinstance(prefix, Mapping)
        else []
    )
    for folder in folders:
        if folder and osp.isdir(folder) and not os.listdir(folder):
            return f'{source} is empty: the folder {folder!r} holds no file'
        if folder and not osp.exists(folder):
            return f'{source} is empty: the folder {folder!r} does not exist'
    return f'{source} is empty: it lists no sample (check data_root, ann_file, data_prefix)'


def _leaves(dataset) -> Iterator:
    """The datasets inside dataset wrappers (``RepeatDataset``, ``ConcatDataset``...)."""
    inner = getattr(dataset, 'datasets', None)
    if isinstance(inner, (list, tuple)):
        for d in inner:
            yield from _leaves(d)
    elif getattr(dataset, 'dataset', None) is not None:
        yield from _leaves(dataset.dataset)
    else:
        yield dataset


def check_built_dataset(dataset) -> None:
    """Raises :class:`DatasetError` when a COCO-style dataset did not find all of the
    config's class names among the categories of its annotation file."""
    for leaf in _leaves(dataset):
        cat_ids = getattr(leaf, 'cat_ids', None)
        metainfo = getattr(leaf, 'metainfo', None) or {}
        classes = metainfo.get('classes')
        if cat_ids is None or classes is None or len(cat_ids) >= len(classes):
            continue
        ann = getattr(leaf, 'ann_file', None)
        coco = _coco_summary(ann)
        categories = coco['categories'] if coco else ['(could not read them)']
        raise DatasetError(
            class_mismatch_message(
                list(classes),
                categories,
                f'{type(leaf).__name__}(ann_file={ann!r})',
            )
        )
