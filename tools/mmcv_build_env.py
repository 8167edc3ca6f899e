"""How tools/setup_env.sh builds mmcv: CPU ops, or CUDA ops for the NVIDIA GPUs present.

Standalone on purpose (standard library only; torch only when it is installed): the set-up
runs it before pvtfpn_mm's dependencies exist, and its ``--dry-run`` runs it with no venv.

    python tools/mmcv_build_env.py decide [--torch-cuda X.Y|none] [--torch-version V]
        prints KEY='value' lines for the shell: OPS (cpu / cuda), ARCH_LIST, CACHE_KEY, ...
    python tools/mmcv_build_env.py toolkit --cuda X.Y --dir DIR
        prints the CUDA_HOME to build with: an nvcc of that version already installed,
        or one assembled in DIR from NVIDIA's PyPI wheels (nvidia-cuda-nvcc...).
    python tools/mmcv_build_env.py verify --ops cpu|cuda
        runs nms, roi_align (and on CUDA sigmoid_focal_loss) of the installed mmcv.

Inputs besides the arguments: ``nvidia-smi`` on PATH (the GPUs, their compute capability
and the driver's CUDA version), ``PVTFPN_MMCV_OPS`` (``auto`` (default), ``cpu`` or ``cuda``
to force one), ``TORCH_CUDA_ARCH_LIST`` (overrides the GPUs' list), ``CUDA_HOME``.
"""

import argparse
import glob
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
from typing import NamedTuple

OPS_CHOICES = ('auto', 'cpu', 'cuda')


class Gpu(NamedTuple):
    name: str
    compute_cap: str  # e.g. '9.0'
    driver: str


class Decision(NamedTuple):
    ops: str  # 'cpu' or 'cuda'
    arch_list: str  # TORCH_CUDA_ARCH_LIST for a CUDA build, '' for CPU
    reason: str
    error: str  # non-empty: the set-up must stop with this message


def run_text(cmd: list[str]) -> str | None:
    """stdout of ``cmd``, or None when it is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def query_gpus() -> list[Gpu]:
    """The GPUs ``nvidia-smi`` sees (none when it is missing or fails)."""
    out = run_text(
        [
            'nvidia-smi',
            '--query-gpu=name,compute_cap,driver_version',
            '--format=csv,noheader',
        ]
    )
    gpus = []
    for line in (out or '').splitlines():
        parts = [p.strip() for p in line.split(',')]
        if len(parts) == 3 and re.fullmatch(r'\d+\.\d+', parts[1]):
            gpus.append(Gpu(*parts))
    return gpus


def driver_cuda_version() -> str | None:
    """The newest CUDA version the driver supports ('CUDA Version: 12.4' of nvidia-smi)."""
    match = re.search(
        r'CUDA Version:\s*(\d+\.\d+)', run_text(['nvidia-smi']) or ''
    )
    return match.group(1) if match else None


def major(version: str) -> int:
    return int(version.split('.')[0])


def arch_list(gpus: list[Gpu]) -> str:
    """TORCH_CUDA_ARCH_LIST for the GPUs present: their compute capabilities, sorted."""
    caps = sorted(
        {g.compute_cap for g in gpus},
        key=lambda c: tuple(map(int, c.split('.'))),
    )
    return ';'.join(caps)


def decide(
    gpus: list[Gpu],
    driver_cuda: str | None,
    torch_cuda: str | None,
    force: str = 'auto',
    env_arch_list: str = '',
) -> Decision:
    """CPU or CUDA ops for mmcv.

    Args:
        gpus: the GPUs present (``query_gpus()``).
        driver_cuda: the driver's CUDA version, None when unknown.
        torch_cuda: ``torch.version.cuda`` of the torch to build against: ``'none'`` for a
            CPU build of torch, None when torch is not installed yet.
        force: ``PVTFPN_MMCV_OPS``: ``'auto'``, ``'cpu'`` or ``'cuda'``.
        env_arch_list: ``TORCH_CUDA_ARCH_LIST`` from the environment ('' when unset).
    """
    if force not in OPS_CHOICES:
        return Decision(
            'cpu',
            '',
            '',
            f'PVTFPN_MMCV_OPS must be one of {OPS_CHOICES}, got {force!r}',
        )
    if force == 'cpu':
        return Decision('cpu', '', 'PVTFPN_MMCV_OPS=cpu', '')
    if torch_cuda is None:
        return Decision(
            'cpu',
            '',
            'torch is not installed yet: decided after installing it',
            '',
        )
    if force == 'cuda':
        archs = env_arch_list or arch_list(gpus)
        if torch_cuda == 'none':
            return Decision(
                'cuda',
                archs,
                '',
                'PVTFPN_MMCV_OPS=cuda, but torch is a CPU '
                'build (torch.version.cuda is None): install a CUDA build of torch',
            )
        if not archs:
            return Decision(
                'cuda',
                '',
                '',
                'PVTFPN_MMCV_OPS=cuda without a GPU: set '
                'TORCH_CUDA_ARCH_LIST (e.g. "8.0;9.0") for the GPUs to build for',
            )
        return Decision('cuda', archs, 'PVTFPN_MMCV_OPS=cuda', '')
    if not gpus:
        return Decision(
            'cpu', '', 'no NVIDIA GPU (nvidia-smi missing or lists none)', ''
        )
    names = ', '.join(f'{g.name} (sm {g.compute_cap})' for g in gpus)
    if torch_cuda == 'none':
        return Decision(
            'cpu',
            '',
            f'GPU present ({names}) but torch is a CPU build: mmcv '
            'gets CPU ops; install a CUDA torch for GPU training',
            '',
        )
    if driver_cuda is not None and major(driver_cuda) < major(torch_cuda):
        return Decision(
            'cuda',
            '',
            '',
            f'the NVIDIA driver ({gpus[0].driver}) supports CUDA '
            f'up to {driver_cuda}, torch is built with CUDA {torch_cuda}: update '
            'the driver, or install a torch built for the driver\'s CUDA (e.g. '
            'PVTFPN_TORCH_INDEX_URL=https://download.pytorch.org/whl/cu'
            f'{driver_cuda.replace(".", "")}), or set PVTFPN_MMCV_OPS=cpu to '
            'build CPU ops only',
        )
    return Decision(
        'cuda',
        env_arch_list or arch_list(gpus),
        f'GPU present: {names}; driver CUDA {driver_cuda or "unknown"}',
        '',
    )


def cache_key(
    python_tag: str,
    torch_version: str,
    mmcv_version: str,
    decision: Decision,
    torch_cuda: str | None,
) -> str:
    """Wheel-cache key: python / torch / mmcv / CPU or CUDA version + arch list."""
    if decision.ops == 'cpu':
        ops = 'cpu'
    else:
        ops = f'cuda{torch_cuda}-sm' + '_'.join(
            a.replace('.', '') for a in decision.arch_list.split(';')
        )
    return f'{python_tag}-torch{torch_version}-mmcv{mmcv_version}-{ops}'


def torch_info() -> dict[str, str | None]:
    """torch's version and CUDA version ('none' for a CPU build); None when not installed."""
    try:
        import torch
    except ImportError:
        return dict(version=None, cuda=None, cuda_available=None)
    return dict(
        version=torch.__version__,
        cuda=torch.version.cuda or 'none',
        cuda_available=str(torch.cuda.is_available()),
    )


# --- the CUDA toolkit ----------------------------------------------------------------------


def nvcc_version(nvcc: str) -> str | None:
    match = re.search(
        r'release (\d+\.\d+)', run_text([nvcc, '--version']) or ''
    )
    return match.group(1) if match else None


def installed_nvcc(cuda: str) -> str | None:
    """An installed CUDA toolkit of version ``cuda``: the first of CUDA_HOME,
    /usr/local/cuda-<cuda>, /usr/local/cuda and the one of the ``nvcc`` on PATH whose
    ``bin/nvcc`` is that version and which has the CUDA headers (``include/cuda_runtime.h``;
    an ``nvcc`` wrapper script in /usr/local/bin does not make /usr/local a toolkit)."""
    homes = [os.environ['CUDA_HOME']] if os.environ.get('CUDA_HOME') else []
    homes += [f'/usr/local/cuda-{cuda}', '/usr/local/cuda']
    if shutil.which('nvcc'):
        homes.append(
            osp.dirname(osp.dirname(osp.realpath(shutil.which('nvcc'))))
        )
    for home in homes:
        nvcc = osp.join(home, 'bin', 'nvcc')
        if (
            osp.isfile(nvcc)
            and osp.isfile(osp.join(home, 'include', 'cuda_runtime.h'))
            and nvcc_version(nvcc) == cuda
        ):
            return home
    return None


def toolkit_wheels(cuda: str) -> list[str]:
    """NVIDIA's PyPI wheels that make a CUDA ``cuda`` toolkit for building extensions."""
    if major(cuda) == 12:
        names = [
            'nvidia-cuda-nvcc-cu12',
            'nvidia-cuda-runtime-cu12',
            'nvidia-cuda-cccl-cu12',
        ]
    elif major(cuda) >= 13:
        names = [
            'nvidia-cuda-nvcc',
            'nvidia-cuda-crt',
            'nvidia-nvvm',
            'nvidia-cuda-runtime',
            'nvidia-cuda-cccl',
        ]
    else:
        return []
    return [f'{n}=={cuda}.*' for n in names]


def assemble_toolkit(wheel_dirs: list[str], home: str) -> str:
    """A CUDA_HOME at ``home`` made of links into the unpacked NVIDIA wheels.

    ``wheel_dirs`` are site-packages folders holding ``nvidia/*`` (the toolkit wheels and
    the venv's own, whose cuBLAS / cuSPARSE / cuSOLVER headers torch's headers include).
    nvcc finds its own parts (crt, nvvm) next to its real location; the compiler flags of
    torch's extension builder add ``home/include`` and link ``home/lib64``.
    """
    roots = [
        d
        for w in wheel_dirs
        for d in sorted(glob.glob(osp.join(w, 'nvidia', '*')))
        if osp.isdir(d)
    ]
    for sub in ('bin', 'include', 'lib64', 'nvvm'):
        os.makedirs(osp.join(home, sub), exist_ok=True)
    for root in roots:
        for sub, dst in (
            ('bin', 'bin'),
            ('include', 'include'),
            ('lib', 'lib64'),
            ('nvvm', 'nvvm'),
        ):
            src_dir = osp.join(root, sub)
            if not osp.isdir(src_dir):
                continue
            for entry in os.listdir(src_dir):
                link = osp.join(home, dst, entry)
                if entry in ('__init__.py', '__pycache__') or osp.lexists(
                    link
                ):
                    continue
                os.symlink(osp.join(src_dir, entry), link)
    # The linker wants libcudart.so; the wheels ship libcudart.so.<major> only.
    lib64 = osp.join(home, 'lib64')
    for versioned in glob.glob(osp.join(lib64, 'lib*.so.*')):
        plain = re.sub(r'\.so\.[0-9.]+$', '.so', versioned)
        if not osp.lexists(plain):
            os.symlink(osp.basename(versioned), plain)
    nvcc = osp.join(home, 'bin', 'nvcc')
    if not osp.isfile(nvcc):
        raise FileNotFoundError(
            f'no nvcc in the toolkit wheels under {wheel_dirs}'
        )
    return home


def toolkit(
    cuda: str,
    directory: str,
    python: str,
    site_packages: str,
    plan: bool = False,
) -> str:
    """CUDA_HOME for building against CUDA ``cuda``; installs NVIDIA's wheels if needed.

    With ``plan``, installs nothing and says where the toolkit would come from.
    """
    found = installed_nvcc(cuda)
    if found:
        return found + (f' (its nvcc is CUDA {cuda})' if plan else '')
    wheels = toolkit_wheels(cuda)
    if not wheels:
        raise RuntimeError(
            f'no CUDA {cuda} toolkit found and none on PyPI for it: install '
            f'the CUDA toolkit {cuda} (nvcc) and set CUDA_HOME'
        )
    prefix = osp.join(directory, 'wheels')
    home = osp.join(directory, 'home')
    if plan:
        if osp.isfile(osp.join(home, 'bin', 'nvcc')):
            return f'{home} (assembled before)'
        return (
            f'{home}, assembled from PyPI: {" ".join(wheels)} (when these hold no '
            f'nvcc, the set-up stops and names the CUDA toolkit {cuda} to install)'
        )
    if not osp.isfile(osp.join(home, 'bin', 'nvcc')):
        print(
            f'[mmcv_build_env] installing the CUDA {cuda} compiler from PyPI: '
            + ' '.join(wheels),
            file=sys.stderr,
        )
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run(
            [
                python,
                '-m',
                'pip',
                'install',
                '-q',
                '--disable-pip-version-check',
                '--no-deps',
                '--upgrade',
                '--target',
                prefix,
                *wheels,
            ],
            check=True,
        )
        try:
            assemble_toolkit([prefix, site_packages], home)
        except FileNotFoundError:
            shutil.rmtree(home, ignore_errors=True)
            raise RuntimeError(
                f"PyPI's {wheels[0]} has no nvcc for CUDA {cuda} (early 12.x wheels ship "
                f'ptxas only): install the CUDA toolkit {cuda} (NVIDIA\'s cuda-toolkit-'
                f'{cuda.replace(".", "-")} package, or conda\'s cuda-nvcc={cuda} with '
                f'cuda-cudart-dev={cuda}) and set CUDA_HOME to it'
            ) from None
    got = nvcc_version(osp.join(home, 'bin', 'nvcc'))
    if got != cuda:
        raise RuntimeError(
            f'the assembled nvcc in {home} is CUDA {got}, need {cuda}: '
            f'install the CUDA toolkit {cuda} and set CUDA_HOME'
        )
    return home


# --- verification --------------------------------------------------------------------------


def verify(ops: str) -> None:
    """Runs mmcv's nms and roi_align (and sigmoid_focal_loss on CUDA); raises on failure."""
    import torch
    from mmcv.ops import nms, roi_align, sigmoid_focal_loss

    device = 'cuda' if ops == 'cuda' else 'cpu'
    if ops == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(
            'CUDA ops requested but torch.cuda.is_available() is False'
        )
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 1.0, 11.0, 11.0],
            [20.0, 20.0, 30.0, 30.0],
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes.to(device), scores.to(device), iou_threshold=0.5)
    assert keep.cpu().tolist() == [0, 2], keep
    feats = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(1, 2, 8, 8)
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    out = roi_align(
        feats.to(device), rois.to(device), (2, 2), 1.0, 2, 'avg', True
    )
    ref = roi_align(feats, rois, (2, 2), 1.0, 2, 'avg', True)
    assert torch.allclose(out.cpu(), ref, atol=1e-5), (out, ref)
    if ops == 'cuda':
        logits = torch.tensor([[0.3, -1.2], [2.0, 0.1]], device=device)
        labels = torch.tensor([1, 0], device=device)
        loss = sigmoid_focal_loss(logits, labels, 2.0, 0.25, None, 'mean')
        assert torch.isfinite(loss), loss
    print(
        f'[mmcv_build_env] mmcv ops run on {device}: nms, roi_align'
        + (', sigmoid_focal_loss' if ops == 'cuda' else ''),
        file=sys.stderr,
    )


def shell_lines(values: dict[str, str]) -> str:
    return '\n'.join(f'{k}={shlex.quote(v)}' for k, v in values.items())


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser(
        'decide', help='print the build decision as shell assignments'
    )
    p.add_argument(
        '--torch-cuda',
        help="torch.version.cuda ('none': CPU torch); default: "
        'the installed torch, or unknown',
    )
    p.add_argument('--torch-version', help='default: the installed torch')
    p.add_argument('--mmcv-version', required=True)
    p = sub.add_parser(
        'toolkit', help='print a CUDA_HOME for the given CUDA version'
    )
    p.add_argument('--cuda', required=True)
    p.add_argument(
        '--dir', required=True, help='where to assemble it from PyPI wheels'
    )
    p.add_argument(
        '--site-packages', required=True, help="the venv's site-packages"
    )
    p.add_argument(
        '--plan',
        action='store_true',
        help='say what it would do, change nothing',
    )
    p = sub.add_parser('verify', help="run the installed mmcv's ops")
    p.add_argument('--ops', choices=('cpu', 'cuda'), required=True)
    return parser.parse_args()


def main():
    args = parse_args()
    if args.command == 'decide':
        info = torch_info()
        torch_cuda = args.torch_cuda or info['cuda']
        torch_version = args.torch_version or info['version'] or 'unknown'
        gpus = query_gpus()
        driver = driver_cuda_version() if gpus else None
        decision = decide(
            gpus,
            driver,
            torch_cuda,
            os.environ.get('PVTFPN_MMCV_OPS', 'auto'),
            os.environ.get('TORCH_CUDA_ARCH_LIST', ''),
        )
        tag = f'cp{sys.version_info.major}{sys.version_info.minor}'
        print(
            shell_lines(
                dict(
                    OPS=decision.ops,
                    ARCH_LIST=decision.arch_list,
                    REASON=decision.reason,
                    ERROR=decision.error,
                    TORCH_CUDA=torch_cuda or 'unknown',
                    DRIVER_CUDA=driver or '',
                    GPUS='; '.join(
                        f'{g.name} sm {g.compute_cap} driver {g.driver}'
                        for g in gpus
                    ),
                    CACHE_KEY=cache_key(
                        tag,
                        torch_version,
                        args.mmcv_version,
                        decision,
                        torch_cuda,
                    ),
                )
            )
        )
    elif args.command == 'toolkit':
        try:
            print(
                toolkit(
                    args.cuda,
                    args.dir,
                    sys.executable,
                    args.site_packages,
                    args.plan,
                )
            )
        except RuntimeError as e:
            sys.exit(f'[mmcv_build_env] {e}')
    else:
        verify(args.ops)


if __name__ == '__main__':
    main()
