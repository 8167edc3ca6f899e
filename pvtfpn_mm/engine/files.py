"""The checkpoints a work dir holds: their names, listing them, ``last_checkpoint``.

Writing them atomically is :mod:`pvtfpn_mm.weights.io`'s (:func:`~pvtfpn_mm.weights.publish`,
:func:`~pvtfpn_mm.weights.write_text_atomic`).
"""

import os
import os.path as osp
import re
from collections.abc import Iterable, Sequence

#: Checkpoint file names ``CheckpointHook`` writes by default (``iter_N.pth`` /
#: ``epoch_N.pth``); group 1 is N.
CHECKPOINT_NAME = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')
#: Suffix of the temporary file a checkpoint is written to before it is renamed into place.
PARTIAL_SUFFIX = '.partial'
#: The file mmengine's ``CheckpointHook`` writes the path of the latest checkpoint to.
LAST_CHECKPOINT = 'last_checkpoint'


def read_last_checkpoint(work_dir: str) -> str | None:
    """The path ``<work_dir>/last_checkpoint`` names, or None without that file."""
    try:
        with open(osp.join(work_dir, LAST_CHECKPOINT)) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def name_pattern(filename_tmpl: str) -> 're.Pattern':
    """A regex for the file names of a ``CheckpointHook`` ``filename_tmpl`` (``'{}'``
    becomes group 1, the step)."""
    head, _, tail = filename_tmpl.partition('{}')
    return re.compile('^' + re.escape(head) + r'(\d+)' + re.escape(tail) + '$')


def list_checkpoints(
    folders: Iterable[str],
    patterns: Sequence['re.Pattern'] = (CHECKPOINT_NAME,),
) -> list[str]:
    """The checkpoint files (names matching one of ``patterns``, by default
    ``iter_N.pth`` / ``epoch_N.pth``) in ``folders``, newest first (by N, then by
    modification time). Partial files (``*.partial``) never match."""
    found: dict[str, tuple] = {}
    for folder in folders:
        if not osp.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = osp.join(folder, name)
            for pattern in patterns:
                m = pattern.match(name)
                if m and osp.isfile(path):
                    found[osp.abspath(path)] = (
                        int(m.group(1)),
                        osp.getmtime(path),
                    )
                    break
    return sorted(found, key=lambda p: found[p], reverse=True)


def list_partial_files(folders: Iterable[str]) -> list[str]:
    """Temporary files of checkpoint saves that did not finish (``*.pth.partial``)."""
    out = []
    for folder in folders:
        if osp.isdir(folder):
            out += [
                osp.join(folder, n)
                for n in sorted(os.listdir(folder))
                if n.endswith('.pth' + PARTIAL_SUFFIX)
            ]
    return out
