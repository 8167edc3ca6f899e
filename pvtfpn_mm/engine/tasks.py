"""Train and test any of our configs with mmengine's Runner, as mmdet's / mmseg's tools do.

Which codebase a config belongs to is read from its ``default_scope`` (``'mmdet'`` or
``'mmseg'``, set by their ``default_runtime.py`` bases); the few places where
``mmdet/tools/{train,test}.py`` and ``mmseg/tools/{train,test}.py`` differ (how
``--show-dir`` is wired, ``--out``, test-time augmentation) follow that codebase. On a
machine without CUDA, ``--launcher pytorch`` runs use gloo on the CPU instead of the
configs' nccl (:mod:`.cpu_dist`).
"""

import os.path as osp
from copy import deepcopy

from mmengine.config import Config, ConfigDict

from . import build

#: The codebases these functions train and test for (their ``default_scope``).
TRAIN_TASKS = ('mmdet', 'mmseg')


def task_of(cfg: Config) -> str:
    """``'mmdet'`` or ``'mmseg'``: the codebase a config is for (its ``default_scope``)."""
    return build.task_of(cfg, TRAIN_TASKS)


def load_config(
    config: str | Config,
    cfg_options: dict | None = None,
    work_dir: str | None = None,
    launcher: str = 'none',
) -> Config:
    """Loads ``config``, sets ``launcher``, merges ``cfg_options`` (which may set it too)
    and sets ``work_dir``.

    ``work_dir`` defaults to the config's own, else ``./work_dirs/<config name>``.
    """
    options = {'launcher': launcher, **(cfg_options or {})}
    cfg = build.load_model_config(config, options, TRAIN_TASKS)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(cfg.filename or 'config'))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    return cfg


def _build_runner(cfg: Config):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from .cpu_dist import prepare_cpu_distributed

    prepare_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def _setup_dynamo(task: str) -> None:
    if task == 'mmdet':
        from mmdet.utils import setup_cache_size_limit_of_dynamo

        setup_cache_size_limit_of_dynamo()


def prepare_train_config(
    cfg: Config,
    resume: bool | str | None = None,
    amp: bool = False,
    auto_scale_lr: bool = False,
) -> Config:
    """Applies the train options of mmdet's / mmseg's ``tools/train.py`` to ``cfg``.

    Args:
        resume: ``True`` or ``'auto'``: resume from the latest checkpoint in the work
            dir (a fresh start if there is none); a path: resume from that checkpoint;
            ``None``/``False``: no resuming.
        amp: Mixed precision: ``AmpOptimWrapper`` with dynamic loss scale on a GPU;
            without one, ``CPUAmpOptimWrapper`` (bfloat16 autocast on the CPU).
        auto_scale_lr: Scale the lr by (total batch size / ``auto_scale_lr.
            base_batch_size``).
    """
    if amp:
        from .amp import amp_optim_wrapper_type

        wrapper = amp_optim_wrapper_type()
        if cfg.optim_wrapper.get('type', 'OptimWrapper') in (
            'AmpOptimWrapper',
            wrapper,
        ):
            print('AMP training is already enabled in the config.')
        else:
            cfg.optim_wrapper.type = wrapper
            cfg.optim_wrapper.loss_scale = 'dynamic'
            if wrapper == 'CPUAmpOptimWrapper':
                print(
                    '--amp without a GPU: bfloat16 autocast on the CPU (CPUAmpOptimWrapper)'
                )
    if auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError(
                'the config has no auto_scale_lr.base_batch_size; '
                'cannot scale the lr automatically'
            )
        cfg.auto_scale_lr.enable = True
    if resume is True or resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume:
        cfg.resume = True
        cfg.load_from = resume
    return cfg


def train(
    config: str | Config,
    work_dir: str | None = None,
    resume: bool | str | None = None,
    amp: bool = False,
    auto_scale_lr: bool = False,
    cfg_options: dict | None = None,
    launcher: str = 'none',
):
    """Trains ``config`` (an mmdet or mmseg config); returns the runner."""
    cfg = load_config(config, cfg_options, work_dir, launcher)
    _setup_dynamo(task_of(cfg))
    cfg = prepare_train_config(cfg, resume, amp, auto_scale_lr)
    runner = _build_runner(cfg)
    runner.train()
    return runner


def prepare_test_config(
    cfg: Config,
    checkpoint: str,
    show_dir: str | None = None,
    show: bool = False,
    wait_time: float = 2,
    show_interval: int | None = None,
    out: str | None = None,
    tta: bool = False,
) -> Config:
    """Applies the test options of mmdet's / mmseg's ``tools/test.py`` to ``cfg``.

    Args:
        checkpoint: The checkpoint to test.
        show_dir: Where the pictures of predictions (drawn next to the ground truth)
            go. mmdet writes ``<show_dir>/<image name>``; mmseg writes
            ``<show_dir>/vis_data/vis_image/test_<image name>_<iter>.png``.
        show / wait_time: Display the pictures in a window.
        show_interval: mmseg only: draw every n-th test image (mmseg's default: 50).
        out: mmdet: a ``.pkl`` file for the raw predictions; mmseg: a directory for
            the predicted label maps.
        tta: Test-time augmentation (the config's ``tta_model``/``tta_pipeline``, or
            flip TTA for mmdet configs without them).
    """
    task = task_of(cfg)
    cfg.load_from = checkpoint
    if show or show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise RuntimeError(
                'default_hooks has no visualization hook to draw with'
            )
        hook['draw'] = True
        if show:
            hook['show'] = True
            hook['wait_time'] = wait_time
        if show_dir:
            show_dir = osp.abspath(show_dir)
            if task == 'mmdet':
                hook['test_out_dir'] = show_dir
            else:
                cfg.visualizer['save_dir'] = show_dir
                if show_interval is not None:
                    hook['interval'] = show_interval
    if tta:
        _enable_tta(cfg, task)
    if out is not None and task == 'mmseg':
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True
    elif out is not None and not out.endswith(('.pkl', '.pickle')):
        raise ValueError(
            f'--out must be a .pkl file for mmdet configs, got {out!r}'
        )
    return cfg


def _enable_tta(cfg: Config, task: str) -> None:
    if task == 'mmdet':
        if 'tta_model' not in cfg:
            cfg.tta_model = dict(
                type='DetTTAModel',
                tta_cfg=dict(
                    nms=dict(type='nms', iou_threshold=0.5), max_per_img=100
                ),
            )
        if 'tta_pipeline' not in cfg:
            data_cfg = cfg.test_dataloader.dataset
            while 'dataset' in data_cfg:
                data_cfg = data_cfg['dataset']
            cfg.tta_pipeline = deepcopy(data_cfg.pipeline)
            cfg.tta_pipeline[-1] = dict(
                type='TestTimeAug',
                transforms=[
                    [
                        dict(type='RandomFlip', prob=1.0),
                        dict(type='RandomFlip', prob=0.0),
                    ],
                    # mmdet's tools/test.py names PackDetInputs' default meta_keys
                    [dict(type='PackDetInputs')],
                ],
            )
    elif 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise RuntimeError('the config has no tta_model / tta_pipeline')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def test(
    config: str | Config,
    checkpoint: str,
    work_dir: str | None = None,
    show_dir: str | None = None,
    show: bool = False,
    wait_time: float = 2,
    show_interval: int | None = None,
    out: str | None = None,
    tta: bool = False,
    cfg_options: dict | None = None,
    launcher: str = 'none',
) -> dict:
    """Tests ``checkpoint`` with ``config``'s test set and evaluator; returns the metrics."""
    cfg = load_config(config, cfg_options, work_dir, launcher)
    task = task_of(cfg)
    _setup_dynamo(task)
    cfg = prepare_test_config(
        cfg, checkpoint, show_dir, show, wait_time, show_interval, out, tta
    )
    runner = _build_runner(cfg)
    if out is not None and task == 'mmdet':
        from mmdet.evaluation import DumpDetResults

        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))
    return runner.test()
