"""Write the small synthetic dataset (coloured shapes) in the real formats:
COCO instances (boxes + polygon masks), the ADE20K folder layout and mmseg's NYU depth
layout, under OUT/{coco,ade/ADEChallengeData2016,nyu}. Deterministic for a given seed.

    python tools/make_toy_data.py [--out data/toy] [--num-train 200] [--num-val 50]
        [--size 96] [--seed 0] [--formats coco ade nyu] [--force]

An existing dataset in OUT is replaced only with --force, and then as a whole (written to
a fresh folder first), so no image of an earlier, larger dataset stays.
"""

import argparse

from pvtfpn_tools.toy_data import FORMATS, write_toy_data


def parse_args():
    parser = argparse.ArgumentParser(
        description='Write the toy shapes dataset'
    )
    parser.add_argument('--out', default='data/toy', help='output folder')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument(
        '--size', type=int, default=96, help='image side (pixels)'
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--formats', nargs='+', choices=FORMATS, default=list(FORMATS)
    )
    parser.add_argument(
        '--force',
        action='store_true',
        help='replace the toy dataset already in --out (all of it)',
    )
    return parser.parse_args()


def main():
    args = parse_args()
    roots = write_toy_data(
        args.out,
        args.num_train,
        args.num_val,
        args.size,
        args.seed,
        args.formats,
        force=args.force,
    )
    for fmt, root in roots.items():
        print(f'{fmt}: {root}')


if __name__ == '__main__':
    main()
