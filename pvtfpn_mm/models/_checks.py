"""The argument checks every model class of ours shares (backbones, neck, heads).

Each check runs once, in the constructor, and raises a ``TypeError`` (wrong type) or
``ValueError`` (right type, bad value) whose message names the argument and the value,
as torchvision's FPN does. What a check accepts is what mmdet / mmseg / mmpretrain /
timm accept for the argument of the same name and meaning (``tests/test_model_checks.py``
holds each against the upstream class, built and run):

* indices (``in_index``, ``out_indices``, ``start_level``) follow Python's list
  indexing: negative values count from the end; a selection may come in any order and
  repeat an entry, as mmseg's decode heads and mmdet's backbones allow;
* rates are probabilities in [0, 1], torch's range for ``nn.Dropout``;
* ``frozen_stages`` below 0 freezes nothing, as in mmdet's ResNet / Swin;
* on / off switches take ``True`` / ``False`` and the ints 0 / 1.

Where upstream accepts a value only by accident, we refuse it and say so: ``True`` /
``False`` as an index (``bool`` is an ``int`` in Python, so ``[True, 2]`` selects levels
1 and 2 there), and strings or ``None`` for a switch (``'False'`` is true).
"""

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

#: The values an on / off switch takes besides ``True`` and ``False``.
FLAG_INTS = (0, 1)


def is_int(value: Any) -> bool:
    """An integer that is not a ``bool`` (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number that is not a ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return f'{value!r} ({type(value).__name__})'


def check_flag(name: str, value: Any) -> bool:
    """An on / off switch: ``True``, ``False``, 0 or 1 (as upstream's ``if value:``
    reads them); anything else is a ``TypeError`` naming it."""
    if isinstance(value, bool):
        return value
    if is_int(value) and value in FLAG_INTS:
        return bool(value)
    raise TypeError(
        f'{name} must be True or False (or 1 / 0), got {_kind(value)}'
    )


def check_int(
    name: str,
    value: Any,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """An int in ``[minimum, maximum]`` (either bound optional)."""
    if not is_int(value):
        raise TypeError(f'{name} must be an int, got {_kind(value)}')
    if (minimum is not None and value < minimum) or (
        maximum is not None and value > maximum
    ):
        low = '-inf' if minimum is None else minimum
        high = 'inf' if maximum is None else maximum
        raise ValueError(f'{name} must be in [{low}, {high}], got {value!r}')
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """An int > 0 (channels, classes)."""
    if not is_int(value):
        raise TypeError(f'{name} must be a positive int, got {_kind(value)}')
    if value <= 0:
        raise ValueError(f'{name} must be a positive int, got {value!r}')
    return int(value)


def check_rate(name: str, value: Any) -> float:
    """A probability in [0, 1] (dropout, drop path)."""
    if not is_number(value):
        raise TypeError(
            f'{name} must be a number in [0, 1], got {_kind(value)}'
        )
    if not 0 <= value <= 1:
        raise ValueError(f'{name} must be in [0, 1], got {value!r}')
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(
            f'{name} must be one of {tuple(choices)}, got {value!r}'
        )
    return value


def check_sequence(name: str, value: Any, hint: str = '') -> list:
    """A non-empty list or tuple (any sequence but a string) as a list."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            f'{name} must be a list or tuple{hint}, got {_kind(value)}'
        )
    if len(value) == 0:
        raise ValueError(f'{name} must not be empty')
    return list(value)


def check_channels(
    name: str, value: Any, length: int | None = None
) -> list[int]:
    """A non-empty sequence of positive ints (``length`` of them when given)."""
    channels = check_sequence(name, value, ' of positive ints')
    if length is not None and len(channels) != length:
        raise ValueError(
            f'{name}={channels} has {len(channels)} entries, expected {length}'
        )
    for i, ch in enumerate(channels):
        if not is_int(ch):
            raise TypeError(
                f'{name}[{i}] must be a positive int, got {_kind(ch)} in '
                f'{name}={channels!r}'
            )
        if ch <= 0:
            raise ValueError(
                f'{name}[{i}] must be a positive int, got {ch!r} in '
                f'{name}={channels}'
            )
    return [int(ch) for ch in channels]


def check_per_stage(
    name: str, value: Any, num_stages: int | None, kind: str = 'int'
) -> tuple:
    """One positive entry per stage: ints (``kind='int'``) or numbers
    (``kind='number'``); ``num_stages`` None takes any length."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        hint = (
            ' (a single int is how mmdet\'s PyramidVisionTransformerV2 takes it: when '
            'replacing a _base_ backbone, write backbone=dict(_delete_=True, '
            'type=\'PVTv2\', ...))'
            if is_int(value)
            else ''
        )
        raise TypeError(
            f'{name} must be a sequence with one entry per stage, got '
            f'{value!r}{hint}'
        )
    if num_stages is not None and len(value) != num_stages:
        raise ValueError(
            f'{name}={tuple(value)} has {len(value)} entries, expected one per '
            f'stage: {num_stages}'
        )
    check = is_int if kind == 'int' else is_number
    for i, entry in enumerate(value):
        if not check(entry):
            raise TypeError(
                f'{name}[{i}] must be {"an int" if kind == "int" else "a number"}'
                f', got {_kind(entry)} in {name}={tuple(value)}'
            )
        if not entry > 0:
            raise ValueError(
                f'{name}[{i}] must be positive, got {entry!r} in '
                f'{name}={tuple(value)}'
            )
    return tuple(value)


def check_index(name: str, value: Any, length: int | None = None) -> int:
    """An index with Python's list semantics (negative from the end); with ``length``
    it must fall inside, and is returned as its non-negative form."""
    if not is_int(value):
        raise TypeError(
            f'{name} must be an int index, got {_kind(value)}'
            + (' (bools are not indices)' if isinstance(value, bool) else '')
        )
    if length is None:
        return int(value)
    if not -length <= value < length:
        raise ValueError(
            f'{name}={value!r} is out of range for {length} entries '
            f'(0..{length - 1}, or -{length}..-1)'
        )
    return int(value) % length


def check_indices(
    name: str, value: Any, length: int | None = None
) -> tuple[int, ...]:
    """A selection: a non-empty list / tuple of indices (:func:`check_index`), in any
    order, repeats allowed, returned as given (non-negative when ``length`` is given)."""
    indices = check_sequence(name, value, ' of int indices')
    out = []
    for i, index in enumerate(indices):
        if not is_int(index):
            raise TypeError(
                f'{name}[{i}] must be an int index, got {_kind(index)} in '
                f'{name}={indices!r}'
                + (
                    ' (bools are not indices)'
                    if isinstance(index, bool)
                    else ''
                )
            )
        out.append(check_index(f'{name}[{i}]', index, length))
    return tuple(out)


def check_frozen_stages(value: Any, num_stages: int) -> int:
    """``frozen_stages``: stages ``0 .. value`` are frozen; below 0 none (mmdet's -1)."""
    if not is_int(value):
        raise TypeError(f'frozen_stages must be an int, got {_kind(value)}')
    if value >= num_stages:
        raise ValueError(
            f'frozen_stages={value!r} is past the last of the {num_stages} stages '
            f'(0 .. {num_stages - 1}; -1 freezes nothing)'
        )
    return max(int(value), -1)


def refuse_unknown(
    owner: str,
    kwargs: Mapping[str, Any],
    foreign: Mapping[str, str | None],
    foreign_of: str,
    replace_hint: str,
) -> None:
    """Raises a ``TypeError`` naming the unexpected keyword arguments of ``owner``;
    for keywords of the class ours replaces (``foreign``: keyword -> ours, or None) it
    says to drop the ``_base_`` keys (``replace_hint``) and what we call them."""
    if not kwargs:
        return
    names = sorted(kwargs)
    known = {k: foreign[k] for k in names if k in foreign}
    message = f'{owner} got unexpected keyword arguments {names}'
    if known:
        ours = ', '.join(f'{k} -> {v}' for k, v in known.items() if v)
        message += (
            f'. {sorted(known)} are keywords of {foreign_of}: a config that replaces '
            f'a _base_ one must drop the base\'s keys with {replace_hint}'
            + (f' ({owner} names: {ours})' if ours else '')
        )
    raise TypeError(message)
