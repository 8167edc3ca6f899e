"""Distributed training over torchrun (CUDA: nccl; CPU only: gloo).

    python tools/dist_train.py CONFIG NPROC [tools/train.py options ...]

Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT as for mmdet's dist_train.sh.
"""

import argparse
import sys

from pvtfpn_tools.launch import launch


def parse_args():
    parser = argparse.ArgumentParser(
        description='Train with NPROC processes per node (torchrun)',
        usage='%(prog)s CONFIG NPROC [tools/train.py options ...]',
    )
    parser.add_argument('config')
    parser.add_argument('nproc', type=int, help='processes (GPUs) per node')
    return parser.parse_known_args()


def main():
    args, rest = parse_args()
    sys.exit(launch('train', args.nproc, [args.config, *rest]))


if __name__ == '__main__':
    main()
