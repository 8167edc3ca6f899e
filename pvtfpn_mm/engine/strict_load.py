"""Strict loading of whole checkpoints by any mmengine ``Runner`` (docs/tools.md, "Strict
loading"): :class:`StrictLoadHook` checks, in ``after_load_checkpoint`` (before the runner
copies the weights), that the state dict fits the model, after converting a released
checkpoint of a foreign layout (:func:`pvtfpn_mm.weights.convert_to_model_layout`).
"""

import re
from collections import OrderedDict
from collections.abc import Sequence

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS

from pvtfpn_mm.weights import (
    StateDictMismatchError,
    check_tensors,
    convert_to_model_layout,
    state_dict_mismatches,
)

#: How to allow a partial load, as the error message says it.
PARTIAL_HINT = (
    'To load only the tensors that fit (and see which), pass '
    '--cfg-options allow_partial_load=True'
)
#: The config key that allows partial loading for every StrictLoadHook of a run.
PARTIAL_KEY = 'allow_partial_load'


def unwrap_model(model):
    """The model inside DDP-like wrappers and test-time-augmentation models."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


@HOOKS.register_module()
class StrictLoadHook(Hook):
    """Refuses a checkpoint that does not fit the model (see the module doc).

    Args:
        allow_partial (bool): Load what fits instead of refusing, and log what was
            loaded and what was not (count and first keys of each kind). The config
            key ``allow_partial_load=True`` (e.g. ``--cfg-options``) does the same for
            the whole run. Defaults to False.
        revise_keys (Sequence[tuple[str, str]]): The ``revise_keys`` of
            ``Runner.load_checkpoint`` (regex, replacement), applied before the check.
            Defaults to mmengine's ``[(r'^module\\.', '')]``.
    """

    priority = 'LOWEST'  # check the state dict other hooks (EMA) have settled

    def __init__(
        self,
        allow_partial: bool = False,
        revise_keys: Sequence[tuple[str, str]] = ((r'^module\.', ''),),
    ):
        if not isinstance(allow_partial, bool):
            raise TypeError(
                f'allow_partial must be a bool, got {allow_partial!r}'
            )
        self.allow_partial = allow_partial
        self.revise_keys = [tuple(r) for r in revise_keys]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = unwrap_model(runner.model)
        # the file SafeRunner.load_checkpoint is reading, else the config's load_from
        filename = getattr(runner, '_pvtfpn_loading', None) or getattr(
            runner, '_load_from', None
        )
        source = f'checkpoint {filename!r}' if filename else 'checkpoint'
        holder = checkpoint if 'state_dict' in checkpoint else None
        state_dict = (
            checkpoint['state_dict'] if holder is not None else checkpoint
        )
        check_tensors(state_dict, source)
        metadata = getattr(state_dict, '_metadata', None)
        revised = OrderedDict(state_dict)
        for pattern, replacement in self.revise_keys:
            revised = OrderedDict(
                (re.sub(pattern, replacement, k), v)
                for k, v in revised.items()
            )
        converted, layout = convert_to_model_layout(revised, model)
        if layout is not None:
            runner.logger.info(
                f'{source}: converted on the fly from the {layout!r} '
                'layout to this model\'s (pvtfpn_mm.weights)'
            )
        missing, unexpected, mismatched = state_dict_mismatches(
            model, converted
        )
        if missing or unexpected or mismatched:
            allow = (runner.cfg or {}).get(PARTIAL_KEY, False)
            if not isinstance(allow, bool):
                raise TypeError(
                    f'{PARTIAL_KEY} must be True or False, got {allow!r}'
                )
            if not (self.allow_partial or allow):
                raise StateDictMismatchError(
                    missing,
                    unexpected,
                    mismatched,
                    source=source,
                    hint=PARTIAL_HINT,
                )
            expected = model.state_dict()
            fitting = OrderedDict(
                (k, v)
                for k, v in converted.items()
                if k in expected and tuple(v.shape) == tuple(expected[k].shape)
            )
            error = StateDictMismatchError(
                missing, unexpected, mismatched, source=source
            )
            runner.logger.warning(
                f'partial load (allowed): loading {len(fitting)} of the '
                f'model\'s {len(expected)} tensors; ' + str(error)
            )
            converted = fitting
        elif layout is None:
            return  # fits as it is: the runner loads it unchanged
        if metadata is not None:
            converted._metadata = metadata  # type: ignore[attr-defined]  # as torch does
        if holder is not None:
            holder['state_dict'] = converted
        else:
            checkpoint.clear()
            checkpoint.update(converted)
