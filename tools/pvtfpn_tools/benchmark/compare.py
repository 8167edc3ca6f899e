"""The ``compare`` mode of ``tools/benchmark.py``: ours against timm and mmdet, side by side.

Every measurement runs the candidates interleaved in one process (A B C, A B C, ...),
reports the median of the rounds and the ratios ``other / ours`` (the ratio of the
medians, and the median of the per-round ratios -- neighbours in time, less disturbed
by other processes), with the load average at that moment. Parts (``--parts``):

``peak``
    This machine's matmul peak: products of 2048 x 2048 fp32 matrices at the benchmark's
    threads, by ``torch.mm`` (MKL) and by oneDNN (:func:`matmul_rates`); the faster is
    the denominator of the roofline fractions below (on AMD CPUs oneDNN's, about twice
    MKL's).
``backbone``
    ``PVTv2`` against timm's ``pvt_v2_*`` (``features_only``) and mmdet's
    ``PyramidVisionTransformerV2``, loaded with the same random weights (max |diff| of
    the features printed): forward without gradients and forward + backward (a sum of
    the feature means), per arch, input size and batch size. With ``--unfused`` also
    ours with :class:`~pvtfpn_mm.models.backbones.pvt_v2.MixFFN`'s row-blocked CPU
    path switched off (where the gain comes from). Roofline fraction (with ``peak``):
    the model's FLOPs per second over ``peak``; FLOPs are 2 x multiply-adds, attention
    included: of the forward by mmengine's analyzer, of forward + backward by torch's
    ``FlopCounterMode`` (:func:`counted_flops`: our MLP counted op by op, so the blocked
    backward's recomputation is not counted as work).
``train``
    The whole training step (``model.train_step``: data preprocessing, forward, losses,
    backward, the config's optimizer) of our configs against the same model built from
    mmdet's parts (:data:`PAIRS`): RetinaNet-b0/b2 against mmdet's own
    ``configs/pvt`` configs, Mask R-CNN-b0 against mmdet's PVTv2 + mmdet's FPN, UPerNet-b0
    against mmdet's PVTv2. Per part: backbone, neck, heads (their forward calls),
    loss + assigner (the rest of the forward), backward, optimizer step. With ``peak``,
    each model's roofline fraction (its own forward + backward FLOPs per second of the
    whole step, over ``peak``).
``infer``
    Inference end to end (``model.test_step``, batch 1: preprocessing, forward, box
    decoding and NMS) of RetinaNet-b0 at 800 x 1333 against mmdet's config, per part.
``memory``
    Peak memory of a backbone forward + backward (b2), ours, timm's and mmdet's, each
    without and with gradient checkpointing; and of one whole training step (RetinaNet-b0
    and -b2), ours, ours with ``with_cp=True`` and mmdet's config; batch 2, 512 x 512,
    each in a fresh process (CUDA: peak allocated; CPU: the growth of the peak resident
    set, see :mod:`.common`).
``compile`` (only when named)
    ``torch.compile(PVTv2, dynamic=True)`` against eager: compile time (the first call)
    and the speed after it, forward and forward + backward.

Weights are random (nothing is downloaded); the detectors' inference work after the
score threshold is not a trained model's. On CUDA every timed call is synchronized;
``--amp bf16|fp16`` runs forward passes under autocast.
"""

import contextlib
import copy
import functools
import gc
import json
import os
import os.path as osp
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn as nn

from .common import (
    add_device_arguments,
    describe_machine,
    device_from_args,
    interleaved_rounds,
    report_memory,
    run_memory_child,
    synchronize,
)

Size = tuple[int, int]

#: The training-step / inference pairs: name -> (our config, reference config, the
#: reference's cfg_options). ``mmdet::`` paths are mmdet's installed configs.
PAIRS: dict[str, tuple[str, str, dict]] = {
    'retinanet-b0': (
        'configs/retinanet/retinanet_pvtv2-b0_topdownfpn_1x_coco.py',
        'mmdet::pvt/retinanet_pvtv2-b0_fpn_1x_coco.py',
        {'model.backbone.init_cfg': None},
    ),
    'retinanet-b2': (
        'configs/retinanet/retinanet_pvtv2-b2_topdownfpn_1x_coco.py',
        'mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py',
        {'model.backbone.init_cfg': None},
    ),
    'mask-rcnn-b0': (
        'configs/mask_rcnn/mask-rcnn_pvtv2-b0_topdownfpn_1x_coco.py',
        'configs/mask_rcnn/mask-rcnn_pvtv2-b0_topdownfpn_1x_coco.py',
        {
            'model.backbone': dict(
                _delete_=True,
                type='PyramidVisionTransformerV2',
                embed_dims=32,
                num_layers=[2, 2, 2, 2],
                init_cfg=None,
            ),
            'model.neck': dict(
                _delete_=True,
                type='FPN',
                in_channels=[32, 64, 160, 256],
                out_channels=256,
                num_outs=5,
            ),
        },
    ),
    'upernet-b0': (
        'configs/upernet/upernet_pvtv2-b0_pvtfpnmm_8xb2-160k_ade20k-512x512.py',
        'configs/upernet/upernet_pvtv2-b0_pvtfpnmm_8xb2-160k_ade20k-512x512.py',
        {
            'model.backbone': dict(
                _delete_=True,
                type='mmdet.PyramidVisionTransformerV2',
                embed_dims=32,
                num_layers=[2, 2, 2, 2],
                init_cfg=None,
            )
        },
    ),
}
#: What the reference of each pair is, for the report.
REFERENCE_NAMES = {
    'retinanet-b0': "mmdet's configs/pvt/retinanet_pvtv2-b0_fpn_1x_coco.py",
    'retinanet-b2': "mmdet's configs/pvt/retinanet_pvtv2-b2_fpn_1x_coco.py",
    'mask-rcnn-b0': "our config with mmdet's PyramidVisionTransformerV2 + mmdet's FPN",
    'upernet-b0': "our config with mmdet's PyramidVisionTransformerV2",
}
#: The parts of a step the per-part profile names (submodules whose forward is timed).
PART_MODULES = {
    'backbone': ('backbone',),
    'neck': ('neck',),
    'heads': (
        'bbox_head',
        'rpn_head',
        'roi_head.bbox_roi_extractor',
        'roi_head.bbox_head',
        'roi_head.mask_roi_extractor',
        'roi_head.mask_head',
        'decode_head',
        'auxiliary_head',
    ),
}
PARTS = ('peak', 'backbone', 'train', 'infer', 'memory', 'compile')
#: The parts run when ``--parts`` is not given (``compile`` takes minutes of compiling).
DEFAULT_PARTS = ('peak', 'backbone', 'train', 'infer', 'memory')


# ---------------------------------------------------------------------------- output


def load_text() -> str:
    """The 1-, 5- and 15-minute load averages."""
    if not hasattr(os, 'getloadavg'):
        return 'load ?'
    return 'load ' + ' '.join(f'{x:.2f}' for x in os.getloadavg())


def ratios(
    times: Mapping[str, Sequence[float]], ref: str = 'ours'
) -> dict[str, dict]:
    """``other / ref`` per other candidate: ratio of the medians and median of the
    per-round ratios."""
    mine = times[ref]
    out = {}
    for name, t in times.items():
        if name == ref:
            continue
        out[name] = dict(
            of_medians=statistics.median(t) / statistics.median(mine),
            per_round=statistics.median(
                o / m for o, m in zip(t, mine, strict=True)
            ),
        )
    return out


def ratio_text(times: Mapping[str, Sequence[float]], ref: str = 'ours') -> str:
    return ', '.join(
        f'{name}/{ref} {r["of_medians"]:.2f}x (per round {r["per_round"]:.2f}x)'
        for name, r in ratios(times, ref).items()
    )


def times_text(times: Mapping[str, Sequence[float]]) -> str:
    return ', '.join(
        f'{name} {statistics.median(t):.0f} ms' for name, t in times.items()
    )


# ---------------------------------------------------------------------------- timing

#: ``--clock``: wall time, or this process's CPU time (user + system, all threads).
CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}


def rounds_of(
    fns: Mapping[str, Callable[[], Any]],
    rounds: int,
    device: torch.device,
    clock: str = 'wall',
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Milliseconds of each callable, ``rounds`` interleaved rounds after ``warmup``
    calls each. ``clock='cpu'`` counts the process's CPU time instead of wall time: with
    one thread on a shared machine it leaves out the time other processes held the core
    (with more threads it also counts threads spinning while they wait for each other)."""
    if clock == 'cpu' and device.type != 'cpu':
        raise ValueError(
            f'--clock cpu measures CPU work; it cannot time {device}'
        )
    return interleaved_rounds(
        fns,
        rounds,
        device,
        warmup=warmup,
        timer=None if clock == 'wall' else CLOCKS[clock],
    )


# ------------------------------------------------------------------------------ peak


def matmul_rates(
    device: torch.device,
    size: int = 2048,
    rounds: int = 7,
    clock: str = 'wall',
) -> dict[str, float]:
    """GFLOP/s of a product of two ``size`` x ``size`` fp32 matrices (best round):
    ``torch.mm`` (MKL on the CPU) and, on the CPU where torch has it, oneDNN's matmul
    (``torch.ops.mkldnn._linear_pointwise``, what the blocked MLP multiplies with). On
    AMD CPUs MKL runs its AVX2 code: oneDNN's rate is about twice MKL's there."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    fns: dict[str, Callable[[], Any]] = {
        'torch.mm': lambda: torch.mm(a, b, out=out)
    }
    if device.type == 'cpu' and hasattr(torch.ops.mkldnn, '_linear_pointwise'):
        fns['oneDNN'] = lambda: torch.ops.mkldnn._linear_pointwise(
            a, b, None, 'none', [], ''
        )
    times = rounds_of(fns, rounds, device, clock)
    return {n: 2 * size**3 / (min(t) / 1000) / 1e9 for n, t in times.items()}


def matmul_peak(
    device: torch.device,
    size: int = 2048,
    rounds: int = 7,
    clock: str = 'wall',
) -> float:
    """The roofline's denominator: the fastest of :func:`matmul_rates`."""
    return max(matmul_rates(device, size, rounds, clock).values())


# -------------------------------------------------------------------------- backbone


def build_backbones(
    arch: str,
    device: torch.device,
    with_mmdet: bool = True,
    unfused: bool = False,
) -> dict[str, nn.Module]:
    """Ours (timm-style init) and timm's / mmdet's loaded with the same weights."""
    import timm

    from pvtfpn_mm.models.backbones.pvt_v2 import MixFFN, PVTv2, arch_settings
    from pvtfpn_mm.weights import from_ours, load_state_dict_strict

    ours = PVTv2(arch)
    ours.init_weights()
    state = ours.state_dict()
    models: dict[str, nn.Module] = {'ours': ours}
    if unfused:
        plain = PVTv2(arch)
        plain.load_state_dict(state)
        for m in plain.modules():
            if isinstance(m, MixFFN):
                m.fused = False
        models['ours-unfused'] = plain
    timm_model = timm.create_model(f'pvt_v2_{arch}', features_only=True)
    load_state_dict_strict(timm_model, from_ours(state, 'timm_features'))
    models['timm'] = timm_model
    settings = arch_settings(arch)
    if with_mmdet and not settings['linear']:
        from mmdet.models.backbones.pvt import PyramidVisionTransformerV2

        mmdet_model = PyramidVisionTransformerV2(
            embed_dims=settings['embed_dims'][0],
            num_layers=list(settings['depths']),
            num_heads=list(settings['num_heads']),
            mlp_ratios=list(settings['mlp_ratios']),
            drop_path_rate=0.0,
        )
        load_state_dict_strict(mmdet_model, from_ours(state, 'mmdet'))
        models['mmdet'] = mmdet_model
    return {name: m.to(device) for name, m in models.items()}


def backbone_flops(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs (2 x multiply-adds, attention included) of ``model(x)``."""
    from mmengine.analysis import FlopAnalyzer

    import pvtfpn_mm  # noqa: F401  (registers the SDPA counter)

    analyzer = FlopAnalyzer(model.eval(), (x,))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        return 2.0 * analyzer.total()


def _sdpa_cpu_flop(
    query_shape, key_shape, value_shape, *args, **kwargs
) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs
) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(
        grad_out_shape, query_shape, key_shape, value_shape
    )


def _conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    bias,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
    **kwargs,
) -> int:
    """The input and weight gradients of a convolution: each the forward's FLOPs
    (torch 2.14's own formula leaves out ``groups``: 512 times too many for a depthwise
    convolution of 512 channels)."""
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


@contextlib.contextmanager
def op_by_op(*models: nn.Module) -> Iterator[None]:
    """Our MLPs (:class:`~pvtfpn_mm.models.backbones.pvt_v2.MixFFN`) in ``models`` op by
    op inside the block (their own ``fused`` attributes restored after it)."""
    from pvtfpn_mm.models.backbones.pvt_v2 import MixFFN

    mlps = [
        m for model in models for m in model.modules() if isinstance(m, MixFFN)
    ]
    saved = [vars(m).get('fused') for m in mlps]
    for m in mlps:
        m.fused = False
    try:
        yield
    finally:
        for m, value in zip(mlps, saved, strict=True):
            if value is None:
                del m.fused
            else:
                m.fused = value


def counted_flops(fn: Callable[[], Any], *models: nn.Module) -> float:
    """FLOPs (2 x multiply-adds of the matrix products, convolutions and attention, with
    their backward) that ``fn()`` runs, counted by torch's ``FlopCounterMode`` (plus the
    CPU flash attention it has no formula for, and convolution gradients with their
    ``groups``), with our MLPs in ``models`` op by op: the model's work, not the
    row-blocked backward's recomputation."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    formulas = {
        'convolution_backward': _conv_backward_flop,
        '_scaled_dot_product_flash_attention_for_cpu': _sdpa_cpu_flop,
        '_scaled_dot_product_flash_attention_for_cpu_backward': (
            _sdpa_cpu_backward_flop
        ),
    }
    mapping = {
        getattr(aten, name): f
        for name, f in formulas.items()
        if hasattr(aten, name)
    }
    with (
        op_by_op(*models),
        FlopCounterMode(display=False, custom_mapping=mapping) as counter,
    ):
        fn()
    return float(counter.get_total_flops())


def roofline_text(roofline: Mapping[str, float], flops: float) -> str:
    return (
        ' | roofline '
        + ', '.join(f'{n} {100 * f:.0f}%' for n, f in roofline.items())
        + f' ({flops / 1e9:.1f} GFLOP)'
    )


def _autocast(device: torch.device, amp: str | None) -> torch.autocast:
    if amp is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(
        device.type, dtype={'bf16': torch.bfloat16, 'fp16': torch.float16}[amp]
    )


def _forward(
    model: nn.Module, x: torch.Tensor, device: torch.device, amp: str | None
) -> Any:
    model.eval()
    with torch.no_grad(), _autocast(device, amp):
        return model(x)


def _forward_backward(
    model: nn.Module, x: torch.Tensor, device: torch.device, amp: str | None
) -> None:
    model.train()
    with _autocast(device, amp):
        outs = model(x)
        loss = sum(o.float().mean() for o in outs)
    loss.backward()
    for p in model.parameters():
        p.grad = None


def measure_backbones(
    archs: Sequence[str],
    sizes: Sequence[Size],
    batches: Sequence[int],
    modes: Sequence[str],
    rounds: int,
    device: torch.device,
    peak_gflops: float | None = None,
    with_mmdet: bool = True,
    unfused: bool = False,
    amp: str | None = None,
    echo: Callable[[str], None] = print,
    clock: str = 'wall',
) -> list[dict[str, Any]]:
    """The ``backbone`` part; one row per arch, size, batch and mode."""
    rows = []
    for arch in archs:
        models = build_backbones(arch, device, with_mmdet, unfused)
        for size in sizes:
            for batch in batches:
                x = torch.randn(batch, 3, *size, device=device)
                outs = {
                    n: _forward(m, x, device, amp) for n, m in models.items()
                }
                diffs = {
                    n: max(
                        float((a.float() - b.float()).abs().max())
                        for a, b in zip(outs['ours'], out, strict=True)
                    )
                    for n, out in outs.items()
                    if n != 'ours'
                }
                del outs
                flops = {
                    'fwd': backbone_flops(models['ours'], x)
                    if 'fwd' in modes
                    else None,
                    'fwd+bwd': counted_flops(
                        functools.partial(
                            _forward_backward, models['ours'], x, device, None
                        ),
                        models['ours'],
                    )
                    if 'fwd+bwd' in modes and peak_gflops
                    else None,
                }
                for mode in modes:
                    step = _forward if mode == 'fwd' else _forward_backward
                    fns = {
                        n: functools.partial(step, m, x, device, amp)
                        for n, m in models.items()
                    }
                    times = rounds_of(fns, rounds, device, clock)
                    row: dict[str, Any] = dict(
                        part='backbone',
                        arch=arch,
                        size='x'.join(map(str, size)),
                        batch=batch,
                        mode=mode,
                        load=load_text(),
                        ms={n: statistics.median(t) for n, t in times.items()},
                        ratios=ratios(times),
                        max_diff=diffs,
                    )
                    line = (
                        f'{arch} {row["size"]} batch {batch} {mode}: {times_text(times)}'
                        f' | {ratio_text(times)}'
                    )
                    mode_flops = flops[mode]
                    if mode_flops and peak_gflops:
                        row['flops'] = mode_flops
                        row['roofline'] = {
                            n: mode_flops
                            / (statistics.median(t) / 1000)
                            / 1e9
                            / peak_gflops
                            for n, t in times.items()
                        }
                        line += roofline_text(row['roofline'], mode_flops)
                    if mode == 'fwd':
                        line += ' | max|diff| ' + ', '.join(
                            f'{n} {d:.1e}' for n, d in diffs.items()
                        )
                    echo(line + f' | {row["load"]}')
                    rows.append(row)
        del models
        gc.collect()
    return rows


# --------------------------------------------------------------------------- compile


def measure_compile(
    archs: Sequence[str],
    size: Size,
    batch: int,
    modes: Sequence[str],
    rounds: int,
    device: torch.device,
    clock: str = 'wall',
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The ``compile`` part: ``torch.compile(PVTv2, dynamic=True)`` (inductor) against
    the same model in eager mode: the time of the first call (compiling) and the speed
    after it, forward without gradients and forward + backward."""
    from pvtfpn_mm.models.backbones.pvt_v2 import PVTv2

    rows = []
    for arch in archs:
        eager = PVTv2(arch)
        eager.init_weights()
        twin = PVTv2(arch)
        twin.load_state_dict(eager.state_dict())
        x = torch.randn(batch, 3, *size, device=device)
        for mode in modes:
            torch._dynamo.reset()
            # an nn.Module (OptimizedModule) when given one
            compiled = cast(
                nn.Module, torch.compile(twin.to(device), dynamic=True)
            )
            step = _forward if mode == 'fwd' else _forward_backward
            synchronize(device)
            start = time.perf_counter()
            step(compiled, x, device, None)
            synchronize(device)
            compile_s = time.perf_counter() - start
            fns = {
                'ours': functools.partial(
                    step, eager.to(device), x, device, None
                ),
                'ours compiled': functools.partial(
                    step, compiled, x, device, None
                ),
            }
            times = rounds_of(fns, rounds, device, clock)
            row = dict(
                part='compile',
                arch=arch,
                size='x'.join(map(str, size)),
                batch=batch,
                mode=mode,
                compile_s=compile_s,
                load=load_text(),
                ms={n: statistics.median(t) for n, t in times.items()},
                speedup=statistics.median(times['ours'])
                / statistics.median(times['ours compiled']),
            )
            echo(
                f'compile {arch} {row["size"]} batch {batch} {mode}: first call (compiling) '
                f'{compile_s:.0f} s; then {times_text(times)} | compiled speed-up '
                f'{row["speedup"]:.2f}x | {row["load"]}'
            )
            rows.append(row)
    torch._dynamo.reset()
    return rows


# ------------------------------------------------------------------ detectors / segm.


def resolve_config(path: str) -> str:
    """``mmdet::x/y.py`` -> mmdet's installed config; a relative path -> from the
    repository root (or the installed package's ``.mim``)."""
    if path.startswith('mmdet::'):
        import mmdet

        return osp.join(
            osp.dirname(mmdet.__file__),
            '.mim',
            'configs',
            path[len('mmdet::') :],
        )
    if osp.isfile(path):
        return path
    from pvtfpn_mm.model_index import index_root

    return osp.join(index_root(), path)


class PartTimer:
    """Times the forward calls of named submodules (summed per part, per step) by
    wrapping their ``forward`` (so it also sees ``self.forward(...)`` calls that skip
    ``__call__``, as mmseg's decode heads make); the wrappers change nothing else."""

    def __init__(
        self, model: nn.Module, device: torch.device, clock: str = 'wall'
    ):
        self.device, self.now = device, CLOCKS[clock]
        self.totals: dict[str, float] = {}
        self._depth = 0
        self._restore: list[nn.Module] = []
        modules = dict(model.named_modules())
        for part, names in PART_MODULES.items():
            for name in names:
                if name in modules:
                    self._wrap(part, modules[name])

    def _wrap(self, part: str, module: nn.Module) -> None:
        original = module.forward

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if (
                self._depth
            ):  # a part inside a part (roi_head's bbox_head in roi_head)
                return original(*args, **kwargs)
            self._depth += 1
            synchronize(self.device)
            start = self.now()
            try:
                return original(*args, **kwargs)
            finally:
                synchronize(self.device)
                self.totals[part] = self.totals.get(part, 0.0) + 1000 * (
                    self.now() - start
                )
                self._depth -= 1

        module.forward = timed
        self._restore.append(module)

    def remove(self) -> None:
        for module in self._restore:
            del module.forward
        self._restore = []

    def take(self) -> dict[str, float]:
        totals, self.totals = self.totals, {}
        return totals


class StepCandidate:
    """A config's model with its optimizer wrapper and a batch; ``train_step`` and
    ``test_step`` record the time of each part (``.parts``, one dict per call)."""

    def __init__(
        self,
        config: str,
        device: torch.device,
        cfg_options: dict | None,
        train_size: Size,
        train_batch: int,
        test_size: Size | None = None,
        amp: str | None = None,
        clock: str = 'wall',
    ):
        from .configs import build_for_benchmark, make_batch, task_of

        self.device, self.amp, self.now = device, amp, CLOCKS[clock]
        self.cfg, self.model, self.optim_wrapper = build_for_benchmark(
            resolve_config(config), device, cfg_options
        )
        self.task = task_of(self.cfg)
        self.train_data = make_batch(
            self.model, self.task, train_size, train_batch, True, seed=1
        )
        self.test_data = (
            make_batch(self.model, self.task, test_size, 1, False)
            if test_size
            else None
        )
        self.timer = PartTimer(self.model, device, clock)
        self.parts: list[dict[str, float]] = []

    def train_step(self) -> None:
        """``model.train_step`` split into its parts (same calls, in the same order)."""
        model, ow, device = self.model, self.optim_wrapper, self.device
        model.train()
        times = {}
        synchronize(device)
        start = self.now()
        with _autocast(device, self.amp):
            data = model.data_preprocessor(copy.copy(self.train_data), True)
            losses = model._run_forward(data, mode='loss')
            loss, _ = model.parse_losses(losses)
        synchronize(device)
        forward = 1000 * (self.now() - start)
        times.update(self.timer.take())
        times['loss+assigner'] = forward - sum(times.values())
        start = self.now()
        ow.backward(loss)
        synchronize(device)
        times['backward'] = 1000 * (self.now() - start)
        start = self.now()
        ow.step()
        ow.zero_grad()
        synchronize(device)
        times['optimizer'] = 1000 * (self.now() - start)
        self.parts.append(times)

    def train_flops(self) -> float:
        """FLOPs of the forward and backward of one training step
        (:func:`counted_flops`); no parameter changes, no time recorded."""
        model = self.model
        model.train()

        def step() -> None:
            data = model.data_preprocessor(copy.copy(self.train_data), True)
            loss, _ = model.parse_losses(model._run_forward(data, mode='loss'))
            loss.backward()

        flops = counted_flops(step, model)
        self.optim_wrapper.zero_grad()
        self.timer.take()
        return flops

    def test_step(self) -> None:
        model, device = self.model, self.device
        model.eval()
        synchronize(device)
        start = self.now()
        with torch.no_grad(), _autocast(device, self.amp):
            model.test_step(copy.copy(self.test_data))
        synchronize(device)
        total = 1000 * (self.now() - start)
        times = self.timer.take()
        times['rest (preprocess, decode, NMS)'] = total - sum(times.values())
        self.parts.append(times)


def _median_parts(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = list(dict.fromkeys(k for p in parts for k in p))
    return {k: statistics.median(p.get(k, 0.0) for p in parts) for k in keys}


def parts_text(parts: Mapping[str, float]) -> str:
    total = sum(parts.values())
    return ', '.join(
        f'{k} {v:.0f} ms ({100 * v / total:.0f}%)' for k, v in parts.items()
    )


def measure_steps(
    pairs: Sequence[str],
    kind: str,
    size: Size,
    batch: int,
    rounds: int,
    device: torch.device,
    amp: str | None = None,
    echo: Callable[[str], None] = print,
    clock: str = 'wall',
    peak_gflops: float | None = None,
) -> list[dict[str, Any]]:
    """The ``train`` (``kind='train'``) or ``infer`` part for ``pairs``; with
    ``peak_gflops``, training steps get their roofline fractions (each model's own
    FLOPs, :meth:`StepCandidate.train_flops`)."""
    rows = []
    for pair in pairs:
        ours_cfg, ref_cfg, ref_options = PAIRS[pair]
        kwargs: dict[str, Any] = dict(
            train_size=size,
            train_batch=batch,
            test_size=size if kind == 'infer' else None,
            amp=amp,
            clock=clock,
        )
        cands = {
            'ours': StepCandidate(ours_cfg, device, None, **kwargs),
            'mmdet': StepCandidate(ref_cfg, device, ref_options, **kwargs),
        }
        fns = {
            n: (c.train_step if kind == 'train' else c.test_step)
            for n, c in cands.items()
        }
        flops = (
            {n: c.train_flops() for n, c in cands.items()}
            if kind == 'train' and peak_gflops
            else None
        )
        times = rounds_of(fns, rounds, device, clock)
        for c in cands.values():
            c.parts = c.parts[-rounds:]  # not the warm-up call
        row: dict[str, Any] = dict(
            part=kind,
            pair=pair,
            reference=REFERENCE_NAMES[pair],
            size='x'.join(map(str, size)),
            batch=batch if kind == 'train' else 1,
            load=load_text(),
            ms={n: statistics.median(t) for n, t in times.items()},
            ratios=ratios(times),
            parts={n: _median_parts(c.parts) for n, c in cands.items()},
        )
        line = (
            f'{kind} {pair} {row["size"]} batch {row["batch"]}: {times_text(times)} | '
            f'{ratio_text(times)}'
        )
        if flops and peak_gflops:
            row['flops'] = flops
            row['roofline'] = {
                n: flops[n] / (statistics.median(t) / 1000) / 1e9 / peak_gflops
                for n, t in times.items()
            }
            line += ' | roofline ' + ', '.join(
                f'{n} {100 * f:.0f}% ({flops[n] / 1e9:.0f} GFLOP)'
                for n, f in row['roofline'].items()
            )
        echo(f'{line} | {row["load"]}')
        for name, parts in row['parts'].items():
            echo(f'    {name}: {parts_text(parts)}')
        rows.append(row)
        for c in cands.values():
            c.timer.remove()
        del cands
        gc.collect()
    return rows


# ---------------------------------------------------------------------------- memory


def memory_child(
    config: str, cfg_options: dict | None, size: Size, batch: int, threads: int
) -> None:
    """One training step (after a first one) in this fresh process; prints its peak
    memory growth (MiB) as ``PVTFPN_MEMORY {...}``."""
    from .common import PeakMemory, release_freed_memory

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.type == 'cpu':
        release_freed_memory()
    torch.set_num_threads(threads)
    cand = StepCandidate(config, device, cfg_options, size, batch)
    cand.train_step()  # the optimizer state is created in the first step
    gc.collect()
    with PeakMemory(device) as peak:
        cand.train_step()
    report_memory(dict(train=peak.mib))


def backbone_memory_child(
    arch: str, name: str, with_cp: bool, size: Size, batch: int, threads: int
) -> None:
    """One backbone forward + backward (after a first one) in this fresh process; prints
    its peak memory growth (MiB) as ``PVTFPN_MEMORY {...}``."""
    from .common import PeakMemory, release_freed_memory

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.type == 'cpu':
        release_freed_memory()
    torch.set_num_threads(threads)
    if name == 'mmdet':
        from mmdet.models.backbones.pvt import PyramidVisionTransformerV2

        from pvtfpn_mm.models.backbones.pvt_v2 import arch_settings

        settings = arch_settings(arch)
        model = PyramidVisionTransformerV2(
            embed_dims=settings['embed_dims'][0],
            num_layers=list(settings['depths']),
            num_heads=list(settings['num_heads']),
            mlp_ratios=list(settings['mlp_ratios']),
            drop_path_rate=0.0,
        )  # mmdet's PVT has no with_cp
    elif name == 'timm':
        import timm

        # timm's feature wrapper, whose set_grad_checkpointing nn.Module hides
        timm_model: Any = timm.create_model(
            f'pvt_v2_{arch}', features_only=True
        )
        timm_model.set_grad_checkpointing(with_cp)
        model = timm_model
    else:
        from pvtfpn_mm.models.backbones.pvt_v2 import PVTv2

        model = PVTv2(arch, with_cp=with_cp)
    model.to(device)
    x = torch.randn(batch, 3, *size, device=device)
    _forward_backward(model, x, device, None)
    gc.collect()
    with PeakMemory(device) as peak:
        _forward_backward(model, x, device, None)
    report_memory(dict(train=peak.mib))


def _child(function: str, *args: Any) -> float | None:
    return run_memory_child(__name__, function, list(args))['train']


def _alternate_children(
    children: dict[str, tuple[Any, ...]], repeats: int
) -> tuple[dict[str, list[float | None]], dict[str, float]]:
    """Runs each ``name: (function, *args)`` of ``children`` in a fresh process, the
    candidates alternating, ``repeats`` times: every run's peak MiB and their medians."""
    runs: dict[str, list[float | None]] = {n: [] for n in children}
    for _ in range(repeats):
        for name, args in children.items():
            runs[name].append(_child(*args))
    # numbers where the child could measure (None, without /proc, fails here)
    mib = {
        n: statistics.median(cast('list[float]', v)) for n, v in runs.items()
    }
    return runs, mib


def measure_backbone_memory(
    archs: Sequence[str],
    size: Size,
    batch: int,
    repeats: int = 1,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Peak memory of a backbone forward + backward: ours and timm, each without and with
    gradient checkpointing, and mmdet (which has no ``with_cp``), alternating fresh
    processes, median of ``repeats``."""
    rows = []
    for arch in archs:
        names = [
            ('ours', False),
            ('ours', True),
            ('timm', False),
            ('timm', True),
        ]
        if arch != 'b2_li':
            names.append(('mmdet', False))
        threads = torch.get_num_threads()
        runs, mib = _alternate_children(
            {
                f'{n}{" with_cp" if cp else ""}': (
                    'backbone_memory_child',
                    arch,
                    n,
                    cp,
                    list(size),
                    batch,
                    threads,
                )
                for n, cp in names
            },
            repeats,
        )
        row = dict(
            part='memory',
            what='backbone fwd+bwd',
            arch=arch,
            size='x'.join(map(str, size)),
            batch=batch,
            mib=mib,
            runs=runs,
            load=load_text(),
        )
        cuts = ', '.join(
            f'{n} {100 * (1 - mib[n + " with_cp"] / mib[n]):.0f}%'
            for n in ('ours', 'timm')
        )
        echo(
            f'memory backbone {arch} {row["size"]} batch {batch} fwd+bwd: '
            + ', '.join(f'{n} {v:.0f} MiB' for n, v in mib.items())
            + f' | with_cp saves: {cuts}'
            + f' | {row["load"]}'
        )
        rows.append(row)
    return rows


def measure_memory(
    pairs: Sequence[str],
    size: Size,
    batch: int,
    repeats: int = 1,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The ``memory`` part: ours, ours with ``with_cp`` and the reference, alternating
    fresh processes, median of ``repeats``."""
    rows = []
    for pair in pairs:
        ours_cfg, ref_cfg, ref_options = PAIRS[pair]
        cands = {
            'ours': (ours_cfg, None),
            'ours with_cp': (ours_cfg, {'model.backbone.with_cp': True}),
            'mmdet': (ref_cfg, ref_options),
        }
        threads = torch.get_num_threads()
        runs, mib = _alternate_children(
            {
                name: (
                    'memory_child',
                    resolve_config(config),
                    options,
                    list(size),
                    batch,
                    threads,
                )
                for name, (config, options) in cands.items()
            },
            repeats,
        )
        row = dict(
            part='memory',
            pair=pair,
            size='x'.join(map(str, size)),
            batch=batch,
            mib=mib,
            runs=runs,
            load=load_text(),
        )
        echo(
            f'memory {pair} {row["size"]} batch {batch}: '
            + ', '.join(f'{n} {v:.0f} MiB' for n, v in mib.items())
            + f' | with_cp saves {100 * (1 - mib["ours with_cp"] / mib["ours"]):.0f}%'
            + f', ours/mmdet {mib["ours"] / mib["mmdet"]:.2f} | runs {runs} | {row["load"]}'
        )
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the CLI


def _sizes(texts: Sequence[str]) -> list[Size]:
    from .configs import parse_size

    # a size for every text (None only for None)
    return [cast(Size, parse_size(t)) for t in texts]


def add_arguments(parser) -> None:
    """The ``compare`` mode's command-line arguments."""
    parser.add_argument(
        '--parts',
        nargs='+',
        default=list(DEFAULT_PARTS),
        choices=PARTS,
        help=f'what to measure (default: {" ".join(DEFAULT_PARTS)})',
    )
    add_device_arguments(parser)
    parser.add_argument(
        '--clock',
        choices=tuple(CLOCKS),
        default='wall',
        help='wall time, or process CPU time (with --threads 1 on a shared '
        'machine: leaves out the time other processes held the core)',
    )
    parser.add_argument(
        '--amp',
        choices=('bf16', 'fp16'),
        default=None,
        help='forward passes under autocast with this dtype',
    )
    parser.add_argument(
        '--archs', nargs='+', default=['b0', 'b2'], help='backbone archs'
    )
    parser.add_argument(
        '--sizes',
        nargs='+',
        default=['512x512', '800x1344'],
        help='backbone input sizes, HxW',
    )
    parser.add_argument(
        '--batches',
        nargs='+',
        type=int,
        default=[1, 2],
        help='backbone batch sizes',
    )
    parser.add_argument(
        '--modes',
        nargs='+',
        default=['fwd', 'fwd+bwd'],
        choices=('fwd', 'fwd+bwd'),
        help='backbone: forward (no grad), forward + backward',
    )
    parser.add_argument(
        '--unfused',
        action='store_true',
        help='backbone: also ours with the row-blocked CPU MLP off',
    )
    parser.add_argument(
        '--no-mmdet', action='store_true', help='backbone: skip mmdet'
    )
    parser.add_argument(
        '--rounds',
        type=int,
        default=7,
        help='timed rounds (backbone, inference)',
    )
    parser.add_argument(
        '--pairs',
        nargs='+',
        default=list(PAIRS),
        choices=list(PAIRS),
        help='train: the model pairs',
    )
    parser.add_argument('--train-size', default='512x512', help='train: HxW')
    parser.add_argument(
        '--train-batch', type=int, default=2, help='train: images a step'
    )
    parser.add_argument(
        '--train-rounds', type=int, default=5, help='train: timed steps'
    )
    parser.add_argument(
        '--infer-pairs',
        nargs='+',
        default=['retinanet-b0'],
        choices=list(PAIRS),
        help='infer: the model pairs',
    )
    parser.add_argument('--infer-size', default='800x1333', help='infer: HxW')
    parser.add_argument(
        '--memory-pairs',
        nargs='+',
        default=['retinanet-b0', 'retinanet-b2'],
        choices=list(PAIRS),
        help='memory: the model pairs',
    )
    parser.add_argument(
        '--memory-archs',
        nargs='+',
        default=['b2'],
        help='memory: backbones (forward + backward at the train size/batch)',
    )
    parser.add_argument(
        '--memory-repeats',
        type=int,
        default=1,
        help='memory: fresh processes per candidate',
    )
    parser.add_argument(
        '--compile-size', default='512x512', help='compile: HxW'
    )
    parser.add_argument(
        '--compile-batch', type=int, default=2, help='compile: batch size'
    )
    parser.add_argument(
        '--out-json', default=None, help='write every result here'
    )


def run(args) -> list[dict[str, Any]]:
    """Runs the ``compare`` mode from parsed ``args``; prints one line per result."""

    for name in ('rounds', 'train_rounds', 'train_batch', 'memory_repeats'):
        if getattr(args, name) < 1:
            raise ValueError(
                f'--{name.replace("_", "-")} must be >= 1, '
                f'got {getattr(args, name)}'
            )
    device = device_from_args(args)
    machine = describe_machine(device)
    print(
        f"compare on {machine['device_name']} ({machine['device']}), "
        f"{machine['threads']} threads, torch {machine['torch']}, "
        f"amp {args.amp or 'off (fp32)'}, {args.clock} clock; medians of interleaved rounds; "
        f'ratio = other ms / our ms; {load_text()}',
        flush=True,
    )
    echo = functools.partial(print, flush=True)
    results: list[dict[str, Any]] = []
    peak = None
    if 'peak' in args.parts:
        rates = matmul_rates(device, clock=args.clock)
        peak = max(rates.values())
        results.append(
            dict(part='peak', gflops=peak, rates=rates, load=load_text())
        )
        echo(
            f'matmul peak (2048^2 fp32, {torch.get_num_threads()} threads): '
            + ', '.join(f'{n} {r:.0f}' for n, r in rates.items())
            + f' GFLOP/s; rooflines over {peak:.0f} | {load_text()}'
        )
    if 'backbone' in args.parts:
        results += measure_backbones(
            args.archs,
            _sizes(args.sizes),
            args.batches,
            args.modes,
            args.rounds,
            device,
            peak,
            not args.no_mmdet,
            args.unfused,
            args.amp,
            echo,
            args.clock,
        )
    if 'train' in args.parts:
        results += measure_steps(
            args.pairs,
            'train',
            _sizes([args.train_size])[0],
            args.train_batch,
            args.train_rounds,
            device,
            args.amp,
            echo,
            args.clock,
            peak,
        )
    if 'infer' in args.parts:
        results += measure_steps(
            args.infer_pairs,
            'infer',
            _sizes([args.infer_size])[0],
            1,
            args.rounds,
            device,
            args.amp,
            echo,
            args.clock,
        )
    if 'memory' in args.parts:
        results += measure_backbone_memory(
            args.memory_archs,
            _sizes([args.train_size])[0],
            args.train_batch,
            args.memory_repeats,
            echo,
        )
        results += measure_memory(
            args.memory_pairs,
            _sizes([args.train_size])[0],
            args.train_batch,
            args.memory_repeats,
            echo,
        )
    if 'compile' in args.parts:
        results += measure_compile(
            args.archs,
            _sizes([args.compile_size])[0],
            args.compile_batch,
            args.modes,
            args.rounds,
            device,
            args.clock,
            echo,
        )
    if args.out_json:
        from .common import write_text

        write_text(
            args.out_json,
            json.dumps(dict(machine=machine, results=results), indent=1),
        )
    return results
