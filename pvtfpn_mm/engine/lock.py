"""One training per work dir: an exclusive ``flock`` on ``<work_dir>/train.lock``.

The lock belongs to the open file, so the kernel releases it when the process ends in
any way (SIGKILL included): there is no stale lock to clean up. The file keeps the
holder's pid, host, command and start time, which a second run names when it stops.
"""

import errno
import fcntl
import json
import os
import os.path as osp
import socket
import sys
import time

#: The lock file's name in the work dir.
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
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> 'WorkDirLock':
        """Takes the lock at once or raises :class:`WorkDirBusyError` naming the holder.

        When the holder recorded in the file is a process of this host that has ended,
        the lock is still held by its children (dataloader workers notice their parent's
        death within seconds): then it waits up to :data:`ORPHAN_WAIT_S` for them.
        """
        if self._fd is not None:
            return self
        os.makedirs(self.work_dir, exist_ok=True)
        deadline = time.monotonic() + ORPHAN_WAIT_S
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                os.close(fd)
                if err.errno not in (
                    errno.EWOULDBLOCK,
                    errno.EAGAIN,
                    errno.EACCES,
                ):
                    raise
            info = self.holder_info()
            if (
                info.get('host') == socket.gethostname()
                and not _alive(info.get('pid'))
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
                continue
            raise WorkDirBusyError(
                f'the work dir {self.work_dir} is in use by another training: '
                f'{self.holder_text()} (lock file {self.path}). Wait for it to finish, '
                'or train into another --work-dir'
            )
        info = dict(
            pid=os.getpid(),
            host=socket.gethostname(),
            command=' '.join([sys.executable] + sys.argv),
            started=time.strftime('%Y-%m-%d %H:%M:%S'),
        )
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + '\n').encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def holder_info(self) -> dict:
        """The lock file's content: pid, host, command, started (empty if unreadable)."""
        try:
            with open(self.path) as f:
                info = json.loads(f.read() or '{}')
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def holder_text(self) -> str:
        """``'pid N on HOST, started T: COMMAND'`` of the lock file's current content."""
        info = self.holder_info()
        if not info:
            return 'a process that has not written its details yet'
        return (
            f'pid {info.get("pid")} on {info.get("host")}, started '
            f'{info.get("started")}: {info.get("command")}'
        )

    def release(self) -> None:
        """Releases the lock (the file stays; its content is the last holder's)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> 'WorkDirLock':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
