"""Issue 9: no lost checkpoint, real resuming, one run per work dir, strict loading,
CPU AMP. In-process tests on a tiny mmengine model here; real trainings killed with
SIGKILL and two concurrent trainings in tests/test_reliability_processes.py."""

import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner.checkpoint import _load_checkpoint

import pvtfpn_mm  # registers the engine
from pvtfpn_mm.compat import HAS_SAFE_GLOBALS
from pvtfpn_mm.engine import (
    AtomicCheckpointHook,
    CPUAmpOptimWrapper,
    ExistingCheckpointsError,
    ResumeError,
    SafeRunner,
    StrictLoadHook,
    WorkDirBusyError,
    WorkDirLock,
)
from pvtfpn_mm.weights import CheckpointReadError, StateDictMismatchError

from _helpers import BAD_CHECKPOINTS, write_bad_checkpoint

LOCK_MODULE = osp.join(osp.dirname(pvtfpn_mm.__file__), 'engine', 'lock.py')


class TinyRegressor(BaseModel):
    def __init__(self, width=4):
        super().__init__()
        self.linear = nn.Linear(width, 1)
        self.seen_dtypes = []

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            self.seen_dtypes.append(out.dtype)
            return dict(loss=((out.float() - targets) ** 2).mean())
        return out


class LineDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('y',))

    def __len__(self):
        return 32

    def __getitem__(self, i):
        x = torch.randn(4, generator=torch.Generator().manual_seed(i))
        return dict(inputs=x, targets=x @ torch.tensor([1.0, -2.0, 3.0, 0.5]))


_count = [0]


def make_runner(
    work_dir,
    max_iters=6,
    interval=2,
    resume=False,
    load_from=None,
    max_keep=1,
    model=None,
    checkpoint_hook=None,
    **kwargs,
):
    torch.manual_seed(0)
    _count[0] += 1  # mmengine keeps one logger/visualizer per name
    hook = checkpoint_hook or dict(
        type='AtomicCheckpointHook',
        interval=interval,
        by_epoch=False,
        max_keep_ckpts=max_keep,
    )
    return SafeRunner(
        model=model or TinyRegressor(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=LineDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
            batch_size=4,
            num_workers=0,
            collate_fn=dict(type='default_collate'),
        ),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=kwargs.pop(
            'optim_wrapper', dict(optimizer=dict(type='AdamW', lr=0.05))
        ),
        default_hooks=dict(
            checkpoint=hook, logger=dict(type='LoggerHook', interval=1)
        ),
        randomness=dict(seed=0),
        resume=resume,
        load_from=load_from,
        experiment_name=f'reliability_{_count[0]}',
        default_scope='mmengine',
        **kwargs,
    )


def files(work_dir):
    return sorted(
        n for n in os.listdir(work_dir) if n.endswith(('.pth', '.partial'))
    )


def last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return osp.basename(f.read().strip())


# ------------------------------------------------------------- 1. checkpoint saving


class RecordingHook(AtomicCheckpointHook):
    """Records the work dir at each step of a save."""

    events = []

    def _snapshot(self, runner, step):
        lc = osp.join(runner.work_dir, 'last_checkpoint')
        self.events.append(
            (
                step,
                files(runner.work_dir),
                last_checkpoint(runner.work_dir) if osp.exists(lc) else None,
            )
        )

    def _write_partial(self, runner, tmp_name, meta):
        self._snapshot(runner, 'before write')
        super()._write_partial(runner, tmp_name, meta)
        self._snapshot(runner, 'written')

    def _point_last_checkpoint(self, runner, path):
        self._snapshot(runner, 'published')
        super()._point_last_checkpoint(runner, path)
        self._snapshot(runner, 'pointed')


def test_save_order_keeps_the_previous_checkpoint_until_the_new_one_is_complete(
    tmp_path,
):
    from mmengine.registry import HOOKS

    HOOKS.register_module(module=RecordingHook, force=True)
    RecordingHook.events = []
    runner = make_runner(
        tmp_path,
        max_iters=4,
        checkpoint_hook=dict(
            type='RecordingHook', interval=2, by_epoch=False, max_keep_ckpts=1
        ),
    )
    runner.train()
    second = RecordingHook.events[4:]  # the save of iteration 4
    assert second == [
        ('before write', ['iter_2.pth'], 'iter_2.pth'),
        ('written', ['iter_2.pth', 'iter_4.pth.partial'], 'iter_2.pth'),
        ('published', ['iter_2.pth', 'iter_4.pth'], 'iter_2.pth'),
        ('pointed', ['iter_2.pth', 'iter_4.pth'], 'iter_4.pth'),
    ], RecordingHook.events
    assert files(tmp_path) == ['iter_4.pth']  # removed only at the end
    # the checkpoint records both: a run resumed from it removes iter_2 itself
    saved = _load_checkpoint(str(tmp_path / 'iter_4.pth'), map_location='cpu')
    assert saved['message_hub']['runtime_info']['keep_ckpt_ids'] == [2, 4]


def test_a_plain_checkpoint_hook_config_is_upgraded(tmp_path):
    runner = make_runner(
        tmp_path,
        checkpoint_hook=dict(
            type='CheckpointHook', interval=2, by_epoch=False
        ),
    )
    assert any(type(h) is AtomicCheckpointHook for h in runner.hooks)
    assert any(isinstance(h, StrictLoadHook) for h in runner.hooks)


# ------------------------------------------------------------------------ 2. resume


def train_to(work_dir, n, max_keep=3, **kwargs):
    runner = make_runner(work_dir, max_iters=n, max_keep=max_keep, **kwargs)
    runner.train()
    return runner


@pytest.mark.parametrize('damage', ['missing', 'stale', 'deleted'])
def test_resume_uses_the_newest_complete_checkpoint_whatever_last_checkpoint_says(
    tmp_path, damage
):
    train_to(tmp_path, 6)  # iter_2, iter_4, iter_6
    lc = tmp_path / 'last_checkpoint'
    if damage == 'missing':
        lc.unlink()
    elif damage == 'stale':
        lc.write_text(str(tmp_path / 'iter_2.pth'))
    else:
        lc.write_text(str(tmp_path / 'iter_8.pth'))  # a file that is gone
    runner = train_to(tmp_path, 8, resume=True)
    assert runner.iter == 8
    assert 'resume: resuming from ' + str(tmp_path / 'iter_6.pth') in log_text(
        runner
    )


def log_text(runner):
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path):
    train_to(tmp_path, 6)
    newest = tmp_path / 'iter_6.pth'
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    (tmp_path / 'iter_8.pth.partial').write_bytes(b'half a checkpoint')
    runner = train_to(tmp_path, 8, resume=True)
    text = log_text(runner)
    assert f'resuming from {tmp_path / "iter_4.pth"}' in text
    assert re.search(
        r'skipping a checkpoint that does not load: .*iter_6\.pth.*truncated',
        text,
    )
    assert not (
        tmp_path / 'iter_8.pth.partial'
    ).exists()  # removed, never a candidate
    assert runner.iter == 8


def test_resume_stops_when_no_checkpoint_loads(tmp_path):
    train_to(tmp_path, 4)
    for name in ('iter_2.pth', 'iter_4.pth'):
        (tmp_path / name).write_bytes(b'')
    with pytest.raises(
        ResumeError,
        match=r'2 checkpoint\(s\) and none can be loaded:\n'
        r'.*iter_4\.pth.*empty.*\n.*iter_2\.pth.*empty',
    ):
        train_to(tmp_path, 6, resume=True)


def test_resume_in_an_empty_work_dir_starts_from_the_beginning(tmp_path):
    runner = train_to(tmp_path, 2, resume=True)
    assert runner.iter == 2
    assert 'training starts from the beginning' in log_text(runner)


def test_training_again_without_resume_is_refused(tmp_path):
    train_to(tmp_path, 2)
    with pytest.raises(
        ExistingCheckpointsError,
        match=r'already holds checkpoints .*iter_2\.pth.*--resume.*--work-dir'
        r'.*allow_existing_checkpoints=True',
    ):
        train_to(tmp_path, 4)
    assert files(tmp_path) == ['iter_2.pth']  # untouched
    runner = train_to(tmp_path, 4, cfg=dict(allow_existing_checkpoints=True))
    assert runner.iter == 4


# -------------------------------------------------------------------------- 3. lock


def test_the_lock_names_the_process_that_holds_it(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            '-c',
            # the lock module alone (importing pvtfpn_mm takes seconds)
            'import importlib.util as u, time; '
            f's = u.spec_from_file_location("lock", {LOCK_MODULE!r}); m = u.module_from_spec(s); '
            f's.loader.exec_module(m); held = m.WorkDirLock({str(tmp_path)!r}).acquire(); '
            'print("locked", flush=True); time.sleep(60)',
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(
            WorkDirBusyError,
            match=rf'in use by another training: pid {holder.pid} on ',
        ):
            WorkDirLock(str(tmp_path)).acquire()
        with pytest.raises(WorkDirBusyError, match=f'pid {holder.pid}'):
            make_runner(tmp_path).train()
    finally:
        holder.kill()
        holder.wait()
    # released by the kernel when the holder died
    with WorkDirLock(str(tmp_path)):
        pass


# ----------------------------------------------------------------- 4. strict loading


class Other(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 1)
        self.extra = nn.Linear(2, 2)

    def forward(self, *args, **kwargs):
        return None


def test_load_from_a_checkpoint_of_another_model_is_refused(tmp_path):
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': Other().state_dict()}, other)
    runner = make_runner(tmp_path / 'work', load_from=str(other))
    with pytest.raises(StateDictMismatchError) as info:
        runner.train()
    message = str(info.value)
    assert message.startswith(
        f'checkpoint {str(other)!r} does not match the model:'
    )
    assert '2 unexpected keys: extra.weight, extra.bias' in message
    assert '1 shape mismatches: linear.weight: (1, 8) vs (1, 4)' in message
    assert '--cfg-options allow_partial_load=True' in message


@pytest.mark.parametrize('opt_in', ['hook', 'config'])
def test_partial_load_is_an_explicit_opt_in_that_says_what_was_loaded(
    tmp_path, opt_in
):
    other = Other()
    state = {
        'linear.bias': torch.tensor([7.0]),
        **{
            k: v
            for k, v in other.state_dict().items()
            if k.startswith('extra')
        },
    }
    path = tmp_path / 'partial.pth'
    torch.save({'state_dict': state}, path)
    if opt_in == 'hook':
        kwargs = dict(
            custom_hooks=[dict(type='StrictLoadHook', allow_partial=True)]
        )
    else:
        kwargs = dict(cfg=dict(allow_partial_load=True))
    runner = make_runner(
        tmp_path / 'work', load_from=str(path), max_iters=0, **kwargs
    )
    runner.load_or_resume()
    assert runner.model.linear.bias.item() == 7.0
    text = log_text(runner)
    assert (
        'partial load (allowed): loading 1 of the model\'s 2 tensors' in text
    )
    assert (
        '1 missing keys: linear.weight' in text and '2 unexpected keys' in text
    )


def test_the_summary_is_short():
    missing = [f'backbone.layer{i}.weight' for i in range(5000)]
    error = StateDictMismatchError(missing, [], [], source='checkpoint x.pth')
    assert len(str(error)) < 400
    assert '5000 missing keys: backbone.layer0.weight' in str(error)
    assert '(4995 more)' in str(error)
    assert len(error.missing) == 5000


# -------------------------------------------------------------------------- 6. AMP


def test_amp_without_gpu_trains_with_bfloat16_autocast(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    model = TinyRegressor()
    runner = make_runner(
        tmp_path,
        max_iters=2,
        model=model,
        optim_wrapper=dict(
            type='AmpOptimWrapper',
            loss_scale='dynamic',
            optimizer=dict(type='AdamW', lr=0.05),
        ),
    )
    runner.train()
    assert isinstance(runner.optim_wrapper, CPUAmpOptimWrapper)
    assert model.seen_dtypes == [torch.bfloat16, torch.bfloat16]
    # master weights stay fp32
    assert model.linear.weight.dtype == torch.float32


def test_cpu_amp_refuses_float16():
    with pytest.raises(ValueError, match="bfloat16 only, got dtype='float16'"):
        CPUAmpOptimWrapper(
            optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1),
            dtype='float16',
        )


def neck(**kwargs):
    from pvtfpn_mm.models.necks import TopDownFPN

    return TopDownFPN([8, 16], 4, **kwargs)


def test_neck_pretrained_loads_strictly(tmp_path):
    source = neck()
    path = tmp_path / 'detector.pth'
    torch.save(
        {
            'state_dict': {
                'neck.' + k: v for k, v in source.state_dict().items()
            }
        },
        path,
    )
    target = neck(
        init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='neck')
    )
    target.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_neck_pretrained_of_another_model_is_refused(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save(
        {'state_dict': {f'backbone.w{i}': torch.zeros(2) for i in range(12)}},
        path,
    )
    target = neck(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(
        StateDictMismatchError,
        match=r"other\.pth' for TopDownFPN does not "
        r'match the model:\n  8 missing keys: .*\n  12 unexpected keys: '
        r'backbone\.w0.*\(7 more\)\nTo load only what fits',
    ) as info:
        target.init_weights()
    assert len(str(info.value)) < 800


def test_neck_pretrained_partial_is_opt_in_and_logged(tmp_path, monkeypatch):
    from pvtfpn_mm.weights import loading

    logged = []
    monkeypatch.setattr(
        loading, 'print_log', lambda msg, **kwargs: logged.append(msg)
    )
    source = neck()
    state = {
        k: v
        for k, v in source.state_dict().items()
        if k.startswith('lateral_convs')
    }
    path = tmp_path / 'laterals.pth'
    torch.save(state, path)
    target = neck(
        init_cfg=dict(
            type='Pretrained', checkpoint=str(path), allow_partial=True
        )
    )
    target.init_weights()
    assert torch.equal(
        target.lateral_convs[0].conv.weight,
        source.lateral_convs[0].conv.weight,
    )
    out = '\n'.join(logged)
    assert re.search(
        r"TopDownFPN: checkpoint '.*laterals\.pth': partial load \(allowed\): "
        r"loaded 4 of the model's 8 tensors; not loaded:\n  4 missing keys: "
        r'fpn_convs',
        out,
    ), out


def test_backbone_pretrained_in_a_list_partial_and_logged(
    tmp_path, monkeypatch
):
    """PVTv2 parses its init_cfg with the same parser as the necks and heads: a
    Pretrained entry of a list, with allow_partial=True, after the other initializers."""
    from pvtfpn_mm.models.backbones import PVTv2
    from pvtfpn_mm.weights import loading

    logged = []
    monkeypatch.setattr(
        loading, 'print_log', lambda msg, **kwargs: logged.append(msg)
    )
    source = PVTv2('b0')
    source.init_weights()
    stage0 = {
        k: v
        for k, v in source.state_dict().items()
        if k.startswith('stages.0.')
    }
    path = tmp_path / 'stage0.pth'
    torch.save(stage0, path)
    target = PVTv2(
        'b0',
        init_cfg=[
            dict(type='Constant', layer='LayerNorm', val=3.0, bias=0.0),
            dict(type='Pretrained', checkpoint=str(path), allow_partial=True),
        ],
    )
    target.init_weights()
    state = target.state_dict()
    for key, value in stage0.items():
        assert torch.equal(state[key], value), key
    # the other initializer ran first: stage 1's norms are its, not loaded
    assert torch.all(target.stages[1].norm.weight == 3.0)
    out = '\n'.join(logged)
    assert re.search(
        r"stage0\.pth' \(ours\): partial load \(allowed\)", out
    ), out
    # strict without the opt-in, and the message says how to opt in
    strict = PVTv2(
        'b0', init_cfg=dict(type='Pretrained', checkpoint=str(path))
    )
    with pytest.raises(StateDictMismatchError, match='allow_partial=True'):
        strict.init_weights()


@pytest.mark.parametrize(
    'init_cfg, error, match',
    [
        (dict(type='Pretrained'), ValueError, 'names no checkpoint'),
        (
            dict(type='Pretrained', checkpoint='x.pth', strict=False),
            ValueError,
            r"unknown keys \['strict'\]",
        ),
        (
            dict(type='Pretrained', checkpoint='x.pth', allow_partial='yes'),
            TypeError,
            "allow_partial must be True or False, got 'yes'",
        ),
        (
            [
                dict(type='Pretrained', checkpoint='a.pth'),
                dict(type='Pretrained', checkpoint='b.pth'),
            ],
            ValueError,
            '2 Pretrained entries',
        ),
    ],
)
def test_bad_pretrained_init_cfg_is_refused_at_construction(
    init_cfg, error, match
):
    with pytest.raises(error, match=match):
        neck(init_cfg=init_cfg)


def test_heads_pretrained_load_strictly(tmp_path):
    from pvtfpn_mm.models.heads import FPNConcatHead, PyramidClsHead

    path = tmp_path / 'neck.pth'
    torch.save(neck().state_dict(), path)
    head = FPNConcatHead(
        in_channels=[4, 4],
        in_index=[0, 1],
        channels=4,
        num_classes=2,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)),
    )
    with pytest.raises(
        StateDictMismatchError, match='for FPNConcatHead does not match'
    ):
        head.init_weights()
    cls_head = PyramidClsHead(
        num_classes=2,
        in_channels=4,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)),
    )
    with pytest.raises(
        StateDictMismatchError, match='for PyramidClsHead does not match'
    ):
        cls_head.init_weights()


class PVTDetector(BaseModel):
    """Just the parts a layout conversion looks at: our PVTv2 and a neck."""

    def __init__(self):
        super().__init__()
        from pvtfpn_mm.models.backbones import PVTv2
        from pvtfpn_mm.models.necks import TopDownFPN

        self.backbone = PVTv2('b0', embed_norm_eps=1e-6)
        self.neck = TopDownFPN([32, 64, 160, 256], 8)

    def forward(self, *args, **kwargs):
        return None


def test_a_released_layout_is_converted_right_before_the_strict_load(tmp_path):
    """convert_to_model_layout runs inside StrictLoadHook: a checkpoint in mmdet's
    PyramidVisionTransformerV2 layout loads into our model, and the log says so."""
    from pvtfpn_mm.weights import from_ours

    from _helpers import random_params_

    source = random_params_(PVTDetector(), seed=3)
    state = {
        'backbone.' + k: v
        for k, v in from_ours(source.backbone.state_dict(), 'mmdet').items()
    }
    state.update({'neck.' + k: v for k, v in source.neck.state_dict().items()})
    assert 'backbone.layers.0.0.projection.weight' in state  # mmdet's names
    path = tmp_path / 'mmdet_layout.pth'
    torch.save({'meta': {}, 'state_dict': state}, path)
    runner = make_runner(tmp_path / 'work', model=PVTDetector())
    runner.load_checkpoint(str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(runner.model.state_dict()[key], value), key
    assert "converted on the fly from the 'mmdet' layout" in log_text(runner)


def test_safetensors_whole_checkpoints_load_on_every_torch(tmp_path):
    """load_from / tools/test.py with a ``.safetensors`` file (a bare state dict): read
    by ``read_checkpoint`` on every torch (mmengine's loader cannot), converted on the
    fly from a released layout, strictly; a truncated one is named."""
    from safetensors.torch import save_file

    from pvtfpn_mm.weights import from_ours

    from _helpers import random_params_

    source = random_params_(PVTDetector(), seed=4)
    state = {
        'backbone.' + k: v.contiguous()
        for k, v in from_ours(source.backbone.state_dict(), 'mmdet').items()
    }
    state.update({'neck.' + k: v for k, v in source.neck.state_dict().items()})
    path = tmp_path / 'mmdet_layout.safetensors'
    save_file(state, str(path))
    runner = make_runner(
        tmp_path / 'work', model=PVTDetector(), load_from=str(path)
    )
    runner.load_or_resume()
    for key, value in source.state_dict().items():
        assert torch.equal(runner.model.state_dict()[key], value), key
    assert "converted on the fly from the 'mmdet' layout" in log_text(runner)
    # a file of another model is refused, naming it
    save_file(
        {'linear.weight': torch.zeros(1, 5)}, str(tmp_path / 'o.safetensors')
    )
    runner = make_runner(
        tmp_path / 'work2', load_from=str(tmp_path / 'o.safetensors')
    )
    with pytest.raises(StateDictMismatchError, match=r"o\.safetensors"):
        runner.load_or_resume()
    bad = write_bad_checkpoint(tmp_path, 'truncated-safetensors')
    runner = make_runner(tmp_path / 'work3', load_from=bad)
    with pytest.raises(
        CheckpointReadError,
        match=r"truncated-safetensors\.safetensors' \(1500 bytes\) is a damaged",
    ):
        runner.load_or_resume()


@pytest.mark.skipif(
    not HAS_SAFE_GLOBALS,
    reason='torch < 2.5: runs read checkpoints with mmengine\'s loader',
)
@pytest.mark.parametrize('kind', BAD_CHECKPOINTS)
def test_load_from_a_bad_file_names_it(tmp_path, kind):
    """SafeRunner reads local checkpoints itself (load_from, --resume, tools/test.py):
    the error names the file and says what is wrong, and never suggests switching safe
    loading off."""
    path = write_bad_checkpoint(tmp_path, kind)
    runner = make_runner(tmp_path / 'work', load_from=path)
    with pytest.raises(
        CheckpointReadError, match=re.escape(osp.basename(path))
    ) as info:
        runner.load_or_resume()
    assert 'weights_only=False' not in str(info.value)


def test_the_lock_waits_for_the_children_of_an_ended_holder(tmp_path):
    """The lock belongs to the open file: children forked by the holder (dataloader
    workers) keep it a few seconds after the holder was killed; a new run waits for them
    instead of naming a dead pid."""
    # the holder ends at once
    code = (
        'import importlib.util as u, os, sys, time; '
        f's = u.spec_from_file_location("lock", {LOCK_MODULE!r}); '
        'm = u.module_from_spec(s); s.loader.exec_module(m); '
        f'held = m.WorkDirLock({str(tmp_path)!r}).acquire(); '
        'child = os.fork()\n'
        'if child == 0:\n    time.sleep(2); os._exit(0)\n'  # holds the inherited lock
        'print("locked", flush=True); os._exit(0)'
    )
    holder = subprocess.run(
        [sys.executable, '-c', code],
        stdout=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    assert holder.stdout.strip() == 'locked'
    with WorkDirLock(str(tmp_path)):  # waited for the child, then took it
        pass


def test_atomic_text_files_get_the_usual_mode(tmp_path):
    """``write_text_atomic`` (last_checkpoint, the benchmark's CSV / Markdown) creates
    files as a plain ``open()`` would (0o666 less the umask), not mkstemp's 0o600, and
    leaves no temporary file behind."""
    from pvtfpn_mm.weights import write_text_atomic

    path = tmp_path / 'out.csv'
    old = os.umask(0o022)
    try:
        write_text_atomic(str(path), 'a\n')
        write_text_atomic(str(path), 'b\n')
    finally:
        os.umask(old)
    assert path.read_text() == 'b\n'
    assert (path.stat().st_mode & 0o777) == 0o644
    assert os.listdir(tmp_path) == ['out.csv']
