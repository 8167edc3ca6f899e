"""Converts a PVT-v2 checkpoint: a whole detector / segmentor, or a backbone.

Whole detectors and segmentors (a ``backbone.`` part with a neck or head beside it) are
detected and converted to our configs' layout: mmdet 3.x PVT-v2 RetinaNets (mmdet's
``configs/pvt``) and the official whai362/PVT RetinaNet, Mask R-CNN, Semantic FPN and 3x
Cascade Mask R-CNN / ATSS / GFL / Sparse R-CNN checkpoints. Every key is mapped or the
conversion stops listing the keys it cannot map.
The output (``{'meta', 'state_dict'}``) is tested with ``tools/test.py`` / ``mim test``
like any of our checkpoints; ``--config`` also checks that it loads into a config's model.

Backbones (``--prefix``, or a checkpoint with no neck or head) convert between the formats
of :mod:`pvtfpn_mm.weights` (timm, official, mmdet, hf: Hugging Face transformers' PvtV2,
ours; detected) into a bare state dict. SRC may be a ``.safetensors`` file (e.g. the
hub's ``model.safetensors``); a DST named ``*.safetensors`` is written as one.

The output is written atomically; an existing DST is kept unless ``--force``, and DST
may never be SRC. Examples::

    python tools/convert_weights.py retinanet_pvtv2-b0_mmdet.pth retinanet_b0_ours.pth \\
        --config configs/retinanet/retinanet_pvtv2-b0_topdownfpn_1x_coco.py
    python tools/convert_weights.py pvt_v2_b2.pth pvt_v2_b2_mmdet.pth --to mmdet
    python tools/convert_weights.py retinanet.pth backbone_timm.pth --to timm --prefix backbone.
    python tools/convert_weights.py pvt_v2_b2_linear/model.safetensors pvt_v2_b2_li.pth
    python tools/convert_weights.py pvt_v2_b0.pth hf_b0/model.safetensors --to hf
"""

import argparse
import sys

from pvtfpn_mm.weights import FORMATS, convert_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        'src', help='checkpoint file (or http(s) URL) to convert'
    )
    parser.add_argument('dst', help='output file (its folder must exist)')
    parser.add_argument(
        '--to',
        default='ours',
        choices=FORMATS,
        help="output format (default: ours; whole checkpoints: ours only)",
    )
    parser.add_argument(
        '--from',
        dest='src_format',
        choices=FORMATS,
        default=None,
        help='expected source format / layout (default: detect; a different one is an '
        'error)',
    )
    parser.add_argument(
        '--prefix',
        default=None,
        help="convert only the backbone under this key prefix, e.g. 'backbone.' "
        "(default: detect)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        '--whole',
        dest='whole',
        action='store_const',
        const=True,
        default=None,
        help='SRC is a whole detector / segmentor (default: detect)',
    )
    mode.add_argument(
        '--backbone',
        dest='whole',
        action='store_const',
        const=False,
        help='convert only the PVT-v2 backbone in SRC (default: detect)',
    )
    parser.add_argument(
        '--config',
        default=None,
        help='whole checkpoints: check that the result loads strictly into this '
        "config's model",
    )
    parser.add_argument(
        '--force', action='store_true', help='overwrite an existing DST'
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = None
    if args.config is not None:
        from pvtfpn_mm.engine.build import build_model_from_config

        model = build_model_from_config(args.config)
    src_format, count, whole = convert_file(
        args.src,
        args.dst,
        args.to,
        src=args.src_format,
        prefix=args.prefix,
        whole=args.whole,
        force=args.force,
        model=model,
    )
    what = 'a whole model' if whole else 'a backbone'
    print(
        f'{args.src} ({src_format}) -> {args.dst} ({args.to}): {count} tensors of {what}'
    )


if __name__ == '__main__':
    try:
        main()
    except (
        OSError,
        ValueError,
        RuntimeError,
    ) as error:  # named files / keys; no traceback
        sys.exit(f'convert_weights.py: error: {error}')
