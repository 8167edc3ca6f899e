"""End-to-end tests of the tools on the toy dataset (tiny images, a few iterations):
tools/train.py + tools/test.py (mmdet and mmseg configs), resume after an interruption,
the torchrun launcher (2 processes, gloo, CPU) and ``mim train`` / ``mim test``."""

import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from pvtfpn_tools.toy_data import write_toy_data

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS = osp.dirname(osp.abspath(__file__))
QUICKSTART = osp.join(ROOT, 'configs', 'quickstart')
MIM = osp.join(osp.dirname(sys.executable), 'mim')
TIMEOUT = 600


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('toy'))
    write_toy_data(root, num_train=8, num_val=4, img_size=64, seed=0)
    return root


def tiny_config(tmp_path, toy, task, extra=''):
    """A config file deriving from a quickstart config: toy data at ``toy``, 2 images a
    batch, no dataloader workers, logging every iteration."""
    loaders = '''
{name} = dict(batch_size=2, num_workers=0, persistent_workers=False,
              dataset=dict(data_root=data_root))'''
    body = ''.join(
        loaders.format(name=n)
        for n in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    )
    if task == 'det':
        base = osp.join(QUICKSTART, 'retinanet_pvtv2-b0_topdownfpn_toy-96.py')
        head = f"data_root = '{toy}/coco/'\n"
        body += (
            '\nval_evaluator = dict(ann_file=data_root + '
            "'annotations/instances_val2017.json')\ntest_evaluator = val_evaluator\n"
            # after 2 iterations no score passes 0.05: keep every box to evaluate
            'model = dict(test_cfg=dict(score_thr=0.0))\n'
        )
    else:
        base = osp.join(QUICKSTART, 'fpn_pvtv2-b0_topdownfpn_toy-96.py')
        head = f"data_root = '{toy}/ade/ADEChallengeData2016'\n"
    text = (
        f"_base_ = '{base}'\n{head}{body}\n"
        'default_hooks = dict(logger=dict(interval=1))\n'
        'env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))\n' + extra
    )
    path = tmp_path / f'tiny_{task}.py'
    path.write_text(text)
    return str(path)


def iters(n):
    """cfg-options: ``n`` iterations, validation and a checkpoint at the end."""
    return [
        f'train_cfg.max_iters={n}',
        f'train_cfg.val_interval={n}',
        f'default_hooks.checkpoint.interval={n}',
    ]


def run(cmd, cwd=ROOT, env=None, check=True):
    env = dict(os.environ if env is None else env)
    # no OpenMP spinning on shared cores
    env.setdefault('OMP_NUM_THREADS', '1')
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{cmd} failed ({proc.returncode}):\n{proc.stdout[-6000:]}'
        )
    return proc


def tool(name, *args, **kwargs):
    return run(
        [sys.executable, osp.join(ROOT, 'tools', name), *args], **kwargs
    )


@pytest.mark.slow
def test_train_and_test_mmdet(tmp_path, toy):
    cfg = tiny_config(tmp_path, toy, 'det')
    work = str(tmp_path / 'work')
    out = tool('train.py', cfg, '--work-dir', work, '--cfg-options', *iters(2))
    assert 'coco/bbox_mAP' in out.stdout
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)
    show = str(tmp_path / 'show')
    out = tool(
        'test.py',
        cfg,
        ckpt,
        '--work-dir',
        work,
        '--show-dir',
        show,
        '--out',
        str(tmp_path / 'preds.pkl'),
    )
    assert re.search(r'coco/bbox_mAP: [\d.]+', out.stdout)
    # every val image drawn
    assert len(glob.glob(osp.join(show, '*.jpg'))) == 4
    assert osp.isfile(tmp_path / 'preds.pkl')


@pytest.mark.slow
def test_train_and_test_mmseg(tmp_path, toy):
    cfg = tiny_config(tmp_path, toy, 'seg')
    work = str(tmp_path / 'work')
    out = tool('train.py', cfg, '--work-dir', work, '--cfg-options', *iters(2))
    assert 'mIoU' in out.stdout
    ckpt = osp.join(work, 'iter_2.pth')
    show = str(tmp_path / 'show')
    out = tool(
        'test.py',
        cfg,
        ckpt,
        '--work-dir',
        work,
        '--show-dir',
        show,
        '--show-interval',
        '1',
    )
    assert re.search(r'mIoU: [\d.]+', out.stdout)
    assert (
        len(glob.glob(osp.join(show, 'vis_data', 'vis_image', '*.png'))) == 4
    )


@pytest.mark.slow
def test_resume_after_interruption(tmp_path, toy):
    """A run is killed (SIGKILL) right after its checkpoint at iteration 4 of 8, then
    ``--resume`` continues it from iteration 4 to the end."""
    work = str(tmp_path / 'work')
    opts = [
        'train_cfg.max_iters=8',
        'train_cfg.val_interval=8',
        'default_hooks.checkpoint.interval=4',
        'default_hooks.checkpoint.max_keep_ckpts=3',
    ]
    killer = tiny_config(
        tmp_path,
        toy,
        'seg',
        extra="custom_imports = dict(imports=['pvtfpn_mm', '_interrupt_hook'], "
        'allow_failed_imports=False)\n'
        "custom_hooks = [dict(type='KillAfterIterHook', iteration=4)]\n",
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            p for p in (TESTS, os.environ.get('PYTHONPATH')) if p
        ),
    )
    first = tool(
        'train.py',
        killer,
        '--work-dir',
        work,
        '--cfg-options',
        *opts,
        env=env,
        check=False,
    )
    assert first.returncode == -9, first.stdout[-3000:]  # killed by SIGKILL
    assert osp.isfile(osp.join(work, 'iter_4.pth'))
    assert not osp.exists(osp.join(work, 'iter_8.pth'))

    # same settings, without the killer hook
    plain = tiny_config(tmp_path, toy, 'seg')
    out = tool(
        'train.py',
        plain,
        '--work-dir',
        work,
        '--resume',
        '--cfg-options',
        *opts,
    )
    assert re.search(
        r'resumed? (from|checkpoint)|Load checkpoint from .*iter_4\.pth',
        out.stdout,
        re.I,
    ), out.stdout[-3000:]
    assert (
        'Iter(train) [5/8]' in out.stdout
        and 'Iter(train) [1/8]' not in out.stdout
    )
    assert 'mIoU' in out.stdout
    assert osp.isfile(osp.join(work, 'iter_8.pth'))


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path, toy):
    cfg = tiny_config(tmp_path, toy, 'det')
    work = str(tmp_path / 'work')
    out = tool(
        'dist_train.py',
        cfg,
        '2',
        '--work-dir',
        work,
        '--cfg-options',
        *iters(2),
    )
    assert 'torch.distributed.run' in out.stdout
    # mmengine's environment report calls the world size "GPU number"
    assert (
        'Distributed training: True' in out.stdout
        and 'GPU number: 2' in out.stdout
    )
    # 4 val images, 2 a batch, split over 2 processes: one batch each, metric gathered
    assert 'Iter(val) [1/1]' in out.stdout and 'coco/bbox_mAP' in out.stdout
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    out = tool(
        'dist_test.py',
        cfg,
        osp.join(work, 'iter_2.pth'),
        '2',
        '--work-dir',
        work,
    )
    assert 'GPU number: 2' in out.stdout and 'Iter(test) [1/1]' in out.stdout
    assert 'coco/bbox_mAP' in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize('task,package', [('det', 'mmdet'), ('seg', 'mmseg')])
def test_mim_train_and_test(tmp_path, toy, task, package):
    cfg = tiny_config(tmp_path, toy, task)
    work = str(tmp_path / 'work')
    run(
        [
            MIM,
            'train',
            package,
            cfg,
            '--gpus',
            '0',
            '--work-dir',
            work,
            '--cfg-options',
            *iters(2),
        ]
    )
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)
    out = run(
        [MIM, 'test', package, cfg, '--checkpoint', ckpt, '--work-dir', work]
    )
    assert ('coco/bbox_mAP' if task == 'det' else 'mIoU') in out.stdout


@pytest.mark.slow
def test_quickstart_smoke(tmp_path):
    """tools/quickstart.py end to end with 2 iterations per model (the real run trains
    800 + 400 iterations; see the README for its runtime and metrics)."""
    out = tool(
        'quickstart.py',
        '--data',
        str(tmp_path / 'toy'),
        '--out',
        str(tmp_path / 'qs'),
        '--det-iters',
        '2',
        '--seg-iters',
        '2',
    )
    assert (
        'pvtfpn_mm quickstart results' in out.stdout and 'mIoU' in out.stdout
    )
    with open(tmp_path / 'qs' / 'metrics.json') as f:
        results = json.load(f)
    assert set(results) >= {'det', 'seg', 'total_s'}
    assert 'mIoU' in results['seg']['metrics']
    for task in ('det', 'seg'):
        assert osp.isfile(results[task]['picture'])
        assert osp.isfile(results[task]['checkpoint'])
