"""torch.compile: our modules trace into one graph (no graph break), varying image sizes
do not recompile every batch, and mmengine's ``compile`` config option trains our
configs. Tracing only (dynamo's ``explain`` and a counting backend): no code generation,
so these tests are cheap; the speed of compiled code is a benchmark, not a test."""

import os.path as osp

import pytest
import torch
import torch._dynamo as dynamo
from mmengine.config import Config
from torch._dynamo.testing import CompileCounter

from pvtfpn_mm.models.backbones.pvt_v2 import PVTv2
from pvtfpn_mm.models.necks import TopDownFPN

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(autouse=True)
def fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


def graph_breaks(fn, *args):
    explained = dynamo.explain(fn)(*args)
    return (
        explained.graph_count,
        explained.graph_break_count,
        [str(b.reason) for b in explained.break_reasons],
    )


@pytest.mark.parametrize(
    'kwargs, train',
    [
        (dict(arch='b0'), False),
        (dict(arch='b2_li', depths=(1, 1, 1, 1)), False),
        (dict(arch='b0', with_cp=True, drop_path_rate=0.1), True),
    ],
)
def test_backbone_is_one_graph(kwargs, train):
    model = PVTv2(**kwargs).train(train)
    x = torch.randn(2, 3, 64, 64)
    with torch.set_grad_enabled(train):
        graphs, breaks, reasons = graph_breaks(model, x)
    assert (graphs, breaks) == (1, 0), reasons


def test_compiled_backbone_equals_eager_on_every_stack():
    """On every supported torch (the oldest stack too: torch 2.1's dynamo broke the graph
    at ``type(x)`` and failed on a checkpointed module), the compiled backbone -- with
    gradient checkpointing, in training -- gives the eager outputs and gradients.
    (aot_eager: dynamo + autograd tracing, no code generation.)"""
    model = PVTv2('b0', depths=(1, 1, 1, 1), with_cp=True).train()
    x = torch.randn(2, 3, 64, 64)
    eager = model(x)
    sum(o.sum() for o in eager).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    compiled = torch.compile(model, backend='aot_eager')(x)
    sum(o.sum() for o in compiled).backward()
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-5)


def test_neck_and_detector_forward_are_one_graph():
    neck = TopDownFPN(
        in_channels=[32, 64, 160, 256],
        out_channels=32,
        start_level=1,
        num_outs=5,
        extra_source='input',
    )
    feats = PVTv2('b0').eval()(torch.randn(1, 3, 64, 64))
    assert graph_breaks(neck, feats)[:2] == (1, 0)

    from pvtfpn_mm.engine.build import build_model_from_config

    cfg = Config.fromfile(
        osp.join(
            ROOT,
            'configs',
            'retinanet',
            'retinanet_pvtv2-b0_topdownfpn_1x_coco.py',
        )
    )
    cfg.model.backbone.init_cfg = None
    detector = build_model_from_config(cfg).eval()
    with torch.no_grad():  # backbone + neck + RetinaHead ('tensor' mode)
        graphs, breaks, reasons = graph_breaks(
            detector._forward, torch.randn(1, 3, 64, 96)
        )
    assert (graphs, breaks) == (1, 0), reasons


def test_dynamic_sizes_compile_once():
    """With ``dynamic=True`` a new image size does not recompile: one compile serves all.
    (Were the first batch square, dynamo's duck sizing would assume H == W and compile
    once more at the first non-square batch -- at most two compiles.)"""
    counter = CompileCounter()
    model = torch.compile(
        PVTv2('b0', depths=(1, 1, 1, 1)).eval(), backend=counter, dynamic=True
    )
    with torch.no_grad():
        for size in ((96, 64), (64, 96), (75, 97)):
            outs = model(torch.randn(2, 3, *size))
            assert outs[0].shape[2:] == (
                (size[0] + 3) // 4,
                (size[1] + 3) // 4,
            )
    assert counter.frame_count == 1


def _train_two_iters(work_dir, data_root, compile_cfg):
    from mmengine.runner import Runner

    cfg = Config.fromfile(
        osp.join(
            ROOT,
            'configs',
            'quickstart',
            'retinanet_pvtv2-b0_topdownfpn_toy-96.py',
        )
    )
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_dataloader.update(
        batch_size=2, num_workers=0, persistent_workers=False
    )
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=2, val_interval=10**6
    )
    for key in (
        'val_cfg',
        'val_dataloader',
        'val_evaluator',
        'test_cfg',
        'test_dataloader',
        'test_evaluator',
    ):
        cfg[key] = None
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10**6)
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=0, deterministic=False)
    if compile_cfg is not None:
        cfg.compile = compile_cfg
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.message_hub.get_scalar('train/loss').current()


@pytest.mark.slow
def test_mmengine_compile_option_trains_our_config(tmp_path):
    """``compile=dict(...)`` in a config (mmengine compiles ``model.train_step``): two
    iterations give the losses of the uncompiled run. Dynamo with the 'eager' backend
    (no code generation: what is tested is that everything traces and runs)."""
    from pvtfpn_tools.toy_data import write_toy_data

    write_toy_data(
        str(tmp_path / 'toy'), num_train=4, num_val=1, img_size=96, seed=0
    )
    data_root = str(tmp_path / 'toy' / 'coco') + '/'
    plain = _train_two_iters(tmp_path / 'plain', data_root, None)
    compiled = _train_two_iters(
        tmp_path / 'compiled', data_root, dict(backend='eager', dynamic=True)
    )
    assert compiled == pytest.approx(plain, rel=1e-4)
