"""Distributed launcher: runs ``tools/train.py`` / ``tools/test.py`` under ``torchrun``.

The Python counterpart of mmdet's / mmseg's ``dist_train.sh``: ``NPROC`` processes per
node with ``--launcher pytorch``; multi-node through the same environment variables
(``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``PORT``). Without CUDA the tools switch the
process group to gloo, so data-parallel training also runs on CPUs.
"""

import os
import os.path as osp
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence

#: The folder of the scripts (``tools/``, or ``pvtfpn_mm/.mim/tools`` when installed).
TOOLS_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def free_port() -> int:
    """A TCP port that is free on this machine right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def torchrun_command(
    script: str,
    script_args: Sequence[str],
    nproc: int,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``python -m torch.distributed.run ...`` command line for ``script``."""
    if env is None:
        env = os.environ
    nnodes = int(env.get('NNODES', 1))
    port = int(env.get('PORT') or (29500 if nnodes > 1 else free_port()))
    return [
        sys.executable,
        '-m',
        'torch.distributed.run',
        f'--nnodes={nnodes}',
        f'--node_rank={env.get("NODE_RANK", 0)}',
        f'--master_addr={env.get("MASTER_ADDR", "127.0.0.1")}',
        f'--master_port={port}',
        f'--nproc_per_node={nproc}',
        script,
        *script_args,
        '--launcher',
        'pytorch',
    ]


def launch(tool: str, nproc: int, args: Sequence[str]) -> int:
    """Runs ``tools/<tool>.py args --launcher pytorch`` in ``nproc`` processes.

    Returns:
        int: torchrun's exit status.
    """
    if nproc < 1:
        raise ValueError(f'NPROC must be >= 1, got {nproc}')
    script = osp.join(TOOLS_DIR, f'{tool}.py')
    env = dict(os.environ)
    # One intra-op thread per process unless told otherwise (torchrun's default too).
    env.setdefault('OMP_NUM_THREADS', '1')
    # The repo root on the path, so the tools import this checkout's pvtfpn_mm.
    root = osp.dirname(TOOLS_DIR)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (root, env.get('PYTHONPATH')) if p
    )
    cmd = torchrun_command(script, list(args), nproc, env)
    print(' '.join(cmd), flush=True)
    return subprocess.call(cmd, env=env)
