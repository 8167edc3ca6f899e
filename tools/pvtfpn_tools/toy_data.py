"""A small synthetic dataset in the real COCO, ADE20K and NYU-depth formats.

Every scene is a textured background with one to three coloured shapes (circle, square,
triangle) that do not overlap. The same scenes are written as

* COCO instances (``coco/annotations/instances_{train,val}2017.json`` with boxes,
  polygon masks and areas; images in ``coco/{train,val}2017/``),
* the ADE20K folder layout (``ade/ADEChallengeData2016/{images,annotations}/
  {training,validation}``; label png: 0 = unlabelled (ignored with
  ``reduce_zero_label=True``), 1 = background, 2.. = the shapes),
* mmseg's NYU depth layout (``nyu/{images,annotations}/{train,test}``; 16-bit png depth
  in millimetres, as ``LoadDepthAnnotation(depth_rescale_factor=1e-3)`` reads it).

So the quickstart configs differ from the COCO / ADE20K / NYU ones only in ``data_root``,
the class names and the schedule. Everything is a pure function of ``seed`` and the
image index: writing twice gives byte-identical files.
"""

import json
import numbers
import os
import os.path as osp
import shutil
import tempfile
from collections.abc import Sequence

import cv2
import numpy as np

#: The shape classes, in COCO category-id order (ids start at 1).
CLASSES = ('circle', 'square', 'triangle')
#: Semantic-segmentation classes after ``reduce_zero_label`` (label png value - 1).
SEG_CLASSES = ('background',) + CLASSES
SEG_PALETTE = [[120, 120, 120], [220, 60, 50], [60, 190, 70], [50, 90, 220]]
#: Base RGB colour of each shape class (jittered per object).
_CLASS_RGB = {
    'circle': (220, 60, 50),
    'square': (60, 190, 70),
    'triangle': (50, 90, 220),
}
FORMATS = ('coco', 'ade', 'nyu')
_SPLITS = {'train': 0, 'val': 1}


def _polygon(
    cls: str, cx: float, cy: float, size: float, angle: float, aspect: float
) -> np.ndarray:
    """Vertices (N, 2) of one shape of diameter ``size`` centred at (cx, cy)."""
    r = size / 2
    if cls == 'circle':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        pts = np.stack([r * np.cos(t) * aspect, r * np.sin(t) / aspect], 1)
    elif cls == 'square':
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * r * 0.8
        pts[:, 0] *= aspect
        pts[:, 1] /= aspect
    else:
        t = np.pi / 2 + np.array([0, 2, 4]) * np.pi / 3
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    c, s = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]])
    return pts + np.array([cx, cy])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, low-saturation colour gradient with some blobs and pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(80, 175, 3), rng.uniform(80, 175, 3)
    d = rng.uniform(-1, 1, 2)
    w = np.clip(
        (xx * d[0] + yy * d[1] - min(0, d[0]) - min(0, d[1]))
        / (abs(d[0]) + abs(d[1]) + 1e-6),
        0,
        1,
    )[..., None]
    img = c0 * (1 - w) + c1 * w
    for _ in range(3):  # grey blobs: texture that is not a shape
        cx, cy = rng.uniform(0, size, 2)
        rad = rng.uniform(0.08, 0.25) * size
        blob = np.exp(
            -((xx * size - cx) ** 2 + (yy * size - cy) ** 2) / (2 * rad**2)
        )
        img = img + blob[..., None] * rng.uniform(-30, 30)
    return img + rng.normal(0, 6, img.shape)


def make_scene(
    seed: int,
    split: str,
    index: int,
    img_size: int = 96,
    max_objects: int = 3,
    size_range=(0.22, 0.45),
) -> dict:
    """One deterministic scene: RGB image, instances (class, polygon, mask), depth.

    Returns:
        dict: ``img`` (H, W, 3) uint8 RGB, ``objects`` (list of dicts with ``label``
        (0-based), ``polygon`` (N, 2) int, ``mask`` (H, W) bool), ``depth_mm`` (H, W)
        uint16.
    """
    rng = np.random.default_rng([seed, _SPLITS[split], index])
    img = _background(rng, img_size)
    yy = np.mgrid[0:img_size, 0:img_size][0].astype(np.float32) / img_size
    # a floor plane: far at the top, near at the bottom
    depth = 7000.0 - 4000.0 * yy
    taken = np.zeros((img_size, img_size), bool)
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(50):
            label = int(rng.integers(len(CLASSES)))
            size = rng.uniform(*size_range) * img_size
            cx, cy = rng.uniform(0, img_size, 2)
            pts = _polygon(
                CLASSES[label],
                cx,
                cy,
                size,
                rng.uniform(0, 2 * np.pi),
                rng.uniform(0.8, 1.25),
            )
            pts = np.round(pts).astype(np.int32)
            if pts.min() < 1 or pts.max() > img_size - 2:
                continue
            mask = np.zeros((img_size, img_size), np.uint8)
            cv2.fillPoly(mask, [pts], 1)
            mask = mask.astype(bool)
            grown = (
                cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8))
                > 0
            )
            if (grown & taken).any() or mask.sum() < 16:
                continue
            taken |= mask
            rgb = np.array(_CLASS_RGB[CLASSES[label]], float) + rng.uniform(
                -25, 25, 3
            )
            shade = 1 + 0.15 * (yy - yy[mask].mean())  # mild vertical shading
            img[mask] = rgb[None] * shade[mask][:, None]
            depth[mask] = 1500.0 * (size_range[1] * img_size / size)
            objects.append(dict(label=label, polygon=pts, mask=mask))
            break
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return dict(img=img, objects=objects, depth_mm=depth.astype(np.uint16))


def _write_jpg(path: str, rgb: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode(
        '.jpg', rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    assert ok, path
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


def _write_png(path: str, array: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode('.png', array)
    assert ok, path
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


def _coco_annotation(obj: dict, ann_id: int, image_id: int) -> dict:
    ys, xs = np.nonzero(obj['mask'])
    x0, y0, x1, y1 = (
        int(xs.min()),
        int(ys.min()),
        int(xs.max()) + 1,
        int(ys.max()) + 1,
    )
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=obj['label'] + 1,
        segmentation=[[float(v) for v in obj['polygon'].reshape(-1)]],
        area=float(obj['mask'].sum()),
        bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        iscrowd=0,
    )


#: The range of image sides write_toy_data accepts (PVT-v2 needs at least 29 pixels; the
#: shapes need room).
IMG_SIZE_RANGE = (32, 2048)


def _check_count(name: str, value, minimum: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(
            f'{name} must be an int, got {value!r} ({type(value).__name__})'
        )
    if value < minimum:
        raise ValueError(f'{name} must be at least {minimum}, got {value}')
    return int(value)


def check_toy_data_args(num_train, num_val, img_size, seed, formats) -> None:
    """Raises TypeError / ValueError naming a bad argument of :func:`write_toy_data`."""
    _check_count('num_train (--num-train)', num_train)
    _check_count('num_val (--num-val)', num_val)
    _check_count('img_size (--size)', img_size, IMG_SIZE_RANGE[0])
    if img_size > IMG_SIZE_RANGE[1]:
        raise ValueError(
            f'img_size (--size) must be at most {IMG_SIZE_RANGE[1]}, got '
            f'{img_size}'
        )
    _check_count('seed (--seed)', seed, 0)
    if isinstance(formats, str) or not formats:
        raise ValueError(
            f'formats must be a non-empty list of {FORMATS}, got {formats!r}'
        )
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(
            f'unknown formats {sorted(unknown)}; choose from {FORMATS}'
        )


def _format_dirs(root: str) -> dict[str, str]:
    """The top-level folder of each format under ``root``."""
    return dict(
        coco=osp.join(root, 'coco'),
        ade=osp.join(root, 'ade'),
        nyu=osp.join(root, 'nyu'),
    )


def write_toy_data(
    root: str,
    num_train: int = 200,
    num_val: int = 50,
    img_size: int = 96,
    seed: int = 0,
    formats: Sequence[str] = FORMATS,
    force: bool = False,
) -> dict[str, str]:
    """Writes the toy dataset under ``root``; returns the data root of each format.

    The dataset is written into a fresh folder inside ``root`` and then moved into
    place, replacing each format's folder as a whole: nothing of an earlier dataset
    (e.g. more images) stays, and an interrupted run leaves the earlier dataset as it
    was (a ``.toy_data.*`` folder at most).

    Args:
        root (str): Output folder (created).
        num_train (int): Training images, >= 1. Defaults to 200.
        num_val (int): Validation images (COCO val2017 / ADE validation / NYU test),
            >= 1. Defaults to 50.
        img_size (int): Side of the square images, 32 .. 2048. Defaults to 96.
        seed (int): Seed, >= 0; the output is a pure function of the arguments.
        formats (Sequence[str]): Any of ``'coco'``, ``'ade'``, ``'nyu'``.
        force (bool): Replace the formats' folders when ``root`` already has them.
            Defaults to False: refuse.

    Raises:
        TypeError, ValueError: A bad argument (named).
        FileExistsError: ``root`` already holds one of the formats' folders and
            ``force`` is False.
    """
    check_toy_data_args(num_train, num_val, img_size, seed, formats)
    root = osp.abspath(osp.expanduser(root))
    targets = {f: d for f, d in _format_dirs(root).items() if f in formats}
    existing = [d for d in targets.values() if osp.lexists(d)]
    if existing and not force:
        raise FileExistsError(
            f'{root} already holds {", ".join(osp.basename(d) + "/" for d in existing)}; '
            'pass --force (force=True) to replace them with a fresh toy dataset, or '
            'choose another --out'
        )
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.toy_data.new-', dir=root)
    try:
        _write(staging, num_train, num_val, img_size, seed, formats)
        for fmt, target in targets.items():
            old = None
            if osp.lexists(target):
                old = tempfile.mkdtemp(
                    prefix=f'.toy_data.old-{fmt}-', dir=root
                )
                os.replace(target, osp.join(old, fmt))
            os.replace(osp.join(staging, fmt), target)
            if old is not None:
                shutil.rmtree(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    stamp = osp.join(root, 'toy_data.json')
    with open(stamp + '.tmp', 'w') as f:
        json.dump(_stamp(num_train, num_val, img_size, seed, formats), f)
    os.replace(stamp + '.tmp', stamp)
    roots = dict(
        coco=osp.join(root, 'coco'),
        ade=osp.join(root, 'ade', 'ADEChallengeData2016'),
        nyu=osp.join(root, 'nyu'),
    )
    return {k: v for k, v in roots.items() if k in formats}


def _write(
    root: str,
    num_train: int,
    num_val: int,
    img_size: int,
    seed: int,
    formats: Sequence[str],
) -> None:
    roots = dict(
        coco=osp.join(root, 'coco'),
        ade=osp.join(root, 'ade', 'ADEChallengeData2016'),
        nyu=osp.join(root, 'nyu'),
    )
    categories = [
        dict(id=i + 1, name=n, supercategory='shape')
        for i, n in enumerate(CLASSES)
    ]
    for split, count in (('train', num_train), ('val', num_val)):
        images: list[dict] = []
        annotations: list[dict] = []
        ade_split = 'training' if split == 'train' else 'validation'
        nyu_split = 'train' if split == 'train' else 'test'
        for i in range(count):
            scene = make_scene(seed, split, i, img_size)
            image_id = i + 1
            if 'coco' in formats:
                name = f'{image_id:012d}.jpg'
                _write_jpg(
                    osp.join(roots['coco'], f'{split}2017', name), scene['img']
                )
                images.append(
                    dict(
                        id=image_id,
                        file_name=name,
                        width=img_size,
                        height=img_size,
                    )
                )
                for obj in scene['objects']:
                    annotations.append(
                        _coco_annotation(obj, len(annotations) + 1, image_id)
                    )
            if 'ade' in formats:
                stem = f'ADE_{split}_{image_id:08d}'
                label = np.ones((img_size, img_size), np.uint8)
                for obj in scene['objects']:
                    label[obj['mask']] = obj['label'] + 2
                _write_jpg(
                    osp.join(roots['ade'], 'images', ade_split, stem + '.jpg'),
                    scene['img'],
                )
                _write_png(
                    osp.join(
                        roots['ade'], 'annotations', ade_split, stem + '.png'
                    ),
                    label,
                )
            if 'nyu' in formats:
                stem = f'scene_{image_id:05d}'
                _write_jpg(
                    osp.join(roots['nyu'], 'images', nyu_split, stem + '.jpg'),
                    scene['img'],
                )
                _write_png(
                    osp.join(
                        roots['nyu'], 'annotations', nyu_split, stem + '.png'
                    ),
                    scene['depth_mm'],
                )
        if 'coco' in formats:
            coco = dict(
                info=dict(
                    description='pvtfpn_mm toy shapes',
                    version='1.0',
                    year=2024,
                    contributor='pvtfpn_mm',
                    date_created='2024-01-01',
                ),
                licenses=[dict(id=1, name='CC0', url='')],
                images=images,
                annotations=annotations,
                categories=categories,
            )
            path = osp.join(
                roots['coco'], 'annotations', f'instances_{split}2017.json'
            )
            os.makedirs(osp.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                json.dump(coco, f)


def _stamp(num_train, num_val, img_size, seed, formats) -> dict:
    return dict(
        generator='pvtfpn_mm.tools_lib.toy_data',
        version=1,
        num_train=num_train,
        num_val=num_val,
        img_size=img_size,
        seed=seed,
        formats=sorted(formats),
    )


def toy_data_ready(
    root: str,
    num_train: int = 200,
    num_val: int = 50,
    img_size: int = 96,
    seed: int = 0,
    formats: Sequence[str] = FORMATS,
) -> bool:
    """Whether ``root`` holds the toy dataset written with exactly these arguments."""
    try:
        with open(osp.join(root, 'toy_data.json')) as f:
            return json.load(f) == _stamp(
                num_train, num_val, img_size, seed, formats
            )
    except (OSError, ValueError):
        return False
