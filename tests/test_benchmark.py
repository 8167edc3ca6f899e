"""FLOPs of scaled_dot_product_attention, tools/benchmark.py, mmdet's/mmseg's analysis tools."""

import csv
import glob
import importlib.util
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer, get_model_complexity_info
from mmengine.config import Config
from mmengine.hub import get_config

import pvtfpn_mm  # noqa: F401  (registers the counter)
from pvtfpn_mm.engine.build import build_model_from_config
from pvtfpn_mm.engine.flops import SDPA_OP, sdpa_flop_jit

from pvtfpn_tools.benchmark import MODES, BenchmarkError, load_mode
from pvtfpn_tools.benchmark.configs import (
    all_configs,
    is_complete,
    make_batch,
    sizes_of,
    task_of,
)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SITE = osp.dirname(osp.dirname(torch.__file__))


def config(pattern):
    found = sorted(glob.glob(osp.join(REPO, 'configs', pattern)))
    assert len(found) == 1, (pattern, found)
    return found[0]


def benchmark_tool():
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import benchmark
    finally:
        sys.path.pop(0)
    return benchmark


# ---------------------------------------------------------------------------- FLOPs


class _Attention(torch.nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_sdpa_flops_are_both_products():
    q, k, v = (
        torch.rand(2, 3, 10, 8),
        torch.rand(2, 3, 6, 8),
        torch.rand(2, 3, 6, 5),
    )
    analyzer = FlopAnalyzer(_Attention(), (q, k, v))
    assert analyzer.total() == 2 * 3 * 10 * 6 * (8 + 5)
    assert (
        analyzer.by_operator()['scaled_dot_product_attention']
        == analyzer.total()
    )
    from mmengine.analysis import complexity_analysis

    assert (
        complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS[SDPA_OP]
        is sdpa_flop_jit
    )


def _get_flops(model, size):
    """What mmdet's tools/analysis_tools/get_flops.py does with one image."""
    from functools import partial

    model.eval()
    batch = make_batch(model, 'mmdet', size, 1, False)
    data = model.data_preprocessor(batch, False)
    model.forward = partial(model.forward, data_samples=data['data_samples'])
    with torch.no_grad():
        out = get_model_complexity_info(
            model,
            None,
            inputs=data['inputs'],
            show_table=False,
            show_arch=False,
        )
    return out['flops'], out['params']


def test_get_flops_of_our_retinanet_b0_matches_mmdets_own():
    """mmdet's configs/pvt RetinaNet-b0 writes its attention as explicit matrix products
    (nn.MultiheadAttention); ours calls scaled_dot_product_attention."""
    mmdet_cfg = get_config('mmdet::pvt/retinanet_pvtv2-b0_fpn_1x_coco.py')
    mmdet_cfg.model.backbone.init_cfg = None
    ours_cfg = Config.fromfile(
        config('retinanet/retinanet_pvtv2-b0_*1x_coco.py')
    )
    ours_cfg.model.backbone.init_cfg = None
    size = (128, 160)
    theirs, theirs_params = _get_flops(
        build_model_from_config(mmdet_cfg), size
    )
    ours, ours_params = _get_flops(build_model_from_config(ours_cfg), size)
    assert ours_params == theirs_params
    assert abs(ours / theirs - 1) < 0.01, (ours, theirs)


# ------------------------------------------------------------------- the benchmark


def test_sizes_of_configs():
    det = Config.fromfile(config('retinanet/retinanet_pvtv2-b0_*1x_coco.py'))
    assert sizes_of(det) == ((800, 1333), (800, 1333))
    seg = Config.fromfile(config('sem_fpn/fpn_pvtv2-b0_*ade20k-512x512.py'))
    assert sizes_of(seg) == ((512, 512), (512, 512))
    depth = Config.fromfile(config('depth/*480x480.py'))
    assert sizes_of(depth) == ((480, 480), (480, 480))
    cls = Config.fromfile(config('examples/cls_*224.py'))
    assert task_of(cls) == 'mmpretrain' and sizes_of(cls) == (
        (224, 224),
        (224, 224),
    )


def test_benchmark_one_config_tiny(tmp_path, capsys):
    csv_path, md_path = tmp_path / 'b.csv', tmp_path / 'b.md'
    rows = benchmark_tool().main(
        [
            config('retinanet/retinanet_pvtv2-b0_*1x_coco.py'),
            '--size',
            '64x64',
            '--rounds',
            '2',
            '--train-rounds',
            '1',
            '--skip-memory',
            '--threads',
            '1',
            '--device',
            'cpu',
            '--out-csv',
            str(csv_path),
            '--out-md',
            str(md_path),
        ]
    )
    assert len(rows) == 1
    row = rows[0]
    assert (
        row['params_m'] == pytest.approx(12.9, abs=0.06)
        and row['task'] == 'mmdet'
    )
    assert (
        row['test_size'] == row['train_size'] == '64x64'
        and row['train_batch'] == 2
    )
    assert row['flops_g'] > 0 and row['infer_ms'] > 0 and row['train_ms'] > 0
    assert row['infer_ms_min'] <= row['infer_ms'] <= row['infer_ms_max']
    assert row['threads'] == 1 and row['device'] == 'cpu'
    out = capsys.readouterr()
    assert '| retinanet_pvtv2-b0' in out.out and '1 torch threads' in out.out
    assert 'inference' in out.err  # progress, one line per step off a terminal
    written = list(csv.DictReader(open(csv_path)))
    assert (
        written[0]['config'] == row['config']
        and float(written[0]['flops_g']) > 0
    )
    assert md_path.read_text().startswith('Measured ')


def test_a_failing_config_does_not_end_the_run(tmp_path, capsys):
    """A long --all run keeps going past a config that fails; the failure is in the
    outputs (error column, a list under the table) and the run ends in an error."""
    toy = config('quickstart/retinanet_pvtv2-b0_*toy-96.py')
    bad = tmp_path / 'broken.py'
    bad.write_text(
        f"_base_ = {toy!r}\nmodel = dict(backbone=dict(type='NoSuchBackbone'))\n"
    )
    csv_path, md_path = tmp_path / 'b.csv', tmp_path / 'b.md'
    args = [str(bad), toy, '--size', '64x64', '--rounds', '1']
    args += ['--train-rounds', '1', '--skip-memory', '--skip-flops']
    args += ['--device', 'cpu', '--threads', '1']
    args += ['--out-csv', str(csv_path), '--out-md', str(md_path)]
    with pytest.raises(BenchmarkError, match=r'1 of 2 configs failed: broken'):
        benchmark_tool().main(args)
    written = list(csv.DictReader(open(csv_path)))
    assert [r['config'] for r in written] == ['broken', osp.basename(toy)[:-3]]
    assert 'NoSuchBackbone' in written[0]['error'] and not written[1]['error']
    assert (
        float(written[1]['infer_ms']) > 0 and float(written[1]['train_ms']) > 0
    )
    text = md_path.read_text()
    assert 'Failed' in text and '- broken: KeyError' in text
    assert 'NoSuchBackbone' in capsys.readouterr().err  # the traceback


def test_size_override_reaches_the_segmentation_preprocessor():
    """mmseg pads training batches to the crop size: ``--size`` must change that too, or
    a 64x64 run trains at 512x512 while its row says 64x64."""
    from pvtfpn_tools.benchmark.configs import Candidate

    cfg = config('sem_fpn/fpn_pvtv2-b0_*ade20k-512x512.py')
    cand = Candidate(cfg, torch.device('cpu'), size=(64, 96), train_batch=2)
    cand.model.train()
    data = cand.model.data_preprocessor(cand.train_data, True)
    assert tuple(data['inputs'].shape) == (2, 3, 64, 96)


def test_classifier_gets_the_top_level_data_preprocessor():
    """As mmengine's Runner: mmpretrain's dataset config puts ``num_classes`` (needed by
    Mixup / CutMix) in a top-level ``data_preprocessor``; built outside a Runner (the
    benchmark, the exporter) the model must get it too, or its train step fails."""
    cfg = config('examples/cls_timm-pvt-v2-b2_*in1k-224.py')
    model = build_model_from_config(cfg)
    assert model.data_preprocessor.num_classes == 1000
    assert model.data_preprocessor.batch_augments is not None
    # the model's own data_preprocessor wins over the top-level one
    model = build_model_from_config(
        cfg, {'model.data_preprocessor': dict(type='ClsDataPreprocessor')}
    )
    assert model.data_preprocessor.num_classes is None


@pytest.mark.slow
def test_benchmark_memory_and_segmentor(tmp_path):
    """A segmentor (SyncBN reverted on one device) with the CPU memory child process."""
    rows = benchmark_tool().main(
        [
            'configs',
            config('sem_fpn/fpn_pvtv2-b0_*ade20k-512x512.py'),
            '--size',
            '64x64',
            '--rounds',
            '1',
            '--train-rounds',
            '1',
            '--train-batch',
            '1',
            '--device',
            'cpu',
        ]
    )
    row = rows[0]
    assert row['task'] == 'mmseg' and row['params_m'] == pytest.approx(
        7.6, abs=0.06
    )
    assert row['train_batch'] == 1
    assert row['train_mem_mib'] is not None and row['train_mem_mib'] > 0
    assert row['infer_mem_mib'] is not None and row['infer_mem_mib'] >= 0


def test_bad_arguments_are_named(tmp_path):
    tool = benchmark_tool()
    cfg = config('retinanet/retinanet_pvtv2-b0_*1x_coco.py')
    with pytest.raises(ValueError, match=r"--size must be HxW.*'64'"):
        tool.main([cfg, '--size', '64'])
    with pytest.raises(
        ValueError, match=r'--size must be at least 32x32.*16x16'
    ):
        tool.main([cfg, '--size', '16x16'])
    with pytest.raises(ValueError, match='--rounds must be >= 1, got 0'):
        tool.main([cfg, '--rounds', '0'])
    with pytest.raises(ValueError, match='--threads must be >= 1, got 0'):
        tool.main([cfg, '--threads', '0'])
    with pytest.raises(
        ValueError, match="--device 'gpu' is not a torch device"
    ):
        tool.main([cfg, '--device', 'gpu'])
    with pytest.raises(
        ValueError, match="--device must be cpu or cuda, got 'meta'"
    ):
        tool.main(['compare', '--device', 'meta'])
    with pytest.raises(ValueError, match='--threads must be >= 1, got -1'):
        tool.main(['compare', '--threads', '-1'])
    with pytest.raises(FileNotFoundError, match='nope.py'):
        tool.main([str(tmp_path / 'nope.py')])
    with pytest.raises(ValueError, match='not both'):
        tool.main([cfg, '--all'])
    with pytest.raises(ValueError, match="unknown benchmark mode 'x'"):
        load_mode('x')
    assert 'configs' in MODES


@pytest.mark.slow
def test_all_finds_every_complete_config():
    configs = all_configs()
    assert not any('_base_' in c for c in configs)
    complete = [c for c in configs if is_complete(c)]
    assert any('retinanet_pvtv2-b0' in c for c in complete)
    assert any('upernet_pvtv2-b5' in c for c in complete)
    assert len(complete) >= 40


# ------------------------------------------------------ mmdet's / mmseg's own tools


@pytest.mark.parametrize(
    'tool',
    [
        'mmdet/.mim/tools/analysis_tools/analyze_logs.py',
        'mmdet/.mim/tools/analysis_tools/benchmark.py',
        'mmseg/.mim/tools/analysis_tools/analyze_logs.py',
        'mmseg/.mim/tools/analysis_tools/benchmark.py',
    ],
)
def test_mm_analysis_tools_import(tool):
    """They stop at import without seaborn / psutil (pinned in the stack)."""
    path = osp.join(SITE, tool)
    spec = importlib.util.spec_from_file_location(
        '_tool_' + tool.replace('/', '_')[:-3], path
    )
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.mark.slow
def test_mim_get_flops_counts_attention(tmp_path):
    """``mim run mmdet get_flops`` (mmdet's own tool, our config's custom_imports) gives
    what get_model_complexity_info gives here, attention included."""
    import re
    import subprocess

    from mmengine.analysis.print_helper import _format_size

    from pvtfpn_tools.toy_data import write_toy_data

    toy = tmp_path / 'toy'
    write_toy_data(str(toy), num_train=1, num_val=1, img_size=96, seed=0)
    cfg_path = tmp_path / 'tiny.py'
    cfg_path.write_text(
        f"_base_ = '{config('quickstart/retinanet_pvtv2-b0_*toy-96.py')}'\n"
        f"data_root = '{toy}/coco/'\n"
        "val_dataloader = dict(num_workers=0, persistent_workers=False,\n"
        "                      dataset=dict(data_root=data_root))\n"
    )
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    proc = subprocess.run(
        [mim, 'run', 'mmdet', 'get_flops', str(cfg_path), '--num-images', '1'],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reported = re.search(r'Flops: (\S+)', proc.stdout).group(1)
    model = build_model_from_config(Config.fromfile(str(cfg_path)))
    flops, _ = _get_flops(model, (96, 96))
    assert reported == _format_size(flops)
    from mmengine.analysis import complexity_analysis

    handle = complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS.pop(SDPA_OP)
    try:
        without, _ = _get_flops(
            build_model_from_config(Config.fromfile(str(cfg_path))), (96, 96)
        )
    finally:
        complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS[SDPA_OP] = handle
    assert without < flops  # what get_flops reported before the counter
