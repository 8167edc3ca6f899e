"""The tools' library in-process (pvtfpn_mm.tools_lib, pvtfpn_mm.env_info): the fast loop's
counterpart of tests/test_tools.py, which runs the real tools as processes (slow).

A real Runner trains the quickstart RetinaNet two iterations on toy COCO data and tests
the checkpoint; the torchrun command line and the CPU-distributed preparation are checked
without starting processes."""

import re
import sys

import pytest
import torch
from mmengine.config import Config
from test_tools import tiny_config

from pvtfpn_mm.engine import tasks as runner

from pvtfpn_tools.env_info import mmcv_cuda_ops, stack_versions, torch_cuda
from pvtfpn_tools.launch import free_port, torchrun_command
from pvtfpn_tools.toy_data import write_toy_data


def test_train_and_test_options_build_a_runner(tmp_path):
    """What tools/train.py and tools/test.py do before ``runner.train()`` / ``.test()``
    (those two run in tests/test_tools.py, as processes)."""
    toy = str(tmp_path / 'toy')
    write_toy_data(toy, num_train=2, num_val=2, img_size=64, seed=0)
    cfg = runner.load_config(
        tiny_config(tmp_path, toy, 'det'), work_dir=str(tmp_path / 'work')
    )
    runner._setup_dynamo(runner.task_of(cfg))
    cfg = runner.prepare_train_config(cfg, resume=True, amp=True)
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.optim_wrapper.type == (
        'AmpOptimWrapper'
        if torch.cuda.is_available()
        else 'CPUAmpOptimWrapper'
    )
    built = runner._build_runner(cfg)
    assert type(built).__name__ == 'SafeRunner'
    assert built.work_dir == str(tmp_path / 'work')

    cfg = runner.load_config(tiny_config(tmp_path, toy, 'det'))
    cfg = runner.prepare_test_config(
        cfg, 'x.pth', show_dir=str(tmp_path / 'show'), tta=True
    )
    assert cfg.load_from == 'x.pth'
    assert cfg.default_hooks.visualization.test_out_dir == str(
        tmp_path / 'show'
    )
    assert 'tta_model' in cfg
    with pytest.raises(ValueError, match="'preds.json'"):
        runner.prepare_test_config(cfg, 'x.pth', out='preds.json')


def test_load_config_sets_work_dir_launcher_and_options(tmp_path):
    cfg = runner.load_config(
        tiny_config(tmp_path, str(tmp_path), 'seg'),
        cfg_options={'train_cfg.max_iters': 3},
        work_dir=str(tmp_path / 'w'),
    )
    assert cfg.work_dir == str(tmp_path / 'w')
    assert cfg.launcher == 'none'
    assert cfg.train_cfg.max_iters == 3
    assert runner.task_of(cfg) == 'mmseg'


def test_torchrun_command():
    env = dict(NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1', PORT='29511')
    cmd = torchrun_command('tools/train.py', ['c.py', '--amp'], 4, env=env)
    assert cmd[:3] == [sys.executable, '-m', 'torch.distributed.run']
    assert cmd[3:9] == [
        '--nnodes=2',
        '--node_rank=1',
        '--master_addr=10.0.0.1',
        '--master_port=29511',
        '--nproc_per_node=4',
        'tools/train.py',
    ]
    assert cmd[9:] == ['c.py', '--amp', '--launcher', 'pytorch']
    # one node without PORT: a free port of this machine
    port = int(torchrun_command('t.py', [], 1, env={})[6].split('=')[1])
    assert 0 < port < 65536 and 0 < free_port() < 65536


def test_cpu_distributed_is_prepared_only_for_pytorch_launcher():
    from pvtfpn_mm.engine.cpu_dist import prepare_cpu_distributed

    cfg = Config(dict(launcher='none'))
    prepare_cpu_distributed(cfg)
    assert 'model_wrapper_cfg' not in cfg and 'env_cfg' not in cfg
    if torch.cuda.is_available():
        pytest.skip(
            'with CUDA the configs keep nccl and mmengine wraps the model'
        )


def test_env_info_in_process():
    versions = stack_versions()
    assert re.match(r'\d+\.\d+', versions['torch'])
    info = torch_cuda()
    assert info['build'] == (torch.version.cuda or 'CPU only')
    ops = mmcv_cuda_ops()
    assert ops == 'not available' or ops[0].isdigit(), ops


def test_env_info_survives_a_crashing_cuda_version_query(monkeypatch):
    """mmcv 2.1.0 built for CUDA 13 crashed in get_compiling_cuda_version (seen on an H100
    machine): env_info asks in a child process and says so instead of dying."""
    import subprocess

    from pvtfpn_tools import env_info

    monkeypatch.setattr(env_info, 'mmcv_ops_compiled', lambda: True)
    monkeypatch.setattr(
        env_info.subprocess,
        'run',
        lambda *a, **k: subprocess.CompletedProcess(a, -11, '', ''),
    )
    monkeypatch.setattr(env_info, '_ext_links_cuda', lambda: True)
    assert env_info.mmcv_cuda_ops() == (
        "unknown (mmcv's CUDA version query crashed with signal 11; "
        'mmcv._ext links the CUDA runtime)'
    )
