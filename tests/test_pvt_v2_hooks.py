"""PVTv2 treats what a module returns as read-only: forward hooks (feature visualisation,
distillation, Grad-CAM, quantisation observers) see the values the module returned, not
values a later in-place operation wrote into the same memory.
"""

import pytest
import torch
import torch.nn as nn

from pvtfpn_mm.models.backbones import pvt_v2
from pvtfpn_mm.models.backbones.pvt_v2 import PVTv2

from _helpers import random_params_


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


class OutputRecorder:
    """Forward hooks on the given modules that keep each returned tensor and a clone."""

    def __init__(self, modules: list[tuple[str, nn.Module]]):
        self.records = []
        self.handles = [
            m.register_forward_hook(self._hook(name)) for name, m in modules
        ]

    def _hook(self, name):
        def hook(module, args, output):
            for i, t in enumerate(_tensors(output)):
                self.records.append((name, i, t, t.detach().clone()))

        return hook

    def changed(self) -> list[str]:
        return [
            f'{name}[{i}]'
            for name, i, t, clone in self.records
            if not torch.equal(t.detach(), clone)
        ]

    def remove(self):
        for h in self.handles:
            h.remove()


def _mlp_child(name: str) -> bool:
    return '.mlp.' in name


@pytest.mark.parametrize('arch', ['b0', 'b2_li'])
@pytest.mark.parametrize('mode', ['eval_no_grad', 'train_grad'])
@pytest.mark.parametrize('hooked', ['every_module', 'all_but_mlp_children'])
def test_returned_tensors_are_never_changed(arch, mode, hooked, monkeypatch):
    """Every tensor any submodule returned still equals its clone after the whole
    forward (and backward). With hooks on the MLPs' children too, MixFFN calls each of
    them; without, it takes its fused path (forced here for autograd too) -- which must
    not change anything a caller sees either."""
    monkeypatch.setattr(pvt_v2, 'FUSED_MIN_BYTES', 0)
    monkeypatch.setattr(pvt_v2, 'FUSED_AUTOGRAD_MIN_BYTES', 0)
    fused = []
    forward, apply = pvt_v2.mixffn_forward, pvt_v2.MixFFNFunction.apply
    monkeypatch.setattr(
        pvt_v2, 'mixffn_forward', lambda *a: fused.append(1) or forward(*a)
    )
    monkeypatch.setattr(
        pvt_v2.MixFFNFunction, 'apply', lambda *a: fused.append(1) or apply(*a)
    )
    model = random_params_(PVTv2(arch, drop_path_rate=0.1), seed=7)
    modules = [
        (n or 'PVTv2', m)
        for n, m in model.named_modules()
        if hooked == 'every_module' or not _mlp_child(n)
    ]
    recorder = OutputRecorder(modules)
    x = torch.randn(2, 3, 64, 64)
    x_clone = x.clone()
    if mode == 'eval_no_grad':
        model.eval()
        with torch.no_grad():
            outs = model(x)
    else:
        model.train()
        outs = model(x)
        sum(o.square().mean() for o in outs).backward()
    assert len(outs) == 4
    assert len(recorder.records) >= len(
        modules
    )  # every hooked module returned something
    assert len(fused) == (0 if hooked == 'every_module' else sum(model.depths))
    assert recorder.changed() == []
    assert torch.equal(x, x_clone)
    recorder.remove()


def test_returned_tensors_are_never_changed_with_cp():
    """with_cp recomputes each block in the backward pass: the recomputed outputs (which
    the hooks see a second time) are not changed afterwards either."""
    model = random_params_(PVTv2('b0', with_cp=True), seed=8).train()
    recorder = OutputRecorder(list(model.named_modules()))
    outs = model(torch.randn(1, 3, 64, 64))
    n_forward = len(recorder.records)
    sum(o.mean() for o in outs).backward()
    assert len(recorder.records) > n_forward  # the blocks ran again
    assert recorder.changed() == []
    recorder.remove()


def test_hooks_see_the_branch_outputs_not_the_residual_sums():
    """attn / mlp hooks see the branch outputs: the block output is their sum with the
    shortcut, computed into a new tensor."""
    model = random_params_(PVTv2('b0', depths=(1, 1, 1, 1)), seed=9).eval()
    block = model.stages[0].blocks[0]
    seen = {}
    for name in ('norm1', 'attn', 'norm2', 'mlp'):
        getattr(block, name).register_forward_hook(
            lambda m, a, out, name=name: seen.__setitem__(name, out)
        )
    block.register_forward_hook(
        lambda m, a, out: seen.__setitem__('block', out)
    )
    block.register_forward_pre_hook(
        lambda m, args: seen.__setitem__('input', args[0])
    )
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    mid = seen['input'] + seen['attn']
    assert torch.equal(seen['block'], mid + seen['mlp'])
    torch.testing.assert_close(seen['norm2'], block.norm2(mid), rtol=0, atol=0)
