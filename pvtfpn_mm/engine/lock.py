"""One training per work dir: an exclusive lock on ``<work_dir>/train.lock`` (filelock).

The lock is :class:`filelock.FileLock`'s, an ``flock`` on the file: the kernel releases
it when the process ends in any way (SIGKILL included), so there is no stale lock to
clean up. Beside it, ``train.lock.json`` names the holder (pid, host, command, start
time), which a second run quotes when it stops.
"""

import json
import os
import os.path as osp
import socket
import sys
import time

from filelock import FileLock, Timeout

#: The lock file's name in the work dir; the holder's details go to ``<name>.json``.
LOCK_NAME = 'train.lock'
#: How long to wait for the children of an ended holder to release the lock (seconds).
ORPHAN_WAIT_S = 15


def _alive(pid) -> bool:
    """Whether process ``pid`` of this host exists."""
    if not isinstance(pid, int) or pid <= 0:
        return True  # unknown: assume it does
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkDirBusyError(RuntimeError):
    """Another process is training into the same work dir."""


class WorkDirLock:
    """An exclusive, non-blocking lock on a work dir.

    Args:
        work_dir (str): The folder (created if missing).

    Example:
        >>> lock = WorkDirLock('work_dirs/run').acquire()   # raises WorkDirBusyError
        >>> lock.release()
    """

    def __init__(self, work_dir: str):
        self.work_dir = osp.abspath(work_dir)
        self.path = osp.join(self.work_dir, LOCK_NAME)
        self.info_path = self.path + '.json'
        self._lock = FileLock(self.path, thread_local=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> 'WorkDirLock':
        """Takes the lock at once or raises :class:`WorkDirBusyError` naming the holder.

        When the recorded holder is a process of this host that has ended, the lock may
        still be held by its children (dataloader workers notice their parent's death
        within seconds): then it waits up to :data:`ORPHAN_WAIT_S` for them.
        """
        if self.held:
            return self
        os.makedirs(self.work_dir, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            info = self.holder_info()
            orphaned = info.get('host') == socket.gethostname() and not _alive(
                info.get('pid')
            )
            try:
                self._lock.acquire(
                    timeout=ORPHAN_WAIT_S if orphaned else 0, poll_interval=0.5
                )
            except Timeout:
                raise WorkDirBusyError(
                    f'the work dir {self.work_dir} is in use by another training: '
                    f'{self.holder_text()} (lock file {self.path}). Wait for it to '
                    'finish, or train into another --work-dir'
                ) from None
        info = dict(
            pid=os.getpid(),
            host=socket.gethostname(),
            command=' '.join([sys.executable] + sys.argv),
            started=time.strftime('%Y-%m-%d %H:%M:%S'),
        )
        # a small file read only for messages: replaced in one rename
        tmp = f'{self.info_path}.{os.getpid()}.tmp'
        with open(tmp, 'w') as f:
            f.write(json.dumps(info) + '\n')
        os.replace(tmp, self.info_path)
        return self

    def holder_info(self) -> dict:
        """The holder's details: pid, host, command, started (empty if unreadable)."""
        try:
            with open(self.info_path) as f:
                info = json.loads(f.read() or '{}')
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def holder_text(self) -> str:
        """``'pid N on HOST, started T: COMMAND'`` of the holder's details."""
        info = self.holder_info()
        if not info:
            return 'a process that has not written its details yet'
        return (
            f'pid {info.get("pid")} on {info.get("host")}, started '
            f'{info.get("started")}: {info.get("command")}'
        )

    def release(self) -> None:
        """Releases the lock (the files stay; the details are the last holder's)."""
        if self.held:
            self._lock.release(force=True)

    def __enter__(self) -> 'WorkDirLock':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
