"""Converts a PVT-v2 checkpoint between the formats of :mod:`pvtfpn_mm.weights`.

The source format is detected (a bare state dict, or one under ``state_dict`` /
``model``; a ``backbone.`` or ``module.`` key prefix is found by itself). The output is
a bare state dict.

Example::

    python tools/convert_weights.py pvt_v2_b2.pth pvt_v2_b2_mmdet.pth --to mmdet
"""
import argparse

from pvtfpn_mm.weights import FORMATS, convert_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='checkpoint file (or http(s) URL) to convert')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--to', required=True, choices=FORMATS, help='output format')
    parser.add_argument(
        '--from', dest='src_format', choices=FORMATS, default=None,
        help='expected source format (default: detect; a different one is an error)')
    parser.add_argument(
        '--prefix', default=None,
        help="take only the keys with this prefix, e.g. 'backbone.' (default: detect)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    src_format, count = convert_file(
        args.src, args.dst, args.to, src=args.src_format, prefix=args.prefix)
    print(f'{args.src} ({src_format}) -> {args.dst} ({args.to}): {count} tensors')


if __name__ == '__main__':
    main()
