"""For tests: an ``AtomicCheckpointHook`` that interrupts its own training at a chosen
moment of a chosen save, with a real SIGKILL (or pauses there, for the test to kill it
from outside).

Moments (``kill_at``), in the order a save passes them:

* ``'start'``: before anything of the save is written;
* ``'mid_write'``: the temporary file holds half of the checkpoint (what a kill in the
  middle of writing leaves);
* ``'written'``: the temporary file is complete, not yet renamed;
* ``'published'``: the new checkpoint is in place, ``last_checkpoint`` still names
  the previous one;
* ``'pointed'``: ``last_checkpoint`` names the new one, the old one is not removed yet.

Imported by the training subprocess through ``custom_imports`` (tests/ on PYTHONPATH).
"""

import os
import os.path as osp
import signal
import time

from mmengine.registry import HOOKS

from pvtfpn_mm.engine import AtomicCheckpointHook


@HOOKS.register_module(force=True)
class KillDuringSaveHook(AtomicCheckpointHook):
    def __init__(
        self, kill_step: int, kill_at: str, pause_file: str = None, **kwargs
    ):
        super().__init__(**kwargs)
        self.kill_step, self.kill_at, self.pause_file = (
            kill_step,
            kill_at,
            pause_file,
        )
        self._step = None

    def _die(self, moment: str) -> None:
        if moment != self.kill_at or self._step != self.kill_step:
            return
        if self.pause_file:  # the test kills this process from outside
            with open(self.pause_file, 'w') as f:
                f.write(str(os.getpid()))
            time.sleep(600)
        os.kill(os.getpid(), signal.SIGKILL)

    def _before_save(self, runner, step):
        self._step = step
        self._die('start')

    def _write_partial(self, runner, tmp_name, meta):
        super()._write_partial(runner, tmp_name, meta)
        if self.kill_at == 'mid_write' and self._step == self.kill_step:
            path = osp.join(self.out_dir, tmp_name)
            with open(path, 'r+b') as f:
                f.truncate(os.path.getsize(path) // 2)
        self._die('mid_write')
        self._die('written')

    def _publish(self, runner, tmp, path):
        super()._publish(runner, tmp, path)
        self._die('published')

    def _point_last_checkpoint(self, runner, path):
        super()._point_last_checkpoint(runner, path)
        self._die('pointed')
