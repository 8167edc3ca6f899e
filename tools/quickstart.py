"""The quickstart: toy data, then a PVT-v2-b0 detector (RetinaNet) and segmentor
(Semantic FPN) trained from scratch on CPU, evaluated (COCO bbox mAP, mIoU), with
pictures of their predictions next to the ground truth.

    python tools/quickstart.py [--out work_dirs/quickstart] [--data data/toy]
        [--only det|seg] [--det-iters N] [--seg-iters N] [--threads 1]

(./quickstart.sh sets up the environment first, then runs this.)
"""

import argparse

from pvtfpn_tools.quickstart import main as quickstart


def parse_args():
    parser = argparse.ArgumentParser(description='pvtfpn_mm quickstart (CPU)')
    parser.add_argument(
        '--out', default='work_dirs/quickstart', help='output folder'
    )
    parser.add_argument(
        '--data',
        default='data/toy',
        help='toy dataset folder (written if missing)',
    )
    parser.add_argument(
        '--only', choices=['det', 'seg'], help='run one of the two models'
    )
    parser.add_argument(
        '--det-iters', type=int, help='detector iterations (config: 800)'
    )
    parser.add_argument(
        '--seg-iters', type=int, help='segmentor iterations (config: 400)'
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (default 1: robust when other processes share the cores; '
        '2 is about 25%% faster on an idle 2-core machine)',
    )
    return parser.parse_args()


def main():
    args = parse_args()
    quickstart(
        out_dir=args.out,
        data_root=args.data,
        tasks=(args.only,) if args.only else ('det', 'seg'),
        det_iters=args.det_iters,
        seg_iters=args.seg_iters,
        threads=args.threads,
    )


if __name__ == '__main__':
    main()
