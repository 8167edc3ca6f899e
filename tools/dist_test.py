"""Distributed testing over torchrun (CUDA: nccl; CPU only: gloo).

python tools/dist_test.py CONFIG CHECKPOINT NPROC [tools/test.py options ...]
"""

import argparse
import sys

from pvtfpn_tools.launch import launch


def parse_args():
    parser = argparse.ArgumentParser(
        description='Test with NPROC processes per node (torchrun)',
        usage='%(prog)s CONFIG CHECKPOINT NPROC [tools/test.py options ...]',
    )
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('nproc', type=int, help='processes (GPUs) per node')
    return parser.parse_known_args()


def main():
    args, rest = parse_args()
    sys.exit(launch('test', args.nproc, [args.config, args.checkpoint, *rest]))


if __name__ == '__main__':
    main()
