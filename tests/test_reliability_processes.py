"""Issue 9 with real processes: trainings killed with SIGKILL at several moments of a
checkpoint save always leave a resumable work dir and ``--resume`` finishes the run; two
trainings into one work dir; strict loading in tools/test.py and ``mim test``; ``--amp``
on the CPU; refusing to train over an earlier run's checkpoints, also under ``mim
train``. Tiny toy-data configs (tests/test_tools.py), 2 images a batch."""

import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint
from test_tools import MIM, ROOT, TESTS, run, tiny_config, tool, toy  # noqa: F401

import pvtfpn_mm  # noqa: F401  (as in the runs: mmengine's checkpoints load safely)

pytestmark = pytest.mark.slow

#: Saves every 2 iterations, keeping only the newest checkpoint (as the quickstart).
SCHEDULE = [
    'train_cfg.max_iters=8',
    'train_cfg.val_interval=8',
    'default_hooks.checkpoint.interval=2',
    'default_hooks.checkpoint.max_keep_ckpts=1',
]
KILL_IMPORTS = (
    "custom_imports = dict(imports=['pvtfpn_mm', '_kill_save_hook'], "
    'allow_failed_imports=False)\n'
)


def env_with_tests():
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            p for p in (TESTS, os.environ.get('PYTHONPATH')) if p
        ),
    )


def killer(tmp_path, toy, name, kill_step, kill_at, pause_file=None):  # noqa: F811
    """A seg config whose checkpoint hook kills the run at ``kill_at`` of save
    ``kill_step``."""
    pause = f', pause_file={pause_file!r}' if pause_file else ''
    path = tiny_config(
        tmp_path,
        toy,
        'seg',
        extra=KILL_IMPORTS
        + (
            f"default_hooks = dict(checkpoint=dict(type='KillDuringSaveHook', "
            f"kill_step={kill_step}, kill_at={kill_at!r}{pause}))\n"
        ),
    )
    os.rename(path, tmp_path / f'{name}.py')
    return str(tmp_path / f'{name}.py')


def pth_files(work):
    return sorted(n for n in os.listdir(work) if '.pth' in n)


def pointed(work):
    with open(osp.join(work, 'last_checkpoint')) as f:
        return osp.basename(f.read().strip())


def loads(path):
    # mmengine's loader (torch's safe loading with the globals pvtfpn_mm allows)
    checkpoint = _load_checkpoint(path, map_location='cpu')
    return checkpoint['meta']['iter']


def test_sigkill_at_every_moment_of_a_save_then_resume_finishes(tmp_path, toy):  # noqa: F811
    """One run, killed five times -- at the start of a save, in the middle of writing,
    after the rename, after last_checkpoint, and from outside while paused at a save --
    each time resumed with --resume; the last resume (with last_checkpoint deleted)
    finishes it."""
    work = str(tmp_path / 'work')
    env = env_with_tests()

    def train(
        name, step, moment, resume=True, pause_file=None, check=False, **kwargs
    ):
        cfg = killer(tmp_path, toy, name, step, moment, pause_file)
        args = [cfg, '--work-dir', work] + (['--resume'] if resume else [])
        return tool(
            'train.py',
            *args,
            '--cfg-options',
            *SCHEDULE,
            env=env,
            check=check,
            **kwargs,
        )

    # 1. killed right at the start of the save of iteration 4
    out = train('start', 4, 'start', resume=False)
    assert out.returncode == -signal.SIGKILL, out.stdout[-3000:]
    assert pth_files(work) == ['iter_2.pth'] and pointed(work) == 'iter_2.pth'

    # ... a new training without --resume would overwrite that: refused
    out = tool(
        'train.py',
        tiny_config(tmp_path, toy, 'seg'),
        '--work-dir',
        work,
        '--cfg-options',
        *SCHEDULE,
        check=False,
    )
    assert out.returncode != 0
    assert re.search(
        r'already holds checkpoints of an earlier run \(iter_2\.pth, '
        r'last_checkpoint\).*Continue that run with --resume, or train into a '
        r'fresh --work-dir',
        out.stdout,
    ), out.stdout[-3000:]
    assert pth_files(work) == ['iter_2.pth']

    # 2. resumed, killed in the middle of writing iteration 4's checkpoint
    out = train('mid_write', 4, 'mid_write')
    assert out.returncode == -signal.SIGKILL, out.stdout[-3000:]
    assert 'resuming from ' + osp.join(work, 'iter_2.pth') in out.stdout
    assert pth_files(work) == ['iter_2.pth', 'iter_4.pth.partial']
    assert (
        pointed(work) == 'iter_2.pth'
        and loads(osp.join(work, 'iter_2.pth')) == 2
    )

    # 3. resumed (the partial file is removed), killed after iter_4.pth is in place but
    #    before last_checkpoint names it
    out = train('published', 4, 'published')
    assert out.returncode == -signal.SIGKILL, out.stdout[-3000:]
    assert 'interrupted checkpoint save' in out.stdout
    assert (
        pth_files(work) == ['iter_2.pth', 'iter_4.pth']
        and pointed(work) == 'iter_2.pth'
    )

    # 4. resumed from iter_4 although last_checkpoint names iter_2; killed after
    #    last_checkpoint names iter_6, before iter_4 is removed
    out = train('pointed', 6, 'pointed')
    assert out.returncode == -signal.SIGKILL, out.stdout[-3000:]
    assert 'resuming from ' + osp.join(work, 'iter_4.pth') in out.stdout
    assert (
        pth_files(work) == ['iter_4.pth', 'iter_6.pth']
        and pointed(work) == 'iter_6.pth'
    )

    # 5. resumed from iter_6 (iter_4, kept in iter_6's list, is removed now); killed from
    #    outside with SIGKILL while paused at the start of the save of iteration 8
    pause = str(tmp_path / 'paused')
    cfg = killer(tmp_path, toy, 'outside', 8, 'start', pause)
    proc = subprocess.Popen(
        [
            sys.executable,
            osp.join(ROOT, 'tools', 'train.py'),
            cfg,
            '--work-dir',
            work,
            '--resume',
            '--cfg-options',
            *SCHEDULE,
        ],
        cwd=ROOT,
        env=dict(env, OMP_NUM_THREADS='1'),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 300
        while (
            not osp.exists(pause)
            and proc.poll() is None
            and time.time() < deadline
        ):
            time.sleep(0.2)
        assert osp.exists(pause), proc.communicate()[0][-3000:]
        proc.send_signal(signal.SIGKILL)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert 'resuming from ' + osp.join(work, 'iter_6.pth') in output
    assert pth_files(work) == ['iter_6.pth'] and pointed(work) == 'iter_6.pth'

    # 6. last_checkpoint lost as well: --resume still finds iter_6 and finishes the run
    os.remove(osp.join(work, 'last_checkpoint'))
    out = tool(
        'train.py',
        tiny_config(tmp_path, toy, 'seg'),
        '--work-dir',
        work,
        '--resume',
        '--cfg-options',
        *SCHEDULE,
    )
    assert 'resuming from ' + osp.join(work, 'iter_6.pth') in out.stdout
    assert (
        'Iter(train) [7/8]' in out.stdout
        and 'Iter(train) [1/8]' not in out.stdout
    )
    assert 'mIoU' in out.stdout
    assert (
        pth_files(work) == ['iter_8.pth']
        and loads(osp.join(work, 'iter_8.pth')) == 8
    )


def test_two_trainings_into_one_work_dir(tmp_path, toy):  # noqa: F811
    work = str(tmp_path / 'work')
    pause = str(tmp_path / 'paused')
    # holds the lock, paused
    cfg = killer(tmp_path, toy, 'first', 2, 'start', pause)
    first = subprocess.Popen(
        [
            sys.executable,
            osp.join(ROOT, 'tools', 'train.py'),
            cfg,
            '--work-dir',
            work,
            '--cfg-options',
            *SCHEDULE,
        ],
        cwd=ROOT,
        env=dict(env_with_tests(), OMP_NUM_THREADS='1'),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 300
        while (
            not osp.exists(pause)
            and first.poll() is None
            and time.time() < deadline
        ):
            time.sleep(0.2)
        assert osp.exists(pause), first.communicate()[0][-3000:]
        second = tool(
            'train.py',
            tiny_config(tmp_path, toy, 'seg'),
            '--work-dir',
            work,
            '--cfg-options',
            *SCHEDULE,
            check=False,
        )
        assert second.returncode != 0
        assert re.search(
            rf'the work dir {re.escape(work)} is in use by another training: '
            rf'pid {first.pid} on \S+, started [\d: -]+: .*train\.py',
            second.stdout,
        ), second.stdout[-3000:]
        assert first.poll() is None  # the first one is untouched
    finally:
        first.kill()
        first.communicate()


@pytest.fixture(scope='module')
def det_checkpoint(tmp_path_factory):
    """A RetinaNet checkpoint (random weights), as training would save it."""
    from pvtfpn_mm.engine.build import build_model_from_config

    model = build_model_from_config(
        osp.join(
            ROOT,
            'configs',
            'quickstart',
            'retinanet_pvtv2-b0_topdownfpn_toy-96.py',
        )
    )
    path = tmp_path_factory.mktemp('det') / 'retinanet.pth'
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, path)
    return str(path)


def check_refused(out, det_checkpoint):
    assert out.returncode != 0
    message = re.search(
        r'StateDictMismatchError: (checkpoint .*?allow_partial_load=True)',
        out.stdout,
        re.S,
    )
    assert message, out.stdout[-3000:]
    text = message.group(1)
    assert text.startswith(
        f'checkpoint {det_checkpoint!r} does not match the model:'
    )
    # the segmentor's neck level and head, the detector's head, the necks' other inputs
    assert re.search(
        r'\n  48 missing keys: neck\.lateral_convs\.3\.conv\.weight, .*'
        r'decode_head\.conv_seg\.weight, \.\.\. \(43 more\)\n',
        text,
    )
    assert re.search(
        r'\n  12 unexpected keys: bbox_head\..* \(7 more\)\n', text
    )
    assert re.search(
        r'\n  3 shape mismatches: neck\.lateral_convs\.0\.conv\.weight: '
        r'\(64, 64, 1, 1\) vs \(64, 32, 1, 1\)',
        text,
    )
    assert '--cfg-options allow_partial_load=True' in text
    assert len(text) < 1500  # a summary, not every key
    assert not re.search(r'mIoU: [\d.]+', out.stdout)  # no evaluation ran


def test_test_tool_refuses_a_checkpoint_of_another_model(
    tmp_path,
    toy,  # noqa: F811
    det_checkpoint,
):
    cfg = tiny_config(tmp_path, toy, 'seg')
    check_refused(
        tool(
            'test.py',
            cfg,
            det_checkpoint,
            '--work-dir',
            str(tmp_path / 'w'),
            check=False,
        ),
        det_checkpoint,
    )


def test_mim_test_refuses_a_checkpoint_of_another_model(
    tmp_path,
    toy,  # noqa: F811
    det_checkpoint,
):
    """mmseg's tools/test.py ignores runner_type: the StrictLoadHook of the configs' runtime
    (custom_hooks) refuses it."""
    cfg = tiny_config(tmp_path, toy, 'seg')
    check_refused(
        run(
            [
                MIM,
                'test',
                'mmseg',
                cfg,
                '--checkpoint',
                det_checkpoint,
                '--work-dir',
                str(tmp_path / 'w'),
            ],
            check=False,
        ),
        det_checkpoint,
    )


def test_mim_train_refuses_to_train_over_checkpoints(tmp_path, toy):  # noqa: F811
    work = tmp_path / 'work'
    work.mkdir()
    torch.save({'state_dict': {}}, work / 'iter_4.pth')
    out = run(
        [
            MIM,
            'train',
            'mmdet',
            tiny_config(tmp_path, toy, 'det'),
            '--gpus',
            '0',
            '--work-dir',
            str(work),
            '--cfg-options',
            *SCHEDULE,
        ],
        check=False,
    )
    assert out.returncode != 0
    assert (
        'already holds checkpoints of an earlier run (iter_4.pth)'
        in out.stdout
    ), out.stdout[-3000:]


def test_amp_on_cpu_trains_with_bfloat16(tmp_path, toy):  # noqa: F811
    """RetinaNet (mmdet's heads, focal and L1 losses) under bfloat16 autocast; the
    mechanism itself: tests/test_reliability.py."""
    work = str(tmp_path / 'work')
    out = tool(
        'train.py',
        tiny_config(tmp_path, toy, 'det'),
        '--work-dir',
        work,
        '--amp',
        '--cfg-options',
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2',
    )
    assert 'bfloat16 autocast on the CPU (CPUAmpOptimWrapper)' in out.stdout
    losses = [
        float(v) for v in re.findall(r' loss: ([\d.naninf]+)', out.stdout)
    ]
    assert len(losses) == 2 and all(v == v and v < 1e4 for v in losses), (
        out.stdout[-2000:]
    )
    state = _load_checkpoint(osp.join(work, 'iter_2.pth'), map_location='cpu')
    assert all(
        v.dtype == torch.float32
        for v in state['state_dict'].values()
        if v.is_floating_point()
    )
