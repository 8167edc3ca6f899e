"""Checkpoint files in and out: safe reading, the safe-load allowlist, atomic writing.

:func:`read_checkpoint` is the one reader of every checkpoint file: always
``torch.load(..., weights_only=True)``, or safetensors for ``.safetensors`` files (by
name or by content: Hugging Face's ``model.safetensors``); an error names the file and
says what is wrong with it, and never suggests switching safe loading off.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, which torch >= 2.6 makes
True: :func:`allow_mmengine_checkpoints` (called by ``import pvtfpn_mm``) adds exactly the
globals its checkpoints hold to torch's allowlist -- a ``getattr`` only for
``HistoryBuffer``'s statistics methods -- and does nothing on torch < 2.5
(DEVELOPERS.md, "Install facts", says why).

:func:`atomic_write` is the one writer (a temporary file in the target's folder, fsync,
rename, fsync the folder), behind :func:`save_atomic` and :func:`write_text_atomic`;
:func:`publish` does its last steps for a file mmengine wrote.
"""

import inspect
import os
import os.path as osp
import pickle
import re
import tempfile
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from pvtfpn_mm.compat import HAS_SAFE_GLOBALS

#: The containers a checkpoint may hold its state dict in, tried in order.
STATE_DICT_KEYS = ('state_dict', 'model')


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read: empty, truncated, not a PyTorch file, or
    holding objects that safe loading (``weights_only=True``) does not allow."""


# ---------------------------------------------------------------------------- reading

_ZIP_MAGIC = b'PK\x03\x04'
#: What ``torch.load`` raises on a damaged or foreign file.
READ_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    KeyError,
    ValueError,
    IndexError,
    TypeError,
    AttributeError,
    UnicodeDecodeError,
    # a file cut short inside a zip entry: "[Errno 22] Invalid argument" from the
    # zip reader's seek (missing files and folders are refused before torch.load)
    OSError,
)


def checkpoint_read_error(
    path: str, err: BaseException
) -> CheckpointReadError:
    """A :class:`CheckpointReadError` naming ``path`` and saying what is wrong with it,
    in place of torch's message (which may suggest switching safe loading off)."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(512)
    text = str(err)
    where = f'checkpoint file {path!r} ({size} bytes)'
    # torch >= 2.4 names the global ("GLOBAL x.y ..."), older torch an "Unsupported class"
    found = re.search(r'GLOBAL ([\w.]+)', text) or re.search(
        r'Unsupported class ([\w.]+)', text
    )
    unpickler = re.search(r'WeightsUnpickler error: \s*(.+)', text)
    detail = (
        unpickler.group(1).strip()
        if unpickler
        else (text.splitlines()[0] if text else type(err).__name__)
    )
    detail = detail.split('. ')[0][:200]
    # never pass on a hint to switch safe loading off
    if 'weights_only' in detail:
        detail = type(err).__name__
    if found or 'Unsupported global' in text:
        what = f' ({found.group(1)})' if found else ''
        return CheckpointReadError(
            f'{where} holds Python objects{what} that safe loading does not allow: '
            'pvtfpn_mm reads checkpoints with weights_only=True, which allows tensors, '
            'containers, numbers and strings plus what mmengine checkpoints need. Save '
            'the weights as a plain state dict of tensors (torch.save(model.state_dict(), '
            'path)) where the file was made'
        )
    if head.startswith(_ZIP_MAGIC):
        return CheckpointReadError(
            f'{where} is a damaged or truncated PyTorch zip file (an interrupted save or '
            f'download?): {detail}'
        )
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return CheckpointReadError(
            f'{where} is a text file, not a PyTorch checkpoint; it starts with '
            f'{head[:60].decode("ascii", "replace")!r}'
        )
    return CheckpointReadError(
        f'{where} is not a PyTorch checkpoint: neither a torch.save zip file nor a pickle '
        f'of tensors (reading it stopped at: {detail})'
    )


_SAFETENSORS_SUFFIX = '.safetensors'
#: The largest safetensors header (its JSON) the safetensors library reads.
_SAFETENSORS_MAX_HEADER = 100_000_000


def is_safetensors_file(path: str) -> bool:
    """Whether ``path`` is a safetensors file: named ``*.safetensors`` (an ``http(s)``
    URL too, its query aside), or a local file starting as one does (an 8-byte
    little-endian header length that fits the file, then ``{``)."""
    name = str(path)
    if name.startswith(('http://', 'https://')):
        return name.split('?')[0].endswith(_SAFETENSORS_SUFFIX)
    if name.endswith(_SAFETENSORS_SUFFIX):
        return True
    try:
        size = os.path.getsize(path)
        with open(path, 'rb') as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b'{':
        return False
    length = int.from_bytes(head[:8], 'little')
    return 2 <= length <= min(size - 8, _SAFETENSORS_MAX_HEADER)


def _read_safetensors(
    path: str, map_location: str | torch.device | Callable | None
) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file's state dict; errors name the file. A ``map_location``
    that is not a device (a callable or dict) reads to the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    device: str | int = (
        str(map_location)
        if isinstance(map_location, (str, torch.device))
        else 'cpu'
    )
    try:
        return load_file(path, device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        size = os.path.getsize(path)
        detail = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointReadError(
            f'checkpoint file {path!r} ({size} bytes) is a damaged or truncated '
            f'safetensors file (an interrupted save or download?): {detail}'
        ) from None


def _download_cached(url: str) -> str:
    """The local copy of ``url`` in torch.hub's checkpoint folder (where
    ``torch.hub.load_state_dict_from_url`` keeps its files), downloaded if missing. The
    name starts with a hash of the URL: the hub's files are all ``model.safetensors``."""
    import hashlib
    from urllib.parse import urlparse

    folder = os.path.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    cached = os.path.join(
        folder, f'{digest}-{os.path.basename(urlparse(url).path)}'
    )
    if not os.path.exists(cached):
        torch.hub.download_url_to_file(url, cached, progress=True)
    return cached


def read_checkpoint(
    path: str, map_location: str | torch.device | Callable | None = 'cpu'
) -> Any:
    """Reads a checkpoint file or ``http(s)://`` URL with safe loading (``weights_only``).

    ``~`` is expanded. A safetensors file (:func:`is_safetensors_file`; an URL ending in
    ``.safetensors``) is read by safetensors as the state dict it holds. Errors name the
    file and say what is wrong with it; none suggests switching safe loading off.

    Args:
        path (str): A file path or an ``http(s)://`` URL.
        map_location: As :func:`torch.load`. Defaults to ``'cpu'``.

    Returns:
        The loaded object (usually a dict).

    Raises:
        FileNotFoundError: ``path`` is not a URL and no such file exists.
        IsADirectoryError: ``path`` is a folder.
        CheckpointReadError: The file is empty, truncated, not a PyTorch file, or holds
            objects that safe loading refuses.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f'checkpoint must be a file path or URL, got {path!r} '
            f'({type(path).__name__})'
        )
    path = os.fspath(path)
    if path.startswith(('http://', 'https://')):
        if is_safetensors_file(path):
            return _read_safetensors(_download_cached(path), map_location)
        return torch.hub.load_state_dict_from_url(
            path, map_location=map_location, weights_only=True
        )
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f'checkpoint {path!r} is a folder, not a file')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint file {path!r} does not exist')
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(
            f'checkpoint file {path!r} is empty (0 bytes): an interrupted save or download?'
        )
    if is_safetensors_file(path):
        return _read_safetensors(path, map_location)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except READ_ERRORS as err:
        raise checkpoint_read_error(path, err) from None


def unwrap_state_dict(checkpoint: Mapping) -> Mapping:
    """The state dict inside a checkpoint: its ``'state_dict'`` or ``'model'`` entry
    (:data:`STATE_DICT_KEYS`), else the checkpoint itself."""
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict file read as timm's ``load_state_dict`` reads it, always safely.

    Read by :func:`read_checkpoint` (``.safetensors`` too); a ``state_dict`` / ``model``
    entry is unwrapped and a ``module.`` prefix dropped.
    """
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, Mapping):
        raise CheckpointReadError(
            f'checkpoint file {path!r} holds a {type(checkpoint).__name__}, not a '
            'state dict'
        )
    return {
        (k[7:] if k.startswith('module.') else k): v
        for k, v in unwrap_state_dict(checkpoint).items()
    }


def timm_load_state_dict(path: str) -> dict[str, torch.Tensor]:
    """timm's ``load_state_dict(path, use_ema=False)`` with safe loading on every timm.

    Where timm's takes ``weights_only`` (timm >= 1.0), it gets True; timm 0.9's has no
    such argument (and loads unsafely on torch < 2.6), so there the file is read by
    :func:`read_state_dict`, as are ``.safetensors`` files (whose errors then name the
    file).
    """
    from timm.models import load_state_dict

    if is_safetensors_file(path):
        return read_state_dict(path)
    if 'weights_only' in inspect.signature(load_state_dict).parameters:
        return load_state_dict(path, use_ema=False, weights_only=True)
    return read_state_dict(path)


# ------------------------------------------------------------ the safe-load allowlist

_NUMERIC_DTYPES = (
    'bool',
    'int8',
    'int16',
    'int32',
    'int64',
    'uint8',
    'uint16',
    'uint32',
    'uint64',
    'float16',
    'float32',
    'float64',
)

# HistoryBuffer registers these lazily in its class-level ``_statistics_methods``.
_DEFAULT_STATISTICS = frozenset(('min', 'max', 'current', 'mean'))


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as HistoryBuffer's pickles use it, and for nothing else."""
    allowed = _DEFAULT_STATISTICS.union(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint: pvtfpn_mm only '
        f'allows getattr(HistoryBuffer, <statistics method>)'
    )


def _safe_globals() -> list:
    import importlib

    try:  # numpy >= 2; checkpoints of numpy 1 name numpy.core
        multiarray = importlib.import_module('numpy._core.multiarray')
    except ImportError:  # numpy 1.x
        multiarray = importlib.import_module('numpy.core.multiarray')
    entries: list = [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
    ]
    for prefix in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries += [
            (multiarray._reconstruct, f'{prefix}._reconstruct'),
            (multiarray.scalar, f'{prefix}.scalar'),
        ]
    for name in _NUMERIC_DTYPES:
        cls = type(np.dtype(name))
        entries.append((cls, f'numpy.dtypes.{cls.__name__}'))
    return entries


_done = False


def allow_mmengine_checkpoints() -> None:
    """Allowlists the globals mmengine's checkpoints need for ``weights_only=True``."""
    global _done
    if not _done and HAS_SAFE_GLOBALS:
        torch.serialization.add_safe_globals(_safe_globals())
        _done = True


# ---------------------------------------------------------------------------- writing


def fsync_path(path: str) -> None:
    """Flushes a file's data, or a folder's entries (renames, removals), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp_path: str, path: str) -> None:
    """fsyncs ``tmp_path``, renames it to ``path`` (atomically replacing any file there)
    and fsyncs the folder: afterwards ``path`` is the complete new file, durably."""
    fsync_path(tmp_path)
    os.replace(tmp_path, path)
    fsync_path(osp.dirname(osp.abspath(path)))


def atomic_write(
    path: str, write: Callable[[IO], Any], binary: bool = True
) -> None:
    """Writes ``path`` through ``write(file)`` on a temporary file in its folder, then
    fsync, rename over ``path`` and fsync the folder: ``path`` is the old file or the
    complete new one, never a part. The file gets the mode a plain ``open()`` gives
    (0666 minus the umask). On any error the temporary file is removed.

    Args:
        path (str): The file to write (its folder must exist).
        write (Callable[[IO], Any]): Writes the content to the open file it is given.
        binary (bool): Open the temporary file in binary mode. Defaults to True.
    """
    folder = osp.dirname(osp.abspath(path))
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp'
    )
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as a plain open() would create it
        with os.fdopen(fd, 'wb' if binary else 'w') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    fsync_path(folder)


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text), binary=False)


def check_output(path: str, force: bool, source: str | None = None) -> None:
    """Refuses to write ``path`` where its folder is missing, where it is a folder, where
    it is the input file ``source`` (by any path), or where it exists and ``force`` is
    False; each error names the path and what to do."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f'the folder {folder!r} of the output file {path!r} does not exist; '
            f'create it first'
        )
    if os.path.isdir(path):
        raise IsADirectoryError(
            f'the output {path!r} is a folder; give a file name'
        )
    if (
        source is not None
        and os.path.exists(path)
        and os.path.exists(source)
        and os.path.samefile(path, source)
    ):
        raise ValueError(
            f'the output {path!r} is the input file {source!r}; write to another file'
        )
    if os.path.lexists(path) and not force:
        raise FileExistsError(
            f'the output file {path!r} exists; pass --force (force=True) '
            f'to overwrite it'
        )


def save_atomic(
    obj: Any, path: str, force: bool = False, source: str | None = None
) -> str:
    """``torch.save(obj, path)``: written to a temporary file in ``path``'s folder,
    fsynced and renamed into place, so ``path`` is never left half-written.

    Args:
        obj: What to save; to a ``.safetensors`` path, a flat dict of tensors, written
            by safetensors.
        path (str): The file to write (``~`` expanded).
        force (bool): Overwrite an existing file. Defaults to False.
        source (str, optional): The file ``obj`` was read from; writing onto it (the
            same file by any path, symlinks included) is refused even with ``force``.

    Returns:
        str: The path written (``~`` expanded).

    Raises:
        FileNotFoundError: ``path``'s folder does not exist.
        IsADirectoryError: ``path`` is a folder.
        FileExistsError: ``path`` exists and ``force`` is False.
        ValueError: ``path`` is ``source``, or a ``.safetensors`` path for what is not a
            flat dict of tensors.
    """
    path = os.path.expanduser(path)
    check_output(path, force, source)
    if path.endswith(_SAFETENSORS_SUFFIX):
        data = _safetensors_bytes(obj, path)
        atomic_write(path, lambda f: f.write(data))
    else:
        atomic_write(path, lambda f: torch.save(obj, f))
    return path


def _safetensors_bytes(obj: Any, path: str) -> bytes:
    """``obj`` (a flat dict of tensors) as the bytes of a safetensors file; anything
    else is a ValueError naming ``path``."""
    from safetensors.torch import save

    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor)
        for k, v in obj.items()
    ):
        raise ValueError(
            f'{path!r}: a .safetensors file holds a flat dict of tensors (a state dict); '
            f'this is a {type(obj).__name__} with other entries: write it as a .pth file'
        )
    # safetensors refuses tensors that share memory (views of one tensor)
    return save({k: v.detach().contiguous().clone() for k, v in obj.items()})
