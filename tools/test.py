"""Test (and evaluate) a checkpoint with any of our configs (mmdet or mmseg).

python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR]
    [--out FILE_OR_DIR] [--tta] [--cfg-options k=v ...] [--launcher pytorch]
"""

import argparse

from pvtfpn_mm.engine.tasks import test

from pvtfpn_tools.cli import add_common_args, set_local_rank_env


def parse_args():
    parser = argparse.ArgumentParser(
        description='Test a pvtfpn_mm model (mmdet/mmseg)'
    )
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the metrics')
    parser.add_argument(
        '--out',
        help='mmdet: a .pkl file for the predictions; mmseg: a directory for '
        'the predicted label maps',
    )
    parser.add_argument(
        '--show', action='store_true', help='show the predictions'
    )
    parser.add_argument(
        '--show-dir',
        help='save pictures of the predictions next to the ground truth',
    )
    parser.add_argument(
        '--show-interval',
        type=int,
        help='mmseg: draw every n-th image (default: the config\'s, 50 in mmseg)',
    )
    parser.add_argument(
        '--wait-time', type=float, default=2, help='show interval (s)'
    )
    parser.add_argument(
        '--tta', action='store_true', help='test-time augmentation'
    )
    add_common_args(parser, 'override settings of the config, key=value')
    args = parser.parse_args()
    set_local_rank_env(args.local_rank)
    return args


def main():
    args = parse_args()
    test(
        args.config,
        args.checkpoint,
        work_dir=args.work_dir,
        show_dir=args.show_dir,
        show=args.show,
        wait_time=args.wait_time,
        show_interval=args.show_interval,
        out=args.out,
        tta=args.tta,
        cfg_options=args.cfg_options,
        launcher=args.launcher,
    )


if __name__ == '__main__':
    main()
