"""tools/setup_env.sh's decisions without a GPU: a fake ``nvidia-smi`` on PATH and a fake
torch CUDA version (``PVTFPN_TORCH_CUDA``) drive ``--dry-run``, which prints the build
environment it would use; tools/mmcv_build_env.py's pieces are tested directly.
"""

import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
import mmcv_build_env as mbe  # noqa: E402

H100 = mbe.Gpu('NVIDIA H100 80GB HBM3', '9.0', '550.54.15')
A100 = mbe.Gpu('NVIDIA A100-SXM4-80GB', '8.0', '550.54.15')
FAKE_SMI = """#!/bin/sh
case "$*" in
  *--query-gpu=name,compute_cap,driver_version*) {rows_full} ;;
  *--query-gpu=name,compute_cap*) {rows} ;;
  *) echo "| NVIDIA-SMI {driver}   Driver Version: {driver}   CUDA Version: {cuda} |" ;;
esac
"""


def fake_smi(tmp_path, gpus=(H100, A100), driver_cuda='12.4', fail=False):
    """A folder holding a fake nvidia-smi (exits 9 like one without a driver if ``fail``)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / 'nvidia-smi'
    if fail:
        smi.write_text('#!/bin/sh\necho "NVIDIA-SMI has failed" >&2\nexit 9\n')
    else:
        rows_full = '; '.join(
            f'echo "{g.name}, {g.compute_cap}, {g.driver}"' for g in gpus
        )
        rows = '; '.join(f'echo "{g.name}, {g.compute_cap}"' for g in gpus)
        smi.write_text(
            FAKE_SMI.format(
                rows_full=rows_full,
                rows=rows,
                driver=gpus[0].driver,
                cuda=driver_cuda,
            )
        )
    smi.chmod(0o755)
    return str(bin_dir)


def dry_run(tmp_path, *args, path=None, torch_cuda=None, **env):
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(('PVTFPN_', 'TORCH_CUDA'))
    }
    e.update(
        PVTFPN_VENV=str(tmp_path / 'venv'),
        PVTFPN_VENV_OLDEST=str(tmp_path / 'venv-old'),
        PVTFPN_CACHE=str(tmp_path / 'cache'),
        **env,
    )
    if path is not None:
        e['PATH'] = path + os.pathsep + e['PATH']
    if torch_cuda is not None:
        e['PVTFPN_TORCH_CUDA'] = torch_cuda
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'setup_env.sh'), '--dry-run', *args],
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


# --- the decision ---------------------------------------------------------------------------


def test_decide_without_gpu_builds_cpu_ops():
    d = mbe.decide([], None, '13.0')
    assert (d.ops, d.arch_list, d.error) == ('cpu', '', '')
    assert 'no NVIDIA GPU' in d.reason


def test_decide_with_gpus_builds_their_archs():
    d = mbe.decide([H100, A100, H100], '12.4', '12.1')
    assert (d.ops, d.arch_list, d.error) == ('cuda', '8.0;9.0', '')
    assert 'H100' in d.reason and 'A100' in d.reason
    assert (
        mbe.decide([H100], '12.4', '12.1', env_arch_list='9.0+PTX').arch_list
        == '9.0+PTX'
    )


def test_decide_gpu_with_cpu_torch_builds_cpu_ops():
    d = mbe.decide([H100], '12.4', 'none')
    assert (d.ops, d.error) == ('cpu', '')
    assert 'torch is a CPU build' in d.reason


def test_decide_refuses_a_driver_older_than_torchs_cuda():
    d = mbe.decide([H100], '12.4', '13.0')
    assert 'supports CUDA up to 12.4, torch is built with CUDA 13.0' in d.error
    assert 'PVTFPN_MMCV_OPS=cpu' in d.error and 'whl/cu124' in d.error
    # same major: minor compatibility
    assert mbe.decide([H100], '12.8', '12.1').error == ''


def test_decide_forced():
    assert mbe.decide([H100], '12.4', '12.1', force='cpu').ops == 'cpu'
    d = mbe.decide([], None, '12.1', force='cuda', env_arch_list='8.6')
    assert (d.ops, d.arch_list, d.error) == ('cuda', '8.6', '')
    assert (
        'set TORCH_CUDA_ARCH_LIST'
        in mbe.decide([], None, '12.1', force='cuda').error
    )
    assert (
        'torch is a CPU build'
        in mbe.decide([H100], '12.4', 'none', force='cuda').error
    )
    assert (
        "PVTFPN_MMCV_OPS must be one of ('auto', 'cpu', 'cuda'), got 'gpu'"
        in mbe.decide([], None, '12.1', force='gpu').error
    )


def test_decide_before_torch_is_installed():
    d = mbe.decide([H100], '12.4', None)
    assert d.ops == 'cpu' and 'decided after installing it' in d.reason


def test_cache_key_records_cpu_or_cuda_and_archs():
    cpu = mbe.decide([], None, '13.0')
    cuda = mbe.decide([H100, A100], '13.0', '13.0')
    assert (
        mbe.cache_key('cp311', '2.14.1+cu130', '2.1.0', cpu, '13.0')
        == 'cp311-torch2.14.1+cu130-mmcv2.1.0-cpu'
    )
    assert (
        mbe.cache_key('cp311', '2.14.1+cu130', '2.1.0', cuda, '13.0')
        == 'cp311-torch2.14.1+cu130-mmcv2.1.0-cuda13.0-sm80_90'
    )


def test_nvidia_smi_parsing(tmp_path, monkeypatch):
    monkeypatch.setenv(
        'PATH', fake_smi(tmp_path) + os.pathsep + os.environ['PATH']
    )
    assert mbe.query_gpus() == [H100, A100]
    assert mbe.driver_cuda_version() == '12.4'
    monkeypatch.setenv(
        'PATH', fake_smi(tmp_path, fail=True) + os.pathsep + os.environ['PATH']
    )
    assert mbe.query_gpus() == []


# --- the toolkit ----------------------------------------------------------------------------


def test_toolkit_wheels():
    assert mbe.toolkit_wheels('12.1') == [
        'nvidia-cuda-nvcc-cu12==12.1.*',
        'nvidia-cuda-runtime-cu12==12.1.*',
        'nvidia-cuda-cccl-cu12==12.1.*',
    ]
    assert 'nvidia-cuda-nvcc==13.0.*' in mbe.toolkit_wheels('13.0')
    assert 'nvidia-nvvm==13.0.*' in mbe.toolkit_wheels('13.0')
    assert mbe.toolkit_wheels('11.8') == []


def fake_toolkit(home, version, headers=True):
    (home / 'bin').mkdir(parents=True)
    nvcc = home / 'bin' / 'nvcc'
    nvcc.write_text(
        f'#!/bin/sh\necho "Cuda compilation tools, release {version}, V{version}.1"\n'
    )
    nvcc.chmod(0o755)
    if headers:
        (home / 'include').mkdir()
        (home / 'include' / 'cuda_runtime.h').write_text('')
    return str(home)


def test_installed_toolkit_is_found_by_version(tmp_path, monkeypatch):
    home = fake_toolkit(tmp_path / 'cuda-12.4', '12.4')
    monkeypatch.setenv('CUDA_HOME', home)
    assert mbe.installed_nvcc('12.4') == home
    assert mbe.installed_nvcc('12.2') in (
        None,
        '/usr/local/cuda-12.2',
        '/usr/local/cuda',
    )
    # an nvcc (wrapper) on PATH without the CUDA headers beside it is not a toolkit
    bare = fake_toolkit(tmp_path / 'wrapper', '12.6', headers=False)
    monkeypatch.delenv('CUDA_HOME')
    monkeypatch.setenv(
        'PATH', osp.join(bare, 'bin') + os.pathsep + os.environ['PATH']
    )
    assert mbe.installed_nvcc('12.6') in (
        None,
        '/usr/local/cuda-12.6',
        '/usr/local/cuda',
    )


def test_assemble_toolkit_links_the_wheels(tmp_path):
    wheels = tmp_path / 'wheels'
    for sub in (
        'cuda_nvcc/bin',
        'cuda_nvcc/nvvm/bin',
        'cuda_runtime/include',
        'cuda_runtime/lib',
        'cublas/include',
    ):
        (wheels / 'nvidia' / sub).mkdir(parents=True)
    nvcc = wheels / 'nvidia' / 'cuda_nvcc' / 'bin' / 'nvcc'
    nvcc.write_text(
        '#!/bin/sh\necho "Cuda compilation tools, release 12.4, V12.4.131"\n'
    )
    nvcc.chmod(0o755)
    (
        wheels / 'nvidia' / 'cuda_runtime' / 'include' / 'cuda_runtime.h'
    ).write_text('')
    (wheels / 'nvidia' / 'cublas' / 'include' / 'cublas_v2.h').write_text('')
    (
        wheels / 'nvidia' / 'cuda_runtime' / 'lib' / 'libcudart.so.12'
    ).write_text('')
    home = mbe.assemble_toolkit([str(wheels)], str(tmp_path / 'home'))
    assert mbe.nvcc_version(osp.join(home, 'bin', 'nvcc')) == '12.4'
    assert osp.isfile(osp.join(home, 'include', 'cuda_runtime.h'))
    assert osp.isfile(osp.join(home, 'include', 'cublas_v2.h'))
    assert osp.realpath(osp.join(home, 'lib64', 'libcudart.so')).endswith(
        'libcudart.so.12'
    )
    assert osp.isdir(osp.join(home, 'nvvm', 'bin'))
    with pytest.raises(
        FileNotFoundError, match='no nvcc in the toolkit wheels'
    ):
        mbe.assemble_toolkit(
            [str(tmp_path / 'empty')], str(tmp_path / 'home2')
        )


# --- setup_env.sh --dry-run -----------------------------------------------------------------


def test_dry_run_gpu_host_oldest(tmp_path):
    rc, out = dry_run(
        tmp_path, 'oldest', path=fake_smi(tmp_path), torch_cuda='12.1'
    )
    assert rc == 0, out
    assert (
        'torch==2.1.2' in out
        and 'timm==0.9.16' in out
        and 'numpy==1.26.4' in out
    )
    assert 'mmcv ops       cuda: GPU present' in out
    assert "FORCE_CUDA=1 MMCV_WITH_OPS=1 TORCH_CUDA_ARCH_LIST='8.0;9.0'" in out
    assert 'cp310-torch2.1.2+cu121-mmcv2.1.0-cuda12.1-sm80_90' in out
    assert (
        'nms, roi_align and sigmoid_focal_loss must run on a CUDA tensor'
        in out
    )
    assert "mmcv's own -std=c++17 (torch < 2.10: built unpatched)" in out
    assert (
        'deploy extra   requirements/deploy-oldest.txt: mmdeploy==1.3.1'
        ' onnx==1.15.0 onnxruntime==1.16.3'
    ) in out
    assert (
        'torch          2.1.2 from PyPI (a CUDA 12.1 build, for the GPU)'
        in out
    )
    assert 'CUDA_HOME' in out


def test_dry_run_cpu_host_newest(tmp_path):
    rc, out = dry_run(
        tmp_path, path=fake_smi(tmp_path, fail=True), torch_cuda='13.0'
    )
    assert rc == 0, out
    assert 'torch==2.14.1' in out and 'GPUs           none' in out
    assert 'mmcv ops       cpu: no NVIDIA GPU' in out
    assert 'CUDA_VISIBLE_DEVICES= FORCE_CUDA=0 MMCV_WITH_OPS=1' in out
    assert 'cp311-torch2.14.1+cu130-mmcv2.1.0-cpu' in out
    assert 'patched to -std=c++20' in out
    assert (
        'deploy extra   requirements/deploy.txt: onnx==1.23.2'
        ' onnxruntime==1.31.1 onnxscript==0.7.2'
    ) in out
    assert 'PyPI has only CUDA builds of torch for Linux' in out
    assert 'PVTFPN_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu' in out


def test_dry_run_cpu_torch_index(tmp_path):
    rc, out = dry_run(
        tmp_path,
        path=fake_smi(tmp_path, fail=True),
        torch_cuda='none',
        PVTFPN_TORCH_INDEX_URL='https://download.pytorch.org/whl/cpu',
    )
    assert rc == 0, out
    assert 'from the index https://download.pytorch.org/whl/cpu' in out
    assert 'cp311-torch2.14.1-mmcv2.1.0-cpu' in out


def test_dry_run_old_driver_fails_loudly(tmp_path):
    rc, out = dry_run(
        tmp_path,
        path=fake_smi(tmp_path, driver_cuda='12.4'),
        torch_cuda='13.0',
    )
    assert rc == 1
    assert (
        'ERROR          the NVIDIA driver (550.54.15) supports CUDA up to 12.4'
        in out
    )


def test_dry_run_bad_argument(tmp_path):
    rc, out = dry_run(tmp_path, 'middle')
    assert rc == 2
    assert (
        "unknown argument 'middle' (allowed: --dry-run, newest, oldest)" in out
    )


@pytest.mark.slow
def test_env_info_reports_mmcv_cuda_ops():
    import torch

    from pvtfpn_tools.env_info import mmcv_cuda_ops, torch_cuda

    ops = mmcv_cuda_ops()
    info = torch_cuda()
    assert info['build'] == (torch.version.cuda or 'CPU only')
    assert info['available'] == str(torch.cuda.is_available())
    # a GPU host's set-up builds CUDA ops (and checks them)
    if torch.cuda.is_available():
        assert ops[0].isdigit(), ops
    else:
        assert ops == 'not available' or ops[0].isdigit(), ops
    out = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'env_info.py')],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert 'mmcv CUDA ops   ' in out and 'torch CUDA build' in out
