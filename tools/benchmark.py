"""Measures what our configs cost: parameters, FLOPs, latency, training step, memory.

    python tools/benchmark.py CONFIG [CONFIG ...] [--out-csv F] [--out-md F]
    python tools/benchmark.py --all --out-csv benchmark.csv --out-md benchmark.md
    python tools/benchmark.py configs CONFIG ...        # the same, the mode named

Modes (the first argument; default ``configs``) live in ``pvtfpn_mm/benchmark/``:
``configs`` -- per config (see pvtfpn_mm/benchmark/configs.py): parameters, FLOPs at the
config's test size, inference latency (batch 1, median of interleaved rounds), training
step time at the config's batch per GPU, peak memory; on CUDA when present, else the CPU.
``compare`` -- ours against timm's and mmdet's models side by side.
``recipe`` -- the GPU training recipe (configs/_base_/gpu_recipe.py) and each of its
levers on/off against our fp32 config and mmdet's: training images/s, peak memory
(CUDA), the recipe's per-part profile (docs/training_recipe.md).
``python tools/benchmark.py MODE --help`` lists a mode's options.
"""

import argparse
import sys

from pvtfpn_tools.benchmark import MODES, BenchmarkError, load_mode


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in MODES and argv[0] not in ('-h', '--help'):
        argv.insert(0, 'configs')
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    modes = parser.add_subparsers(dest='mode', required=True)
    for name, help_text in MODES.items():
        load_mode(name).add_arguments(modes.add_parser(name, help=help_text))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    return load_mode(args.mode).run(args)


if __name__ == '__main__':
    try:
        main()
    except (OSError, ValueError, BenchmarkError) as error:
        sys.exit(f'benchmark.py: error: {error}')
