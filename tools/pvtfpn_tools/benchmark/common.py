"""What every benchmark mode shares: the machine, timing, peak memory, progress, tables.

Timing: :func:`interleaved_rounds` runs each callable once per round, round after round
(A B C, A B C, ...), after warm-up calls, each call timed by a
:class:`torch.utils.benchmark.Timer` (CUDA synchronized); report the median of the
rounds (:func:`summarize`). Interleaving puts the candidates side by side in time, so a
burst of load from other processes hits them alike.

Peak memory: on CUDA the growth of ``torch.cuda.max_memory_allocated`` over what was
allocated before the call (:class:`PeakMemory`). On the CPU the growth of the process's
peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) over its resident
set before the call -- meaningful only where freed memory goes back to the system, so
measure it in a fresh process that called :func:`release_freed_memory` first (glibc
otherwise keeps freed blocks and a second step reuses them unseen).
"""

import csv
import ctypes
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

# ------------------------------------------------------------------- the machine


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), else :func:`platform.processor`."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: torch.device) -> dict[str, Any]:
    """Date, device, CPU, cores, torch threads, versions and load average."""
    info = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M UTC'
        ),
        device=str(device),
        device_name=(
            torch.cuda.get_device_name(device)
            if device.type == 'cuda'
            else cpu_name()
        ),
        cpu=cpu_name(),
        cores=os.cpu_count(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
    )
    if hasattr(os, 'getloadavg'):
        info['load_average'] = ' '.join(f'{x:.2f}' for x in os.getloadavg())
    return info


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


# --------------------------------------------------------------------------- timing


def add_device_arguments(parser) -> None:
    """``--device`` and ``--threads``: every mode's (see :func:`device_from_args`)."""
    parser.add_argument(
        '--device',
        default=None,
        help='cuda or cpu (default: cuda when present)',
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch threads (default: torch\'s, = the cores)',
    )


def device_from_args(args) -> torch.device:
    """Sets the torch threads of ``args.threads`` and returns the device of
    ``args.device`` (default: :func:`default_device`); a bad value is a ValueError
    naming it."""
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f'--threads must be >= 1, got {args.threads}')
        torch.set_num_threads(args.threads)
    if not args.device:
        return default_device()
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        raise ValueError(
            f'--device {args.device!r} is not a torch device ({error})'
        ) from None
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(f'--device must be cpu or cuda, got {args.device!r}')
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(
            f'--device {args.device!r}: CUDA is not available here'
        )
    return device


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def interleaved_rounds(
    fns: Mapping[str, Callable[[], Any]],
    rounds: int,
    device: torch.device,
    warmup: int = 1,
    on_call: Callable[[str], None] | None = None,
    timer: Callable[[], float] | None = None,
) -> dict[str, list[float]]:
    """Times every callable once per round, ``rounds`` rounds, interleaved.

    Each call is one ``timeit(1)`` of a :class:`torch.utils.benchmark.Timer` (which
    synchronizes CUDA around it); the rounds alternate the candidates (A B C, A B C,
    ...) instead of timing each in one block, so that load from other processes hits
    them alike.

    Args:
        fns (Mapping[str, Callable]): The candidates, by name.
        rounds (int): Timed rounds (>= 1).
        device (torch.device): Where they run (CUDA is synchronized).
        warmup (int): Untimed calls of each before the first round. Defaults to 1.
        on_call (Callable, optional): Called with the name after every call (progress).
        timer (Callable, optional): The clock, e.g. :func:`time.process_time` for CPU
            time. Defaults to the ``Timer``'s (wall time, CUDA synchronized).

    Returns:
        dict[str, list[float]]: Milliseconds of each call, per name.
    """
    from torch.utils.benchmark import Timer

    if rounds < 1:
        raise ValueError(f'rounds must be >= 1, got {rounds}')
    clock = {} if timer is None else {'timer': timer}
    if device.type == 'cuda' and timer is not None:
        raise ValueError(f'a custom clock cannot time {device}')
    timers = {
        name: Timer('fn()', globals={'fn': fn}, description=name, **clock)
        for name, fn in fns.items()
    }
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
            if on_call:
                on_call(name)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, t in timers.items():
            times[name].append(1000 * t.timeit(1).median)
            if on_call:
                on_call(name)
    return times


def summarize(times: Sequence[float]) -> dict[str, float]:
    """Median, best and worst of a list of timings."""
    return dict(
        median=statistics.median(times), min=min(times), max=max(times)
    )


# --------------------------------------------------------------------------- memory


def _status_mib(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc``, in MiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def release_freed_memory(threshold: int = 64 * 1024) -> bool:
    """Makes glibc serve allocations of ``threshold`` bytes and more by ``mmap`` (and
    give them back on free), so the resident set follows the live memory. Slows
    allocation: call it only in a process that measures memory. False off glibc."""
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, threshold)) and bool(
        libc.mallopt(m_trim_threshold, threshold)
    )


#: The line a memory-measuring child process reports its result on.
MEMORY_LINE = 'PVTFPN_MEMORY '
#: The folder holding the ``pvtfpn_tools`` package (``tools/``).
TOOLS_DIR = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


def report_memory(result: Mapping[str, Any]) -> None:
    """Prints a child's result for :func:`run_memory_child` (one JSON line)."""
    print(MEMORY_LINE + json.dumps(dict(result)), flush=True)


def run_memory_child(
    module: str, function: str, args: Sequence[Any]
) -> dict[str, Any]:
    """Runs ``module.function(*args)`` in a fresh Python process (memory is measured
    where nothing was allocated before) and returns what it :func:`report_memory`-ed.

    Raises:
        RuntimeError: The child failed; the message ends with its stderr.
    """
    code = (
        f'import sys, json; sys.path.insert(0, {TOOLS_DIR!r}); '
        f'from {module} import {function}; '
        f'{function}(*json.loads(sys.argv[1]))'
    )
    out = subprocess.run(
        [sys.executable, '-c', code, json.dumps(list(args))],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(
            f'memory measurement {module}.{function}{tuple(args)} failed:\n'
            f'{out.stderr[-3000:]}'
        )
    line = [x for x in out.stdout.splitlines() if x.startswith(MEMORY_LINE)][
        -1
    ]
    return json.loads(line[len(MEMORY_LINE) :])


class PeakMemory:
    """Context manager: ``.mib`` is the peak memory growth during the block, in MiB.

    CUDA: ``max_memory_allocated`` over the memory allocated at entry. CPU: peak
    resident set (``VmHWM``) over the resident set at entry (see the module doc);
    ``.mib`` is None where ``/proc`` cannot be used.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.mib: float | None = None
        self._base: float = 0.0  # at entry: bytes (CUDA) or MiB (CPU)

    def __enter__(self) -> 'PeakMemory':
        if self.device.type == 'cuda':
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._ok = sys.platform.startswith('linux') and _reset_peak_rss()
            self._base = _status_mib('VmRSS') if self._ok else 0.0
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == 'cuda':
            synchronize(self.device)
            self.mib = (
                torch.cuda.max_memory_allocated(self.device) - self._base
            ) / 2**20
        elif self._ok:
            self.mib = _status_mib('VmHWM') - self._base


# ------------------------------------------------------------------------- progress


class Progress:
    """A progress bar on stderr (rich) on a terminal; elsewhere (logs, CI) one line per
    step, so that a long run shows where it is."""

    def __init__(self, total: int, description: str = 'benchmark'):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self._bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn('{task.description}'),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=total)

    def step(self, what: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=what)
        else:
            elapsed = time.perf_counter() - self.start
            print(
                f'[{self.done}/{self.total} {elapsed:6.0f} s] {what}',
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------- tables


def _cell(value: Any) -> str:
    if value is None:
        return '–'
    if isinstance(value, float):
        return f'{value:.3g}' if abs(value) < 100 else f'{value:.0f}'
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]
) -> str:
    """A Markdown table of ``rows`` with ``columns`` (key -> header)."""
    lines = [
        '| ' + ' | '.join(columns.values()) + ' |',
        '|' + '---|' * len(columns),
    ]
    for row in rows:
        lines.append(
            '| ' + ' | '.join(_cell(row.get(k)) for k in columns) + ' |'
        )
    return '\n'.join(lines)


def write_csv(
    path: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> None:
    """Writes ``rows`` (the ``columns`` keys) to a CSV file (``~`` expanded), atomically
    (a temporary file, fsync, rename: rewritten after every group of a long run)."""
    buffer = io.StringIO(newline='')
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), extrasaction='ignore'
    )
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` (``~`` expanded) atomically."""
    from pvtfpn_mm.weights import write_text_atomic

    write_text_atomic(os.path.expanduser(path), text)
