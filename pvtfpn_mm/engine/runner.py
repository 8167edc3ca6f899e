"""``SafeRunner``: mmengine's ``Runner`` with the guarantees long trainings need.

Selected by ``runner_type = 'SafeRunner'`` in our configs, which mmdet's and mmseg's
``tools/train.py`` (and so ``mim train``) honour, as do ours. What it adds to mmengine
0.10.7's ``Runner`` (work-dir lock, no training over existing checkpoints without
``--resume``, resuming from the newest complete checkpoint, atomic saving, strict
loading, CPU AMP, the ``gpu_recipe``, dataset checks): see docs/tools.md ("What our
configs add") and docs/training_recipe.md.
"""

import atexit
import copy
import os
import os.path as osp
import re
from collections.abc import Callable

import torch
from mmengine.dist import (
    broadcast_object_list,
    get_world_size,
    is_main_process,
)
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import (
    _load_checkpoint,
    _load_checkpoint_to_model,
    find_latest_checkpoint,
)

from pvtfpn_mm.compat import HAS_SAFE_GLOBALS
from pvtfpn_mm.weights import (
    READ_ERRORS,
    CheckpointReadError,
    is_safetensors_file,
    read_checkpoint,
)

from .amp import keep_fp32_islands, uses_amp
from .checkpoint_hook import LAST_CHECKPOINT, PARTIAL_SUFFIX
from .data_checks import (
    EMPTY_DATASET_MESSAGE,
    DatasetError,
    check_built_dataset,
    explain_empty,
)
from .lock import WorkDirLock
from .recipe import (
    RECIPE_KEY,
    apply_gpu_recipe,
    compile_applies,
    compile_arguments,
    match_state_layout,
    model_device,
    optim_wrapper_for_device,
    recipe_of,
)
from .strict_load import StrictLoadHook, unwrap_model


def load_checkpoint_file(
    filename: str, map_location: str | Callable | None = 'cpu'
) -> dict:
    """A checkpoint as a runner loads it: local files (safe loading, errors naming the
    file) and ``http(s)`` URLs of ``.safetensors`` files (mmengine cannot read them) by
    :func:`pvtfpn_mm.weights.read_checkpoint`, other URLs and ``open-mmlab://`` names by
    mmengine's loaders. On torch < 2.5, where safe loading cannot allow mmengine's globals
    (:data:`pvtfpn_mm.compat.HAS_SAFE_GLOBALS`), all but ``.safetensors`` go to
    mmengine's loaders, as they always did there."""
    name = str(filename)
    is_url = re.match(r'^[\w+.-]+://', name) is not None
    is_http = name.startswith(('http://', 'https://'))
    if (is_http or not is_url) and is_safetensors_file(name):
        return read_checkpoint(name, map_location=map_location)
    if not HAS_SAFE_GLOBALS or is_url:
        return _load_checkpoint(filename, map_location=map_location)
    return read_checkpoint(filename, map_location=map_location)


def destroy_process_group() -> None:
    """Destroys the default process group, if any: registered at exit by a distributed
    :class:`SafeRunner` (``Runner`` initialises the group, nothing ends it). Left to the
    interpreter's shutdown, gloo's worker threads can abort the process after its work is
    done (SIGABRT, "terminate called without an active exception"; pytorch PR 179291),
    seen with ``tools/dist_test.py`` on two loaded CPU cores."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


#: Checkpoint file names ``CheckpointHook`` writes by default (``iter_N.pth`` /
#: ``epoch_N.pth``); group 1 is N.
CHECKPOINT_NAME = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


#: Checkpoint hook types a ``SafeRunner`` replaces with ``AtomicCheckpointHook``.
PLAIN_CHECKPOINT_HOOKS = (
    'CheckpointHook',
    'mmengine.CheckpointHook',
    CheckpointHook,
)
#: Keys a resumable checkpoint has (mmengine's ``Runner.save_checkpoint``).
RESUME_KEYS = ('meta', 'state_dict', 'message_hub')


class ExistingCheckpointsError(RuntimeError):
    """A training without ``resume`` into a work dir that holds checkpoints."""


class ResumeError(RuntimeError):
    """``--resume``: the work dir holds checkpoints and none of them loads."""


@RUNNERS.register_module()
class SafeRunner(Runner):
    """mmengine's ``Runner`` with a work-dir lock, crash-safe checkpoints, real
    resuming and strict loading (docs/tools.md).

    Args:
        *args, **kwargs: ``Runner``'s arguments.
        allow_existing_checkpoints (bool, optional): Start a training without
            ``resume`` even though the work dir holds checkpoints (they may be
            overwritten and removed). Defaults to None: the config's
            ``allow_existing_checkpoints`` key, else False.
    """

    _has_loaded: bool  # Runner's: a checkpoint was loaded (resumed) already
    _pvtfpn_loading: str | None  # the file load_checkpoint is reading

    def __init__(
        self, *args, allow_existing_checkpoints: bool | None = None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        if allow_existing_checkpoints is None:
            allow_existing_checkpoints = self.cfg.get(
                'allow_existing_checkpoints', False
            )
        if not isinstance(allow_existing_checkpoints, bool):
            raise TypeError(
                'allow_existing_checkpoints must be True or False, got '
                f'{allow_existing_checkpoints!r}'
            )
        self.allow_existing_checkpoints = allow_existing_checkpoints
        if not any(isinstance(h, StrictLoadHook) for h in self._hooks):
            self.register_hook(StrictLoadHook())
        self._work_dir_lock = WorkDirLock(self.work_dir)
        if self.distributed:
            atexit.register(destroy_process_group)

    @classmethod
    def from_cfg(cls, cfg) -> 'SafeRunner':
        """As ``Runner.from_cfg`` (what ``RUNNERS.build(cfg)``, mmdet's / mmseg's
        ``tools/train.py`` and ours call), after applying the config's ``gpu_recipe``
        (:func:`~pvtfpn_mm.engine.recipe.apply_gpu_recipe`); the work dir's dumped config
        shows the result."""
        cfg, notes = apply_gpu_recipe(cfg)
        runner = super().from_cfg(cfg)
        for note in notes:
            runner.logger.info(note)
        return runner

    # ------------------------------------------------------------------- hooks

    def register_hook(self, hook: Hook | dict, priority=None) -> None:
        """As ``Runner.register_hook``; a plain ``CheckpointHook`` config becomes an
        ``AtomicCheckpointHook`` with the same arguments."""
        if (
            isinstance(hook, dict)
            and hook.get('type') in PLAIN_CHECKPOINT_HOOKS
        ):
            hook = copy.copy(hook)
            hook['type'] = 'AtomicCheckpointHook'
        super().register_hook(hook, priority)

    # ---------------------------------------------------------------- training

    def train(self):
        """Locks the work dir, checks it, then trains as ``Runner.train``."""
        if is_main_process():
            self._work_dir_lock.acquire()
        try:
            if not self._resume:
                self._refuse_existing_checkpoints()
            if is_main_process():
                self._remove_partial_files()
            return super().train()
        finally:
            self._work_dir_lock.release()

    def _remove_partial_files(self) -> None:
        """Removes the temporary files of checkpoint saves that did not finish."""
        for folder in self.checkpoint_dirs():
            if not osp.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if name.endswith('.pth' + PARTIAL_SUFFIX):
                    path = osp.join(folder, name)
                    self.logger.info(
                        f'removing {path}: an interrupted checkpoint save'
                    )
                    os.remove(path)

    def _checkpoint_hook_values(self, attr: str) -> list:
        """The ``attr`` of each ``CheckpointHook`` of this run, where set."""
        return [
            value
            for hook in self._hooks
            if isinstance(hook, CheckpointHook)
            and (value := getattr(hook, attr, None))
        ]

    def checkpoint_dirs(self) -> list[str]:
        """The local folders checkpoints of this run go to: the work dir and the
        ``out_dir`` of its checkpoint hooks (``<out_dir>/<work dir name>``)."""
        dirs = [self.work_dir]
        name = osp.basename(self.work_dir.rstrip(os.sep))
        for out_dir in self._checkpoint_hook_values('out_dir'):
            if '://' in str(out_dir):
                continue
            out_dir = osp.abspath(str(out_dir))
            if out_dir != self.work_dir and osp.basename(out_dir) != name:
                # what CheckpointHook.before_train makes
                out_dir = osp.join(out_dir, name)
            if out_dir not in dirs:
                dirs.append(out_dir)
        return dirs

    def _list_checkpoints(self) -> list[str]:
        """The checkpoint files in :meth:`checkpoint_dirs` (``iter_N.pth`` /
        ``epoch_N.pth``, or named by a hook's ``filename_tmpl``), newest first (by N, then
        by modification time). Partial files (``*.partial``) never match."""
        patterns = [CHECKPOINT_NAME]
        for tmpl in self._checkpoint_hook_values('filename_tmpl'):
            head, braces, tail = tmpl.partition('{}')  # '{}': the step
            if braces:
                patterns.append(
                    re.compile(rf'^{re.escape(head)}(\d+){re.escape(tail)}$')
                )
        found: dict[str, tuple] = {}
        for folder in self.checkpoint_dirs():
            if not osp.isdir(folder):
                continue
            for name in os.listdir(folder):
                path = osp.join(folder, name)
                for pattern in patterns:
                    m = pattern.match(name)
                    if m and osp.isfile(path):
                        found[osp.abspath(path)] = (
                            int(m.group(1)),
                            osp.getmtime(path),
                        )
                        break
        return sorted(found, key=lambda p: found[p], reverse=True)

    def existing_checkpoints(self) -> list[str]:
        """Checkpoint files (and ``last_checkpoint``) already in the checkpoint folders."""
        found = self._list_checkpoints()
        for folder in self.checkpoint_dirs():
            if osp.isdir(folder):
                found += sorted(
                    osp.join(folder, n)
                    for n in os.listdir(folder)
                    if n.startswith('best_') and n.endswith('.pth')
                )
        last = osp.join(self.work_dir, LAST_CHECKPOINT)
        if osp.isfile(last):
            found.append(last)
        return found

    def _refuse_existing_checkpoints(self) -> None:
        found = self.existing_checkpoints()
        if not found:
            return
        names = ', '.join(osp.relpath(p, self.work_dir) for p in found[:6])
        names += f', ... ({len(found) - 6} more)' if len(found) > 6 else ''
        if self.allow_existing_checkpoints:
            self.logger.warning(
                f'allow_existing_checkpoints=True: training from the start in '
                f'{self.work_dir}, which holds {names}; they may be overwritten or removed'
            )
            return
        raise ExistingCheckpointsError(
            f'the work dir {self.work_dir} already holds checkpoints of an earlier run '
            f'({names}); a new training there would overwrite and then delete them. '
            'Continue that run with --resume, or train into a fresh --work-dir (to start '
            'over in this one anyway: --cfg-options allow_existing_checkpoints=True)'
        )

    # ---------------------------------------------------------------- resuming

    def load_or_resume(self) -> None:
        """As ``Runner.load_or_resume``, but ``resume`` without ``load_from`` resumes
        from :meth:`newest_complete_checkpoint`."""
        if self._has_loaded:
            return
        if self._resume and self._load_from is None:
            path = self.newest_complete_checkpoint()
            if path is None:
                self.logger.info(
                    f'resume: no checkpoint in {", ".join(self.checkpoint_dirs())}; '
                    'training starts from the beginning'
                )
                return
            self.logger.info(
                f'resume: resuming from {path}, the newest complete checkpoint'
            )
            self.resume(path)
            self._has_loaded = True
            return
        super().load_or_resume()

    def newest_complete_checkpoint(self) -> str | None:
        """The newest checkpoint in :meth:`checkpoint_dirs` (or named by
        ``last_checkpoint``) that loads and has what resuming needs.

        Checked on the main process; the answer is shared with the others.

        Returns:
            str | None: Its path; None when there is no checkpoint at all.

        Raises:
            ResumeError: There are checkpoints, and none loads (each named, with why).
        """
        result = [self._find_resumable() if is_main_process() else None]
        if get_world_size() > 1:
            broadcast_object_list(result)
        return result[0]

    def _find_resumable(self) -> str | None:
        candidates = self._list_checkpoints()
        last = find_latest_checkpoint(self.work_dir) or None
        if last is not None:
            last = osp.abspath(osp.expanduser(last))
            if not osp.isfile(last):
                self.logger.warning(
                    f'resume: last_checkpoint names {last}, which does not '
                    'exist; looking for the newest complete checkpoint'
                )
            elif last not in candidates:
                candidates.append(last)
        failures = []
        for path in candidates:
            try:
                checkpoint = load_checkpoint_file(path, map_location='cpu')
                lacks = [
                    k
                    for k in RESUME_KEYS
                    if not isinstance(checkpoint, dict) or k not in checkpoint
                ]
                del checkpoint
                if lacks:
                    raise CheckpointReadError(
                        f'{path!r} is not a training checkpoint (it lacks {lacks})'
                    )
            except (CheckpointReadError, OSError) + READ_ERRORS as err:
                failures.append(f'{path}: {err}')
                continue
            for failure in failures:
                self.logger.warning(
                    f'resume: skipping a checkpoint that does not load: '
                    f'{failure}'
                )
            if last is not None and last != path:
                self.logger.warning(
                    f'resume: last_checkpoint names {last}; the newest '
                    f'complete checkpoint is {path}'
                )
            return path
        if failures:
            raise ResumeError(
                f'--resume: the work dir holds {len(failures)} checkpoint(s) and none can '
                'be loaded:\n  '
                + '\n  '.join(failures)
                + '\nMove them away to start '
                'over, or give --resume the path of a good checkpoint'
            )
        return None

    def load_checkpoint(
        self,
        filename: str,
        map_location: str | Callable = 'cpu',
        strict: bool = False,
        revise_keys: list = [(r'^module.', '')],  # noqa: B006  (Runner's default)
    ):
        """``Runner.load_checkpoint`` (``load_from``, ``--resume``, testing), the file
        read by :func:`load_checkpoint_file`. The :class:`StrictLoadHook` makes the load
        strict."""
        self._pvtfpn_loading = filename
        try:
            checkpoint = load_checkpoint_file(filename, map_location)
            # mmengine 0.10's Runner.load_checkpoint from here on
            self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
            model = (
                self.model.module
                if is_model_wrapper(self.model)
                else self.model
            )
            checkpoint = _load_checkpoint_to_model(
                model, checkpoint, strict, revise_keys=revise_keys
            )
            self._has_loaded = True
            self.logger.info(f'Load checkpoint from {filename}')
            return checkpoint
        finally:
            self._pvtfpn_loading = None

    # ----------------------------------------------------- optim wrapper, data

    def build_optim_wrapper(self, optim_wrapper):
        """As ``Runner.build_optim_wrapper``, from the config made what this machine
        runs (:func:`~pvtfpn_mm.engine.recipe.optim_wrapper_for_device`: CPU AMP,
        ``dtype='auto'``, ``fused_optimizer``); under AMP a detector keeps RoI
        extraction and box decoding in float32
        (:func:`~pvtfpn_mm.engine.amp.keep_fp32_islands`)."""
        optim_wrapper, notes = optim_wrapper_for_device(
            optim_wrapper, recipe_of(self.cfg), model_device(self.model)
        )
        for note in notes:
            self.logger.info(note)
        built = super().build_optim_wrapper(optim_wrapper)
        if uses_amp(built):
            islands = keep_fp32_islands(unwrap_model(self.model))
            if islands:
                self.logger.info(
                    f'AMP: {", ".join(islands)} run in float32 (RoI extraction, '
                    'box decoding and NMS, as mmdet 2.x fp16 training did)'
                )
        return built

    def resume(self, filename: str, *args, **kwargs) -> None:
        """As ``Runner.resume``; then every optimizer state tensor gets its parameter's
        memory layout (a checkpoint of a channels-last run resumed without it, or the
        other way round; fused kernels need them alike)."""
        super().resume(filename, *args, **kwargs)
        match_state_layout(self.optim_wrapper)

    def _maybe_compile(self, target: str) -> None:
        """mmengine's ``compile`` key as before; the ``gpu_recipe`` lever ``compile``
        compiles ``target`` with ``torch.compile(dynamic=True, ...)`` on CUDA and
        leaves it as it is (with a log line) on other devices."""
        recipe = recipe_of(self.cfg)
        arguments = compile_arguments(recipe) if recipe is not None else None
        if recipe is None or arguments is None:
            return super()._maybe_compile(target)
        device = model_device(self.model)
        if not compile_applies(recipe, device):
            self.logger.info(
                f'{RECIPE_KEY}: compile is for CUDA; the model is on {device.type}: '
                f'{target} is not compiled'
            )
            return
        compiled = torch.compile(getattr(self.model, target), **arguments)
        setattr(self.model, target, compiled)
        self.logger.info(
            f'{RECIPE_KEY}: {target} compiled with torch.compile({arguments}); the first '
            'iterations (and each new input shape) take longer'
        )

    @staticmethod
    def build_dataloader(
        dataloader, seed: int | None = None, diff_rank_seed: bool = False
    ):
        """As ``Runner.build_dataloader``; an empty dataset, or a COCO-style dataset
        whose class names are not categories of its annotation file, raises
        :class:`DatasetError` saying so."""
        dataset_cfg = None
        if isinstance(dataloader, dict) and isinstance(
            dataloader.get('dataset'), dict
        ):
            dataset_cfg = copy.deepcopy(dataloader['dataset'])
        try:
            loader = Runner.build_dataloader(
                dataloader, seed=seed, diff_rank_seed=diff_rank_seed
            )
        except ValueError as err:
            if dataset_cfg is None or EMPTY_DATASET_MESSAGE not in str(err):
                raise
            raise DatasetError(explain_empty(dataset_cfg)) from err
        if len(loader.dataset) == 0:
            raise DatasetError(explain_empty(dataset_cfg or {}))
        check_built_dataset(loader.dataset)
        return loader
