"""Exports a detector / segmentor config with its checkpoint to one ONNX file.

    python tools/export_onnx.py CONFIG CHECKPOINT OUT.onnx [--force] [--cfg-options k=v ...]

The graph takes the image after the config's test-time resize (``image``: 1 x 3 x H x W
float32, BGR 0-255, any H, W >= 32) and, for detectors, the resize factors
(``scale_factor``: w, h) and does the rest: normalization, padding, backbone, neck, head,
box decoding, score threshold, NMS (ONNX NonMaxSuppression) and the limit on detections,
as the config's ``test_cfg`` says. Outputs: RetinaNet ``boxes, scores, labels``; Mask
R-CNN also ``mask_probs`` (28 x 28 per detection, pasted by the helper); segmentors
``seg_logits, labels``. Run it with ``pvtfpn_mm.deploy.OnnxModel`` (onnxruntime).
Needs the deploy extra: ``pip install -r requirements/deploy.txt -c requirements/constraints.txt``.
"""

import argparse
import sys

from pvtfpn_mm.deploy import export_onnx


def parse_args(argv=None):
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file (mmdet or mmseg)')
    parser.add_argument(
        'checkpoint', help='checkpoint file (any layout convert_weights reads)'
    )
    parser.add_argument(
        'out', help='the .onnx file to write (its folder must exist)'
    )
    parser.add_argument('--force', action='store_true', help='overwrite OUT')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value',
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = export_onnx(
        args.config,
        args.checkpoint,
        args.out,
        force=args.force,
        cfg_options=args.cfg_options,
    )
    print(f'{args.config} + {args.checkpoint} -> {out}')
    return out


if __name__ == '__main__':
    try:
        main()
    except (OSError, ValueError, RuntimeError, NotImplementedError) as error:
        sys.exit(f'export_onnx.py: error: {error}')
