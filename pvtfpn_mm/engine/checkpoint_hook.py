"""A ``CheckpointHook`` that never leaves a work dir without a complete checkpoint.

It writes ``<out_dir>/iter_N.pth.partial``, fsyncs it and renames it into place, then
replaces ``last_checkpoint`` the same way, and only then removes the checkpoints beyond
``max_keep_ckpts`` (mmengine 0.10.7's hook removes first and writes in place). Killed
anywhere in between, the work dir holds the previous checkpoints or the new one complete;
why and what else holds: docs/tools.md ("Checkpoints are never lost").
"""

import os
import os.path as osp
from collections import deque

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from pvtfpn_mm.weights import publish, write_text_atomic

#: Suffix of the temporary file a checkpoint is written to before it is renamed into place.
PARTIAL_SUFFIX = '.partial'
#: The file mmengine's ``CheckpointHook`` writes the path of the latest checkpoint to.
LAST_CHECKPOINT = 'last_checkpoint'


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with crash-safe saving (see the module doc).

    Takes exactly ``CheckpointHook``'s arguments. Registered in mmengine's root
    ``HOOKS``, so mmdet and mmseg configs (and ``mim train``) find it by name:
    ``default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', ...))``.
    """

    keep_ckpt_ids: deque  # CheckpointHook's: the steps of the checkpoints kept

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not isinstance(self.file_backend, LocalBackend):
            runner.logger.warning(
                f'AtomicCheckpointHook: out_dir {self.out_dir} is not a local folder; '
                'saving the mmengine way (not crash-safe)'
            )
            return super()._save_checkpoint_with_step(runner, step, meta)

        self._before_save(runner, step)
        remove = []
        kept = list(self.keep_ckpt_ids) if self.max_keep_ckpts > 0 else []
        if self.max_keep_ckpts > 0 and not (kept and kept[-1] == step):
            kept.append(step)
            remove = kept[: -self.max_keep_ckpts]
            # Saved in the checkpoint as it is now: a run resumed from it removes the
            # old ones itself (CheckpointHook.before_train) if this one dies first.
            runner.message_hub.update_info('keep_ckpt_ids', list(kept))
        filename = self.filename_tmpl.format(step)
        path = osp.join(self.out_dir, filename)
        self.last_ckpt = path
        runner.message_hub.update_info('last_ckpt', path)

        tmp = path + PARTIAL_SUFFIX
        self._write_partial(runner, osp.basename(tmp), meta)
        if is_main_process():
            self._publish(runner, tmp, path)
            self._point_last_checkpoint(runner, path)
            for old in remove:
                self._remove(
                    runner,
                    osp.join(self.out_dir, self.filename_tmpl.format(old)),
                )
        if self.max_keep_ckpts > 0:
            kept = kept[-self.max_keep_ckpts :]
            self.keep_ckpt_ids = deque(kept, self.max_keep_ckpts)
            runner.message_hub.update_info('keep_ckpt_ids', list(kept))

    # The steps of a save, one method each (tests interrupt the run between them).

    def _before_save(self, runner, step: int) -> None:
        """Called first, before anything of the save ``step`` is written."""

    def _write_partial(self, runner, tmp_name: str, meta: dict) -> None:
        """Writes the checkpoint to ``<out_dir>/<tmp_name>`` (main process only: mmengine's
        ``Runner.save_checkpoint`` is ``master_only``)."""
        runner.save_checkpoint(
            self.out_dir,
            tmp_name,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )

    def _publish(self, runner, tmp: str, path: str) -> None:
        """fsync, rename into place, fsync the folder."""
        publish(tmp, path)

    def _point_last_checkpoint(self, runner, path: str) -> None:
        write_text_atomic(osp.join(runner.work_dir, LAST_CHECKPOINT), path)

    def _remove(self, runner, path: str) -> None:
        if osp.isfile(path):
            os.remove(path)
        # deepspeed checkpoints are folders
        elif self.file_backend.isdir(path):
            self.file_backend.rmtree(path)
