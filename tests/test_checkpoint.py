"""mmengine checkpoints save, load and resume on torch >= 2.6 with safe loading kept on.

On torch < 2.5 (the oldest supported stack) there is no allowlist (pvtfpn_mm.compat):
mmengine loads with torch's default weights_only=False and resumes as before, while safe
loading (ours) refuses a checkpoint with mmengine's message hub -- tested here too."""

import io
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

import pvtfpn_mm  # noqa: F401  (installs the allowlist)
from pvtfpn_mm.compat import HAS_SAFE_GLOBALS


class TinyRegressor(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - targets) ** 2).mean())
        return out


class LineDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('y',))

    def __len__(self):
        return 32

    def __getitem__(self, i):
        x = torch.randn(4, generator=torch.Generator().manual_seed(i))
        return dict(inputs=x, targets=x @ torch.tensor([1.0, -2.0, 3.0, 0.5]))


class Interrupt(RuntimeError):
    pass


class InterruptAfter(Hook):
    """Kills the run right after the checkpoint of iteration ``n`` was written."""

    priority = 'LOWEST'  # after CheckpointHook

    def __init__(self, n):
        self.n = n

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ):
        if runner.iter + 1 == self.n:
            raise Interrupt(f'interrupted after iteration {self.n}')


def make_runner(work_dir, max_iters=6, resume=False):
    torch.manual_seed(0)  # the same initial weights in every run
    return Runner(
        model=TinyRegressor(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=LineDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
            batch_size=4,
            num_workers=0,
            collate_fn=dict(type='default_collate'),
        ),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.05)),
        param_scheduler=dict(
            type='MultiStepLR', milestones=[4], gamma=0.5, by_epoch=False
        ),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1),
        ),
        randomness=dict(seed=0),
        resume=resume,
        default_scope='mmengine',
    )


def test_resume_continues_exactly(tmp_path):
    straight = make_runner(tmp_path / 'straight')
    straight.train()
    expected = {k: v.clone() for k, v in straight.model.state_dict().items()}

    # the same run, interrupted after the checkpoint at iteration 3 ...
    interrupted = make_runner(tmp_path / 'split')
    interrupted.register_hook(InterruptAfter(3))
    with pytest.raises(Interrupt):
        interrupted.train()
    assert not (tmp_path / 'split' / 'iter_6.pth').exists()
    ckpt = tmp_path / 'split' / 'iter_3.pth'
    assert ckpt.is_file()
    # ... whose file loads with safe loading on (torch's default is weights_only=True)
    if HAS_SAFE_GLOBALS:
        state = torch.load(ckpt, map_location='cpu', weights_only=True)
        assert state['meta']['iter'] == 3
        assert 'train/loss' in state['message_hub']['log_scalars']
    else:  # no allowlist on this torch: safe loading refuses mmengine's message hub
        with pytest.raises(pickle.UnpicklingError):
            torch.load(ckpt, map_location='cpu', weights_only=True)

    # ... and resumed to the end
    resumed = make_runner(tmp_path / 'split', resume=True)
    resumed.train()
    assert resumed.iter == 6
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert (tmp_path / 'split' / 'iter_6.pth').is_file()
    if HAS_SAFE_GLOBALS:
        final = torch.load(
            tmp_path / 'split' / 'iter_6.pth', weights_only=True
        )
        assert final['meta']['iter'] == 6


class _GetattrGadget:
    """Pickles as getattr(HistoryBuffer, '__init__'): the first step from an allowed class
    to its function globals (and from there to os.system)."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer

        return (getattr, (HistoryBuffer, '__init__'))


@pytest.mark.skipif(not HAS_SAFE_GLOBALS, reason='no allowlist on torch < 2.5')
def test_getattr_allowed_only_for_history_buffer_statistics():
    buf = io.BytesIO()
    torch.save({'x': _GetattrGadget()}, buf)
    buf.seek(0)
    with pytest.raises(
        pickle.UnpicklingError,
        match=r"getattr\(<class .*HistoryBuffer'>, '__init__'\)",
    ):
        torch.load(buf, weights_only=True)


def test_arbitrary_classes_still_refused():
    buf = io.BytesIO()
    torch.save({'model': TinyRegressor()}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match='TinyRegressor'):
        torch.load(buf, weights_only=True)
