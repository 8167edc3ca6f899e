"""Train a model with any of our configs (mmdet or mmseg, read from the config).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher pytorch]

``--resume`` alone resumes from the newest complete checkpoint of the work dir; for several
processes use ``python tools/dist_train.py CONFIG NPROC ...``.
"""

import argparse

from pvtfpn_mm.engine.tasks import train

from pvtfpn_tools.cli import add_common_args, set_local_rank_env


def parse_args():
    parser = argparse.ArgumentParser(
        description='Train a pvtfpn_mm model (mmdet/mmseg)'
    )
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint; without a path, from the newest complete '
        'checkpoint in the work dir (whatever last_checkpoint says). Without --resume, a '
        'work dir that holds checkpoints is refused (--cfg-options '
        'allow_existing_checkpoints=True starts over there anyway)',
    )
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision training (on a machine without GPU: bfloat16 autocast on the CPU)',
    )
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by total batch size / auto_scale_lr.base_batch_size',
    )
    add_common_args(
        parser,
        'override settings of the config, key=value (e.g. train_cfg.max_iters=10)',
    )
    args = parser.parse_args()
    set_local_rank_env(args.local_rank)
    return args


def main():
    args = parse_args()
    train(
        args.config,
        work_dir=args.work_dir,
        resume=args.resume,
        amp=args.amp,
        auto_scale_lr=args.auto_scale_lr,
        cfg_options=args.cfg_options,
        launcher=args.launcher,
    )


if __name__ == '__main__':
    main()
