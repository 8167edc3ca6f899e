"""Benchmarks PVTv2 against timm's ``pvt_v2_*`` and mmdet's ``PyramidVisionTransformerV2``.

Forward latency (no grad, batch 1) of each arch at each size, the three models loaded
with the same (random, timm-style) weights and run interleaved and repeated; prints
the median latencies and our speed-up over each. Then the peak memory of a training
step (forward + backward) with and without ``with_cp``, each measured in a fresh
subprocess as the growth of its peak resident set over the model-and-input baseline.

Example::

    python tools/benchmark_backbone.py --archs b0 b2 --sizes 512x512 800x1344 --threads 2
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--archs', nargs='*', default=['b0', 'b2'])
    parser.add_argument('--sizes', nargs='+', default=['512x512', '800x1344'],
                        help='HxW input sizes')
    parser.add_argument('--repeats', type=int, default=7, help='timed rounds per size')
    parser.add_argument('--threads', type=int, default=2, help='torch.set_num_threads')
    parser.add_argument('--no-mmdet', action='store_true', help='skip mmdet')
    parser.add_argument('--memory-arch', default='b2', help='arch of the memory test')
    parser.add_argument('--memory-size', default='512x512', help='HxW of the memory test')
    parser.add_argument('--skip-memory', action='store_true')
    parser.add_argument('--memory-child', nargs=3, metavar=('ARCH', 'SIZE', 'WITH_CP'),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _size(text):
    h, w = text.lower().split('x')
    return int(h), int(w)


def build_models(arch, with_mmdet):
    """Ours (timm-style init), and timm / mmdet loaded with the same weights."""
    import timm

    from pvtfpn_mm.models.backbones.pvt_v2 import PVTv2, arch_settings
    from pvtfpn_mm.weights import from_ours, load_state_dict_strict

    ours = PVTv2(arch)
    ours.init_weights()
    models = {'ours': ours.eval()}
    state = ours.state_dict()
    timm_model = timm.create_model(f'pvt_v2_{arch}', features_only=True)
    load_state_dict_strict(timm_model, from_ours(state, 'timm_features'))
    models['timm'] = timm_model.eval()
    if with_mmdet and not arch_settings(arch)['linear']:
        from mmdet.models.backbones.pvt import PyramidVisionTransformerV2
        settings = arch_settings(arch)
        mmdet_model = PyramidVisionTransformerV2(
            embed_dims=settings['embed_dims'][0], num_layers=list(settings['depths']),
            num_heads=list(settings['num_heads']), mlp_ratios=list(settings['mlp_ratios']),
            drop_path_rate=0.)
        load_state_dict_strict(mmdet_model, from_ours(state, 'mmdet'))
        models['mmdet'] = mmdet_model.eval()
    return models


@torch.no_grad()
def time_forward(models, size, repeats):
    """Median latency (ms) per model: one warm-up each, then interleaved rounds."""
    x = torch.randn(1, 3, *size)
    outs = {name: model(x) for name, model in models.items()}  # warm-up
    diffs = {name: max(float((a - b).abs().max()) for a, b in zip(outs['ours'], out))
             for name, out in outs.items() if name != 'ours'}
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model(x)
            times[name].append(1000 * (time.perf_counter() - start))
    return times, diffs


def report(arch, size_text, times, diffs):
    """Median and best latency per model, and our speed-up: the ratio of the medians
    and the median of the per-round ratios (neighbours in time, so less disturbed by
    bursts of load from other processes)."""
    line = ', '.join(f'{name} {statistics.median(t):.1f} (best {min(t):.1f}) ms'
                     for name, t in times.items())
    print(f'{arch} {size_text}: {line}')
    for name, t in times.items():
        if name == 'ours':
            continue
        ours = times['ours']
        per_round = statistics.median(other / mine for other, mine in zip(t, ours))
        print(f'    ours vs {name}: {statistics.median(t) / statistics.median(ours):.2f}x '
              f'(median of per-round ratios {per_round:.2f}x, of best '
              f'{min(t) / min(ours):.2f}x); max |ours - {name}| = {diffs[name]:.1e}',
              flush=True)


def _status_mib(field):
    """``VmRSS`` / ``VmHWM`` (peak RSS) of this process from /proc, in MiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def memory_child(arch, size, with_cp):
    """One training step; prints the peak RSS growth over the baseline, in MiB."""
    from pvtfpn_mm.models.backbones.pvt_v2 import PVTv2
    model = PVTv2(arch, with_cp=with_cp).train()
    model.init_weights()
    x = torch.randn(1, 3, *_size(size))
    baseline = _status_mib('VmRSS')
    if _reset_peak_rss():
        measure = lambda: _status_mib('VmHWM')  # noqa: E731
    else:  # the peak since the process started (includes start-up)
        measure = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa
    loss = sum(out.mean() for out in model(x))
    loss.backward()
    peak = measure()
    print(json.dumps(dict(peak_growth_mib=peak - baseline, baseline_mib=baseline)))


def measure_memory(arch, size, threads, repeats=3):
    """Median peak growth (MiB) without and with ``with_cp``, alternating children."""
    growth = {False: [], True: []}
    for _ in range(repeats):
        for with_cp in (False, True):
            out = subprocess.run(
                [sys.executable, __file__, '--threads', str(threads), '--memory-child',
                 arch, size, str(int(with_cp))], capture_output=True, text=True, check=True)
            growth[with_cp].append(
                json.loads(out.stdout.strip().splitlines()[-1])['peak_growth_mib'])
    return {k: statistics.median(v) for k, v in growth.items()}, growth


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        arch, size, with_cp = args.memory_child
        memory_child(arch, size, bool(int(with_cp)))
        return

    print(f'torch {torch.__version__}, {args.threads} threads, batch 1, fp32, no grad, '
          f'{args.repeats} interleaved rounds; speed-up = other ms / our ms')
    for arch in args.archs:
        models = build_models(arch, with_mmdet=not args.no_mmdet)
        for size_text in args.sizes:
            times, diffs = time_forward(models, _size(size_text), args.repeats)
            report(arch, size_text, times, diffs)
        del models

    if not args.skip_memory:
        medians, runs = measure_memory(args.memory_arch, args.memory_size, args.threads)
        plain, cp = medians[False], medians[True]
        print(f'training step {args.memory_arch} {args.memory_size} batch 1, peak memory '
              f'over baseline (median of {len(runs[False])} fresh processes): {plain:.0f} '
              f'MiB without with_cp, {cp:.0f} MiB with with_cp '
              f'({100 * (1 - cp / plain):.0f}% less); runs: '
              f'{[round(v) for v in runs[False]]} vs {[round(v) for v in runs[True]]}')


if __name__ == '__main__':
    main()
