"""Command-line pieces the scripts share (mmdet's / mmseg's tools take the same)."""

import os


def set_local_rank_env(local_rank: int) -> None:
    """As mmdet's / mmseg's tools: ``--local-rank`` (torch.distributed.launch) wins
    only where ``LOCAL_RANK`` (torchrun) is not set."""
    os.environ.setdefault('LOCAL_RANK', str(local_rank))


def add_common_args(parser, cfg_options_help: str) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local-rank``, as mmdet's / mmseg's tools."""
    from mmengine.config import DictAction

    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help=cfg_options_help
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
