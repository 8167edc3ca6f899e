"""The quickstart job: toy data, then a PVT-v2-b0 detector and segmentor trained from
scratch on CPU, evaluated with mmdet's CocoMetric and mmseg's IoUMetric, with pictures
of their predictions next to the ground truth.

Everything goes to ``<out>`` (default ``work_dirs/quickstart``):
``det/`` and ``seg/`` (logs, checkpoint, ``vis/`` one picture per test image),
``det_predictions.png`` / ``seg_predictions.png`` (the first test images: ground truth
left, prediction right) and ``metrics.json``.
"""

import glob
import json
import numbers
import os
import os.path as osp
import time
from typing import Any

import numpy as np

from pvtfpn_mm.model_index import config_root

from .toy_data import toy_data_ready, write_toy_data

DET_CONFIG = osp.join(
    config_root(), 'quickstart', 'retinanet_pvtv2-b0_topdownfpn_toy-96.py'
)
SEG_CONFIG = osp.join(
    config_root(), 'quickstart', 'fpn_pvtv2-b0_topdownfpn_toy-96.py'
)
#: The toy dataset the quickstart configs are tuned for.
DATA_ARGS: dict[str, Any] = dict(
    num_train=200, num_val=50, img_size=96, seed=0
)
#: What a run of the quickstart gives (see the README); printed next to the results.
EXPECTED = {
    'coco/bbox_mAP': '0.75-0.85; chance: about 0',
    'mIoU': '90-93; chance: about 20 (all background)',
}


def _data_options(task: str, data_root: str) -> dict:
    if task == 'det':
        root = osp.join(data_root, 'coco') + '/'
        ann = osp.join(root, 'annotations', 'instances_val2017.json')
        return {
            'train_dataloader.dataset.data_root': root,
            'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root,
            'val_evaluator.ann_file': ann,
            'test_evaluator.ann_file': ann,
        }
    root = osp.join(data_root, 'ade', 'ADEChallengeData2016')
    return {
        f'{k}.dataset.data_root': root
        for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    }


def _montage(
    paths: list[str], out_file: str, rows: int = 6, scale: int = 2
) -> str | None:
    """Stacks the first ``rows`` pictures (each: ground truth | prediction, as mmdet's and
    mmseg's visualizers draw them) vertically, enlarged ``scale`` times, under a header."""
    import cv2

    read = [cv2.imread(p) for p in sorted(paths)[:rows]]
    images = [im for im in read if im is not None]
    if not images:
        return None
    width = max(im.shape[1] for im in images) * scale
    rows_ = []
    for im in images:
        im = cv2.resize(
            im, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST
        )
        rows_.append(
            cv2.copyMakeBorder(
                im,
                2,
                2,
                0,
                width - im.shape[1],
                cv2.BORDER_CONSTANT,
                value=(255, 255, 255),
            )
        )
    header = np.full((28, width, 3), 255, np.uint8)
    for text, x in (('ground truth', 8), ('prediction', width // 2 + 8)):
        cv2.putText(
            header,
            text,
            (x, 19),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.55,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    cv2.imwrite(out_file, np.concatenate([header] + rows_, axis=0))
    return out_file


def run_task(
    task: str, out_dir: str, data_root: str, iters: int | None = None
) -> dict:
    """Trains and tests one quickstart model; returns its metrics and timings."""
    from pvtfpn_mm.engine.tasks import test, train

    config = DET_CONFIG if task == 'det' else SEG_CONFIG
    work_dir = osp.join(out_dir, task)
    options = _data_options(task, data_root)
    if iters is not None:
        options.update(
            {
                'train_cfg.max_iters': iters,
                'train_cfg.val_interval': iters,
                'default_hooks.checkpoint.interval': iters,
            }
        )
    # The quickstart redoes its own runs: a new run may replace the last one's checkpoints
    # (SafeRunner refuses that otherwise; a concurrent quickstart still stops at the lock).
    options['allow_existing_checkpoints'] = True
    # mmengine's visualizer is a per-process singleton per name: one name per runner.
    start = time.time()
    runner = train(
        config,
        work_dir=work_dir,
        cfg_options={**options, 'visualizer.name': f'{task}_train'},
    )
    train_s = time.time() - start
    checkpoint = osp.join(work_dir, f'iter_{runner.iter}.pth')
    del runner
    vis_dir = osp.join(work_dir, 'vis')
    start = time.time()
    metrics = test(
        config,
        checkpoint,
        work_dir=work_dir,
        show_dir=vis_dir,
        show_interval=1,
        cfg_options={**options, 'visualizer.name': f'{task}_test'},
    )
    test_s = time.time() - start
    pattern = (
        '*.jpg'
        if task == 'det'
        else osp.join('vis_data', 'vis_image', '*.png')
    )
    picture = _montage(
        glob.glob(osp.join(vis_dir, pattern)),
        osp.join(out_dir, f'{task}_predictions.png'),
    )
    return dict(
        metrics={k: float(v) for k, v in metrics.items()},
        train_s=train_s,
        test_s=test_s,
        checkpoint=checkpoint,
        picture=picture,
        vis_dir=vis_dir,
    )


def main(
    out_dir: str = 'work_dirs/quickstart',
    data_root: str = 'data/toy',
    tasks=('det', 'seg'),
    det_iters: int | None = None,
    seg_iters: int | None = None,
    threads: int = 1,
) -> dict[str, dict]:
    """Runs the quickstart; prints and returns the results (also ``metrics.json``).

    ``threads``: torch's intra-op threads. One is the robust choice: with two, OpenMP's
    busy-waiting threads slow training down many times over whenever other processes
    share the cores; on an idle 2-core machine two are about 25% faster.
    """
    check_quickstart_args(tasks, det_iters, seg_iters, threads)
    import torch

    torch.set_num_threads(threads)
    total = time.time()
    out_dir, data_root = osp.abspath(out_dir), osp.abspath(data_root)
    os.makedirs(out_dir, exist_ok=True)
    if not toy_data_ready(data_root, **DATA_ARGS):
        # a toy dataset written with other arguments (it has its stamp) is replaced;
        # anything else in the folder is refused by write_toy_data
        replace = osp.isfile(osp.join(data_root, 'toy_data.json'))
        print(
            f'[quickstart] {"replacing" if replace else "writing"} the toy dataset in '
            f'{data_root}',
            flush=True,
        )
        write_toy_data(data_root, **DATA_ARGS, force=replace)
    results: dict[str, Any] = {}
    iters = dict(det=det_iters, seg=seg_iters)
    for task in tasks:
        name = (
            'RetinaNet detector' if task == 'det' else 'Semantic FPN segmentor'
        )
        print(
            f'[quickstart] training the PVT-v2-b0 {name} on CPU '
            f'({torch.get_num_threads()} threads)',
            flush=True,
        )
        results[task] = run_task(task, out_dir, data_root, iters[task])
    results['total_s'] = time.time() - total
    with open(osp.join(out_dir, 'metrics.json'), 'w') as f:
        json.dump(results, f, indent=2)
    print(summary(results), flush=True)
    return results


def check_quickstart_args(tasks, det_iters, seg_iters, threads) -> None:
    """Raises TypeError / ValueError naming a bad quickstart argument."""
    if isinstance(tasks, str) or not tasks or set(tasks) - {'det', 'seg'}:
        raise ValueError(
            f"tasks must be a non-empty sequence of 'det' / 'seg', got {tasks!r}"
        )
    for name, value in (
        ('det_iters', det_iters),
        ('seg_iters', seg_iters),
        ('threads', threads),
    ):
        if value is None and name != 'threads':
            continue
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(
                f'{name} must be an int, got {value!r} ({type(value).__name__})'
            )
        if value < 1:
            raise ValueError(
                f'--{name.replace("_", "-")} must be at least 1, got {value}'
            )


def summary(results: dict) -> str:
    lines = [
        '',
        '=' * 72,
        'pvtfpn_mm quickstart results (toy shapes, PVT-v2-b0 from scratch)',
        '=' * 72,
    ]
    keys = dict(
        det=['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'],
        seg=['mIoU', 'mAcc', 'aAcc'],
    )
    titles = dict(
        det='Detector  (RetinaNet, mmdet CocoMetric)',
        seg='Segmentor (Semantic FPN, mmseg IoUMetric)',
    )
    for task in ('det', 'seg'):
        if task not in results:
            continue
        r = results[task]
        lines.append(
            f'{titles[task]}: trained in {r["train_s"]:.0f} s, '
            f'tested in {r["test_s"]:.0f} s'
        )
        for k in keys[task]:
            if k in r['metrics']:
                hint = f'   (expected: {EXPECTED[k]})' if k in EXPECTED else ''
                lines.append(f'    {k:20s} {r["metrics"][k]:8.3f}{hint}')
        lines.append(
            f'    pictures (ground truth | prediction): {r["picture"]}'
        )
        lines.append(f'    all test images: {r["vis_dir"]}')
    lines.append(f'Total: {results["total_s"]:.0f} s')
    return '\n'.join(lines)
