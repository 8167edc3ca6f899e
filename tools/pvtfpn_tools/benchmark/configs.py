"""The ``configs`` mode of ``tools/benchmark.py``: what each config's model costs.

Per config: parameters; FLOPs at the config's test size (mmengine's
:class:`~mmengine.analysis.FlopAnalyzer` on the model's ``'tensor'`` forward, as
mmdet's / mmseg's ``get_flops``; one multiply-add = one flop; ``scaled_dot_product_attention``
counted, see :mod:`.flops`); inference latency (``model.test_step`` -- preprocessing,
forward, box decoding / NMS / mask pasting or resizing -- on one image of the test size,
batch 1); the time of a training step (``model.train_step``: forward, loss, backward and
the config's optimizer step) at the config's batch per GPU and training size; the peak
memory of both. CUDA when present, else the CPU.

Sizes: detection -- the test pipeline's ``Resize`` scale as an image (1333 x 800 ->
800 x 1333, padded to 800 x 1344 by the preprocessor) for inference and training;
segmentation / depth -- the training crop (``crop_size``, 512 x 512 for ADE20K: the
papers' FLOPs size) for both; classification -- the test crop (224). ``size`` overrides
all of them (cheap runs).

Weights are the models' own initialization (``Pretrained`` init_cfgs are dropped:
nothing is loaded or downloaded), so the number of detections after the score
threshold -- and with it the NMS and mask-head work -- is not a trained model's; FLOPs of
two-stage detectors depend on the number of proposals in the same way (as in mmdet's
``get_flops``). Latencies are medians of rounds that interleave the configs measured
together (``interleave``); CPU memory is measured in a fresh process per config.
"""

import copy
import gc
import glob
import os
import os.path as osp
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from mmengine.model import BaseModel

from pvtfpn_mm.engine.build import (
    TASKS,
    build_model_from_config,
    drop_pretrained,
    init_quietly,
    load_model_config,
    task_of,
)
from pvtfpn_mm.model_index import config_root

from . import BenchmarkError
from .common import (
    PeakMemory,
    Progress,
    add_device_arguments,
    default_device,
    describe_machine,
    device_from_args,
    interleaved_rounds,
    markdown_table,
    release_freed_memory,
    report_memory,
    run_memory_child,
    summarize,
    write_csv,
    write_text,
)

Size = tuple[int, int]

#: Output columns: key -> Markdown header.
COLUMNS = {
    'config': 'config',
    'params_m': 'params (M)',
    'flops_g': 'FLOPs (G)',
    'test_size': 'test size',
    'infer_ms': 'inference (ms)',
    'train_ms': 'train step (ms)',
    'train_batch': 'train batch',
    'train_size': 'train size',
    'infer_mem_mib': 'inference peak (MiB)',
    'train_mem_mib': 'train peak (MiB)',
}
CSV_COLUMNS = list(COLUMNS) + [
    'task',
    'infer_ms_min',
    'infer_ms_max',
    'train_ms_min',
    'train_ms_max',
    'device',
    'threads',
    'error',
]


# ------------------------------------------------------------------------ configs


def all_configs(root: str | None = None) -> list[str]:
    """Every config under ``root`` (default :func:`config_root`) except ``_base_``."""
    root = root or config_root()
    found = glob.glob(osp.join(root, '**', '*.py'), recursive=True)
    return sorted(
        p for p in found if '_base_' not in osp.relpath(p, root).split(os.sep)
    )


def is_complete(config: str) -> bool:
    """Whether ``config`` is a whole mmdet / mmseg / mmpretrain config (with a model and
    a default scope), not a fragment to inherit from."""
    from mmengine.config import Config

    cfg = Config.fromfile(config)
    return 'model' in cfg and cfg.get('default_scope') in TASKS


def _pipeline(cfg, split: str) -> list[dict]:
    loader = cfg.get(f'{split}_dataloader') or {}
    dataset = loader.get('dataset', {})
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return list(dataset.get('pipeline') or cfg.get(f'{split}_pipeline') or [])


def _find(pipeline: Sequence[dict], types: Sequence[str], key: str):
    for step in pipeline:
        if step.get('type') in types and step.get(key) is not None:
            return step[key]
        for inner in step.get('transforms', []) or []:  # TestTimeAug etc.
            found = _find(
                inner if isinstance(inner, list) else [inner], types, key
            )
            if found is not None:
                return found
    return None


def _hw(value) -> Size:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def sizes_of(cfg) -> tuple[Size, Size]:
    """``(test size, train size)``, each ``(H, W)`` (see the module doc)."""
    task = task_of(cfg)
    if task == 'mmdet':
        scale = _find(_pipeline(cfg, 'test'), ('Resize',), 'scale')
        if scale is None:
            raise ValueError(
                f'config {cfg.filename!r}: no Resize scale in the test pipeline'
            )
        w, h = _hw(scale)
        return (h, w), (h, w)
    if task == 'mmseg':
        crop = cfg.get('crop_size') or cfg.model.get(
            'data_preprocessor', {}
        ).get('size')
        if crop is None:
            crop = _find(_pipeline(cfg, 'train'), ('RandomCrop',), 'crop_size')
        if crop is None:
            raise ValueError(f'config {cfg.filename!r}: no crop_size')
        return _hw(crop), _hw(crop)
    test = _find(_pipeline(cfg, 'test'), ('CenterCrop',), 'crop_size') or 224
    train = (
        _find(_pipeline(cfg, 'train'), ('RandomResizedCrop',), 'scale') or test
    )
    return _hw(test), _hw(train)


# --------------------------------------------------------------------------- data


def _det_sample(
    size: Size, train: bool, with_mask: bool, num_classes: int, gen
):
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    h, w = size
    sample = DetDataSample(
        metainfo=dict(img_shape=size, ori_shape=size, scale_factor=(1.0, 1.0))
    )
    if train:
        n = 4
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
        wh = (torch.rand(n, 2, generator=gen) * 0.3 + 0.1) * torch.tensor(
            [w, h]
        )
        boxes = torch.cat([xy, xy + wh], dim=1)
        gt = InstanceData(
            bboxes=boxes,
            labels=torch.randint(0, num_classes, (n,), generator=gen),
        )
        if with_mask:
            masks = np.zeros((n, h, w), dtype=np.uint8)
            for m, (x1, y1, x2, y2) in zip(
                masks, boxes.int().tolist(), strict=True
            ):
                m[y1:y2, x1:x2] = 1
            gt.masks = BitmapMasks(masks, h, w)
        sample.gt_instances = gt
    return sample


def _seg_sample(size: Size, train: bool, depth: bool, num_classes: int, gen):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    sample = SegDataSample(
        metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size)
    )
    if train:
        if depth:
            sample.gt_depth_map = PixelData(
                data=torch.rand(1, *size, generator=gen) * 5
            )
        else:
            sample.gt_sem_seg = PixelData(
                data=torch.randint(0, num_classes, (1, *size), generator=gen)
            )
    return sample


def _cls_sample(train: bool, num_classes: int, gen):
    from mmpretrain.structures import DataSample

    sample = DataSample()
    if train:
        sample.set_gt_label(
            int(torch.randint(0, num_classes, (1,), generator=gen))
        )
    return sample


def _num_classes(model: nn.Module) -> int:
    for name in ('bbox_head', 'roi_head', 'decode_head', 'head'):
        head = getattr(model, name, None)
        if name == 'roi_head' and head is not None:
            head = head.bbox_head
        if head is not None and hasattr(head, 'num_classes'):
            return max(int(head.num_classes), 1)
    return 1


def make_batch(
    model: nn.Module,
    task: str,
    size: Size,
    batch: int,
    train: bool,
    seed: int = 0,
) -> dict:
    """A batch of random uint8 images (and random targets when ``train``) in the form
    the model's data preprocessor takes (what a dataloader gives)."""
    gen = torch.Generator().manual_seed(seed)
    classes = _num_classes(model)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(
            torch.randint(0, 256, (3, *size), generator=gen, dtype=torch.uint8)
        )
        if task == 'mmdet':
            with_mask = bool(getattr(model, 'with_mask', False))
            samples.append(_det_sample(size, train, with_mask, classes, gen))
        elif task == 'mmseg':
            depth = type(model).__name__ == 'DepthEstimator'
            samples.append(_seg_sample(size, train, depth, classes, gen))
        else:
            samples.append(_cls_sample(train, classes, gen))
    return dict(inputs=inputs, data_samples=samples)


# ------------------------------------------------------------------------ measures


class _TensorForward(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a module (for FlopAnalyzer)."""

    def __init__(self, model: nn.Module, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs):
        return self.model(inputs, self.data_samples, mode='tensor')


def count_flops(model: 'BaseModel', batch: dict) -> int:
    """Flops (multiply-adds) of the ``'tensor'`` forward on the preprocessed ``batch``."""
    from mmengine.analysis import FlopAnalyzer

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            data = model.data_preprocessor(copy.deepcopy(batch), False)
            analyzer = FlopAnalyzer(
                _TensorForward(model, data['data_samples']), (data['inputs'],)
            )
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            return int(analyzer.total())
    finally:
        model.train(was_training)


def build_for_benchmark(
    config: str, device: torch.device, cfg_options: dict | None = None
):
    """``(cfg, model, optim_wrapper)``: the config's model (no pretrained weights, SyncBN
    reverted, initialized, on ``device``) and its optimizer wrapper."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper

    cfg = load_model_config(config, cfg_options)
    cfg.model = drop_pretrained(cfg.model)
    model = revert_sync_batchnorm(build_model_from_config(cfg))
    init_quietly(model)
    model.to(device)
    optim_wrapper = build_optim_wrapper(
        model, copy.deepcopy(cfg.optim_wrapper)
    )
    return cfg, model, optim_wrapper


class Candidate:
    """One config being measured: its model, data and step functions."""

    def __init__(
        self,
        config: str,
        device: torch.device,
        size: Size | None = None,
        train_batch: int | None = None,
    ):
        self.config = config
        self.name = osp.splitext(osp.basename(config))[0]
        self.device = device
        self.cfg, self.model, self.optim_wrapper = build_for_benchmark(
            config, device
        )
        self.task = task_of(self.cfg)
        test_size, train_size = sizes_of(self.cfg)
        preprocessor = getattr(self.model, 'data_preprocessor', None)
        if size and getattr(preprocessor, 'size', None) is not None:
            # mmseg's preprocessor pads training batches to the crop size: with a
            # size override the inputs stay that size
            preprocessor.size = tuple(size)  # type: ignore[union-attr]
        self.test_size = size or test_size
        self.train_size = size or train_size
        self.train_batch = train_batch or int(
            self.cfg.train_dataloader.batch_size
        )
        self.test_batch = make_batch(
            self.model, self.task, self.test_size, 1, False
        )
        self.train_data = make_batch(
            self.model,
            self.task,
            self.train_size,
            self.train_batch,
            True,
            seed=1,
        )

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def flops(self) -> int:
        return count_flops(self.model, self.test_batch)

    def infer(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.model.test_step(copy.copy(self.test_batch))

    def train_step(self) -> None:
        self.model.train()
        self.model.train_step(copy.copy(self.train_data), self.optim_wrapper)


def memory_child(
    config: str,
    size: Size | None,
    train_batch: int | None,
    threads: int,
    skip_train: bool,
) -> dict[str, float | None]:
    """Peak memory (MiB) of one inference and one training step of ``config`` on the CPU,
    measured in this (fresh) process; prints and returns ``{'infer', 'train'}``."""
    release_freed_memory()
    torch.set_num_threads(threads)
    cpu = torch.device('cpu')
    cand = Candidate(config, cpu, size, train_batch)
    cand.infer()  # one-time allocations (lazy init, caches) are not the step's
    gc.collect()
    with PeakMemory(cpu) as infer:
        cand.infer()
    result = dict(infer=infer.mib, train=None)
    if not skip_train:
        gc.collect()
        with PeakMemory(
            cpu
        ) as train:  # the first step creates the optimizer state
            cand.train_step()
        result['train'] = train.mib
    report_memory(result)
    return result


def _memory_in_child(
    config: str,
    size: Size | None,
    train_batch: int | None,
    threads: int,
    skip_train: bool,
) -> dict[str, float | None]:
    return run_memory_child(
        __name__,
        'memory_child',
        [config, size, train_batch, threads, skip_train],
    )


def _mib_str(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _build(
    config: str,
    device: torch.device,
    size: Size | None,
    train_batch: int | None,
    skip_flops: bool,
    progress: Progress,
) -> tuple[Candidate, dict[str, Any]]:
    """The :class:`Candidate` of ``config`` and its row (sizes, params, FLOPs)."""
    cand = Candidate(config, device, size, train_batch)
    row = dict(
        config=cand.name,
        task=cand.task,
        device=device.type,
        threads=torch.get_num_threads(),
        params_m=round(cand.params / 1e6, 2),
        test_size='x'.join(map(str, cand.test_size)),
        train_size='x'.join(map(str, cand.train_size)),
        train_batch=cand.train_batch,
    )
    progress.step(f'{cand.name}: built')
    if not skip_flops:
        row['flops_g'] = round(cand.flops() / 1e9, 2)
        progress.step(f'{cand.name}: FLOPs')
    return cand, row


def _failure(name: str, error: Exception, progress: Progress) -> str:
    """The one-line message of ``error`` (what failed for ``name``); the traceback goes
    to stderr and the failure to the progress."""
    traceback.print_exc()
    message = f'{type(error).__name__}: {error}'.splitlines()[0][:300]
    progress.step(f'{name}: FAILED: {message}')
    return message


def _time_group(
    group: Sequence[Candidate],
    group_rows: Sequence[dict[str, Any]],
    device: torch.device,
    progress: Progress,
    rounds: int,
    train_rounds: int,
    skip_train: bool,
    skip_memory: bool,
    size: Size | None,
    train_batch: int | None,
) -> None:
    """Times ``group`` (interleaved) and measures its memory into ``group_rows``."""

    def timed(key: str, what: str, step: str, n: int) -> None:
        # the medians (and spread) of n interleaved rounds of each candidate's `step`
        times = interleaved_rounds(
            {c.name: getattr(c, step) for c in group},
            n,
            device,
            on_call=lambda name: progress.step(f'{name}: {what}'),
        )
        for cand, row in zip(group, group_rows, strict=True):
            stats = summarize(times[cand.name])
            for suffix, stat in (
                ('', 'median'),
                ('_min', 'min'),
                ('_max', 'max'),
            ):
                row[f'{key}{suffix}'] = round(stats[stat], 1)

    timed('infer_ms', 'inference', 'infer', rounds)
    if not skip_train:
        timed('train_ms', 'train step', 'train_step', train_rounds)
    if skip_memory:
        return
    for cand, row in zip(group, group_rows, strict=True):
        if device.type == 'cuda':
            with PeakMemory(device) as infer:
                cand.infer()
            mem = dict(infer=infer.mib, train=None)
            if not skip_train:
                with PeakMemory(device) as train:
                    cand.train_step()
                mem['train'] = train.mib
        else:
            mem = _memory_in_child(
                cand.config,
                size,
                train_batch,
                torch.get_num_threads(),
                skip_train,
            )
        row.update(
            infer_mem_mib=_mib_str(mem['infer']),
            train_mem_mib=_mib_str(mem['train']),
        )
        progress.step(f'{cand.name}: memory')


def measure(
    configs: Sequence[str],
    device: torch.device | None = None,
    size: Size | None = None,
    train_batch: int | None = None,
    rounds: int = 5,
    train_rounds: int = 3,
    interleave: int = 3,
    skip_flops: bool = False,
    skip_train: bool = False,
    skip_memory: bool = False,
    on_group: Callable[[list[dict[str, Any]]], object] | None = None,
) -> list[dict[str, Any]]:
    """Measures ``configs`` (see the module doc); one row (dict of :data:`CSV_COLUMNS`)
    per config, in order. ``interleave`` configs are held and timed together.

    A config that fails (to build or to run) does not end the run: its group's rows get
    an ``error`` (the exception, its traceback on stderr) and the next group goes on.
    ``on_group(rows)`` is called with all rows so far after every group (to save them:
    a long run killed half-way keeps what it measured).
    """
    device = device or default_device()
    per_group = (
        1
        + (not skip_flops)
        + (rounds + 1)
        + (0 if skip_train else train_rounds + 1)
        + (not skip_memory)
    )
    progress = Progress(
        total=len(configs) * per_group, description='benchmark'
    )
    rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(configs), interleave):
            group: list[Candidate] = []
            group_rows: list[dict[str, Any]] = []
            for config in configs[start : start + interleave]:
                try:
                    cand, row = _build(
                        config, device, size, train_batch, skip_flops, progress
                    )
                except Exception as error:  # reported; the run goes on
                    name = osp.splitext(osp.basename(config))[0]
                    rows.append(
                        dict(
                            config=name,
                            device=device.type,
                            threads=torch.get_num_threads(),
                            error=_failure(name, error, progress),
                        )
                    )
                    continue
                group.append(cand)
                group_rows.append(row)
                rows.append(row)
                del cand
            try:
                if group:
                    _time_group(
                        group,
                        group_rows,
                        device,
                        progress,
                        rounds,
                        train_rounds,
                        skip_train,
                        skip_memory,
                        size,
                        train_batch,
                    )
            except Exception as error:  # reported; the run goes on
                # the group is timed together: all of it is marked; what it
                # measured before the failure stays
                message = _failure(
                    '+'.join(c.name for c in group), error, progress
                )
                for row in group_rows:
                    row['error'] = message
            if on_group is not None:
                on_group(rows)
            group.clear()
            gc.collect()
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    finally:
        progress.close()
    return rows


_MEMORY_KIND = {
    False: 'CUDA memory allocated',
    True: 'peak resident set, a fresh process',
}


def report(
    rows: Sequence[dict[str, Any]],
    machine: dict[str, Any],
    rounds: int,
    train_rounds: int,
) -> str:
    """The Markdown report: a line on the machine and method, then the table."""
    where = (
        f"{machine['device_name']} ({machine['device']})"
        if machine['device'] != 'cpu'
        else f"CPU: {machine['cpu']}, {machine['cores']} cores"
    )
    head = (
        f"Measured {machine['date']} on {where}, {machine['threads']} torch threads, "
        f"torch {machine['torch']}; load average at the end "
        f"{machine.get('load_average', '?')}. Inference: batch 1, median of {rounds} "
        f"interleaved rounds; train step: median of {train_rounds}; FLOPs: "
        f"multiply-adds of the 'tensor' forward at the test size; peak memory: growth "
        f"during one step ({_MEMORY_KIND[machine['device'] == 'cpu']})."
    )
    text = head + '\n\n' + markdown_table(rows, COLUMNS) + '\n'
    failed = [row for row in rows if row.get('error')]
    if failed:
        text += '\nFailed (their cells may be empty):\n\n' + ''.join(
            f"- {row['config']}: {row['error']}\n" for row in failed
        )
    return text


# --------------------------------------------------------------------------- the CLI


def add_arguments(parser) -> None:
    """The ``configs`` mode's command-line arguments."""
    parser.add_argument('configs', nargs='*', help='config files to measure')
    parser.add_argument(
        '--all',
        action='store_true',
        help='measure every config under configs/ (except _base_)',
    )
    add_device_arguments(parser)
    parser.add_argument(
        '--size',
        default=None,
        help='HxW for every input instead of the configs\' sizes',
    )
    parser.add_argument(
        '--train-batch',
        type=int,
        default=None,
        help='images per training step (default: the config\'s per GPU)',
    )
    parser.add_argument(
        '--rounds', type=int, default=5, help='timed inference rounds'
    )
    parser.add_argument(
        '--train-rounds', type=int, default=3, help='timed training steps'
    )
    parser.add_argument(
        '--interleave',
        type=int,
        default=3,
        help='configs held and timed together (memory grows with it)',
    )
    parser.add_argument('--skip-flops', action='store_true')
    parser.add_argument('--skip-train', action='store_true')
    parser.add_argument('--skip-memory', action='store_true')
    parser.add_argument(
        '--out-csv', default=None, help='write the rows to this CSV file'
    )
    parser.add_argument(
        '--out-md', default=None, help='write the Markdown report here'
    )


def parse_size(text: str | None) -> Size | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(
            f'--size must be HxW (e.g. 512x512), got {text!r}'
        ) from None
    if h < 32 or w < 32:
        raise ValueError(
            f'--size must be at least 32x32 (PVT-v2 input), got {text!r}'
        )
    return h, w


def run(args) -> list[dict[str, Any]]:
    """Runs the ``configs`` mode from parsed ``args``; prints the report."""
    if args.all and args.configs:
        raise ValueError('give configs or --all, not both')
    configs = (
        [c for c in all_configs() if is_complete(c)]
        if args.all
        else list(args.configs)
    )
    if not configs:
        raise ValueError('no config given (CONFIG... or --all)')
    for config in configs:
        if not osp.isfile(config):
            raise FileNotFoundError(f'config {config!r} does not exist')
    for name in ('rounds', 'train_rounds', 'interleave'):
        if getattr(args, name) < 1:
            raise ValueError(
                f'--{name.replace("_", "-")} must be >= 1, '
                f'got {getattr(args, name)}'
            )
    device = device_from_args(args)

    def save(rows: list[dict[str, Any]]) -> str:
        text = report(
            rows, describe_machine(device), args.rounds, args.train_rounds
        )
        if args.out_csv:
            write_csv(args.out_csv, rows, CSV_COLUMNS)
        if args.out_md:
            write_text(args.out_md, text)
        return text

    rows = measure(
        configs,
        device,
        parse_size(args.size),
        args.train_batch,
        args.rounds,
        args.train_rounds,
        args.interleave,
        args.skip_flops,
        args.skip_train,
        args.skip_memory,
        on_group=save,
    )
    print(save(rows))
    failed = [row['config'] for row in rows if row.get('error')]
    if failed:
        raise BenchmarkError(
            f'{len(failed)} of {len(rows)} configs failed: {", ".join(failed)} '
            '(tracebacks above; the error column of the outputs)'
        )
    return rows
