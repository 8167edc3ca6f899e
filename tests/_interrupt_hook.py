"""A hook for tests: kills its own process (SIGKILL) right after a given iteration, i.e.
after that iteration's checkpoint is saved -- an abrupt interruption of a training run.

Imported by the training subprocess through ``custom_imports`` (tests/ on PYTHONPATH).
"""

import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class KillAfterIterHook(Hook):
    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW) has saved

    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
