"""The GPU training recipe: speed levers a config switches on with one key, ``gpu_recipe``
(``configs/_base_/gpu_recipe.py``; the levers, their defaults, where each applies and what
was measured: docs/training_recipe.md). :class:`~pvtfpn_mm.engine.SafeRunner` applies it:
the config-level levers in :func:`apply_gpu_recipe`, ``fused_optimizer`` and AMP's dtype
when it builds the optimizer wrapper (:func:`optim_wrapper_for_device`), ``compile`` in
``SafeRunner._maybe_compile``. A lever the ``gpu_recipe`` dict leaves out is off.
"""

import copy
import inspect
from collections.abc import Iterable, Mapping

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS

from .amp import AMP_DTYPES, AMP_WRAPPER_TYPES, resolve_amp_config
from .strict_load import unwrap_model

#: The config key of the recipe.
RECIPE_KEY = 'gpu_recipe'
#: Each lever and its value when ``gpu_recipe`` leaves it out (off).
LEVERS: dict[str, object] = dict(
    amp=False,
    fused_optimizer=False,
    channels_last=False,
    cudnn_benchmark=False,
    compile=False,
    with_cp=False,
)
#: ``optim_wrapper.type`` values the ``amp`` lever may turn into ``AmpOptimWrapper``
#: (the CPU one is what ``tools/train.py --amp`` sets without a GPU).
PLAIN_WRAPPER_TYPES = (
    None,
    'OptimWrapper',
    'mmengine.OptimWrapper',
    'CPUAmpOptimWrapper',
)
#: Optimizers ``fused_optimizer`` applies to (torch has fused kernels for them from 2.0).
FUSABLE_OPTIMIZERS = ('Adam', 'AdamW', 'torch.optim.Adam', 'torch.optim.AdamW')
#: The parts of a detector / segmentor :class:`ChannelsLastHook` converts by default.
CHANNELS_LAST_PARTS = (
    'neck',
    'bbox_head',
    'rpn_head',
    'roi_head',
    'decode_head',
    'auxiliary_head',
)


def recipe_of(cfg: Mapping) -> dict | None:
    """The checked levers of ``cfg``'s ``gpu_recipe`` (left-out levers off), or None when
    the config has none.

    Raises:
        TypeError: ``gpu_recipe`` is not a dict.
        ValueError: An unknown lever, or a lever's value of the wrong kind (named).
    """
    recipe = cfg.get(RECIPE_KEY)
    if recipe is None:
        return None
    if not isinstance(recipe, Mapping):
        raise TypeError(
            f'{RECIPE_KEY} must be a dict of levers, got {recipe!r}'
        )
    unknown = sorted(set(recipe) - set(LEVERS))
    if unknown:
        raise ValueError(
            f'{RECIPE_KEY}: unknown lever(s) {unknown}; the levers are {list(LEVERS)}'
        )
    out = {**LEVERS, **recipe}
    if out['amp'] not in (False, None) + AMP_DTYPES:
        raise ValueError(
            f"{RECIPE_KEY}.amp must be False, 'auto', 'bfloat16' or 'float16', "
            f'got {out["amp"]!r}'
        )
    for name in (
        'fused_optimizer',
        'channels_last',
        'cudnn_benchmark',
        'with_cp',
    ):
        if not isinstance(out[name], bool):
            raise ValueError(
                f'{RECIPE_KEY}.{name} must be True or False, got {out[name]!r}'
            )
    if not isinstance(out['compile'], bool | Mapping):
        raise ValueError(
            f'{RECIPE_KEY}.compile must be True, False or a dict of torch.compile '
            f'arguments, got {out["compile"]!r}'
        )
    out['amp'] = out['amp'] or False
    return out


def _backbone_takes_with_cp(cfg: Mapping) -> bool:
    """Whether the class of ``cfg.model.backbone`` has a ``with_cp`` argument."""
    from mmengine.registry import MODELS

    kind = cfg['model']['backbone'].get('type')
    if isinstance(kind, type):
        cls = kind
    else:
        scope = cfg.get('default_scope') or 'mmengine'
        with MODELS.switch_scope_and_registry(scope) as registry:
            cls = registry.get(kind)
    if cls is None:
        raise ValueError(
            f'{RECIPE_KEY}.with_cp: the backbone type {kind!r} is not registered '
            '(custom_imports missing?); cannot tell whether it takes with_cp'
        )
    return 'with_cp' in inspect.signature(cls).parameters


def apply_gpu_recipe(cfg):
    """``cfg`` (a ``Config`` or dict) with the config-level part of its ``gpu_recipe``
    applied, and the lines to log; ``(cfg, [])`` unchanged when it has none.

    The levers ``amp``, ``cudnn_benchmark``, ``with_cp`` and ``channels_last`` (its hook,
    under ``amp``). Applying it twice changes nothing more (a config dumped by a recipe
    run can be trained again).

    Raises:
        ValueError: A bad lever (:func:`recipe_of`); ``amp`` where ``optim_wrapper`` is
            of another type or names another ``dtype``; ``with_cp`` with a backbone that
            has no such argument; ``compile`` in both ``gpu_recipe`` and the config's
            own ``compile`` key.
    """
    recipe = recipe_of(cfg)
    if recipe is None:
        return cfg, []
    cfg = copy.deepcopy(cfg)
    notes = []
    if recipe['amp']:
        wrapper = cfg.get('optim_wrapper')
        if not isinstance(wrapper, Mapping):
            raise ValueError(
                f'{RECIPE_KEY}.amp: the config has no optim_wrapper dict to make an '
                f'AmpOptimWrapper of (got {wrapper!r})'
            )
        kind = wrapper.get('type')
        if kind not in PLAIN_WRAPPER_TYPES + AMP_WRAPPER_TYPES:
            raise ValueError(
                f'{RECIPE_KEY}.amp={recipe["amp"]!r}: optim_wrapper.type is {kind!r}; '
                "the recipe makes an AmpOptimWrapper of an OptimWrapper only (set "
                f'{RECIPE_KEY}.amp=False to keep {kind})'
            )
        dtype = wrapper.get('dtype')
        if dtype not in (None, recipe['amp']):
            raise ValueError(
                f'{RECIPE_KEY}.amp={recipe["amp"]!r} but optim_wrapper.dtype={dtype!r}; '
                'set the dtype in one place'
            )
        wrapper['type'] = 'AmpOptimWrapper'
        wrapper['dtype'] = recipe['amp']
        notes.append(
            f'{RECIPE_KEY}: amp={recipe["amp"]!r} (AmpOptimWrapper; on the CPU bfloat16 '
            'autocast)'
        )
    if recipe['cudnn_benchmark']:
        cfg['env_cfg'] = dict(cfg.get('env_cfg') or {}, cudnn_benchmark=True)
        notes.append(f'{RECIPE_KEY}: cudnn_benchmark=True')
    if recipe['with_cp']:
        if not _backbone_takes_with_cp(cfg):
            kind = cfg['model']['backbone']['type']
            raise ValueError(
                f'{RECIPE_KEY}.with_cp=True: the backbone {kind!r} has no with_cp '
                'argument (gradient checkpointing); set with_cp=False'
            )
        cfg['model']['backbone']['with_cp'] = True
        notes.append(
            f'{RECIPE_KEY}: with_cp=True (backbone gradient checkpointing)'
        )
    if recipe['channels_last']:
        if recipe['amp']:
            hooks = list(cfg.get('custom_hooks') or [])
            if not any(
                isinstance(h, Mapping) and h.get('type') == 'ChannelsLastHook'
                for h in hooks
            ):
                hooks.append(dict(type='ChannelsLastHook'))
            cfg['custom_hooks'] = hooks
        else:
            notes.append(
                f'{RECIPE_KEY}: channels_last applies under AMP only (amp=False): off'
            )
    if recipe['compile'] is not False and cfg.get('compile') not in (
        None,
        False,
    ):
        raise ValueError(
            f'{RECIPE_KEY}.compile={recipe["compile"]!r} and compile='
            f'{cfg.get("compile")!r}: set torch.compile in one place'
        )
    return cfg, notes


def compile_arguments(recipe: Mapping) -> dict | None:
    """The ``torch.compile`` arguments of the ``compile`` lever (``dynamic=True`` unless
    given), or None when it is off."""
    value = recipe['compile']
    if value is False:
        return None
    return {'dynamic': True, **(value if isinstance(value, Mapping) else {})}


# ------------------------------------------------------------------- optimizer


def fused_supported_devices() -> tuple[str, ...]:
    """The device types torch's fused Adam / AdamW kernels run on here (torch 2.1:
    CUDA; torch >= 2.4 also the CPU)."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return tuple(_get_fused_kernels_supported_devices())


def fused_optimizer_config(
    optimizer, device: torch.device | str
) -> tuple[object, str]:
    """``optimizer`` (an optimizer config dict) with ``fused=True`` when it is Adam /
    AdamW, names neither ``fused`` nor ``foreach``, and torch has fused kernels for
    ``device``; else unchanged. Also returns a line for the log."""
    device_type = torch.device(device).type
    if not isinstance(optimizer, Mapping):
        return optimizer, (
            f'{RECIPE_KEY}: fused_optimizer: the optimizer is not a config dict; '
            'left as it is'
        )
    kind = optimizer.get('type')
    if kind not in FUSABLE_OPTIMIZERS:
        return optimizer, (
            f'{RECIPE_KEY}: fused_optimizer: {kind!r} is not Adam / AdamW; left as it is'
        )
    if 'fused' in optimizer or 'foreach' in optimizer:
        return optimizer, (
            f'{RECIPE_KEY}: fused_optimizer: the config sets fused/foreach itself; '
            'left as it is'
        )
    supported = fused_supported_devices()
    if device_type not in supported:
        return optimizer, (
            f'{RECIPE_KEY}: fused_optimizer: torch {torch.__version__} has no fused '
            f"{kind} for '{device_type}' (only {list(supported)}); torch's default "
            'implementation'
        )
    out = dict(copy.copy(optimizer), fused=True)
    out = type(optimizer)(out) if isinstance(optimizer, dict) else out
    return (
        out,
        f"{RECIPE_KEY}: fused_optimizer: {kind}(fused=True) on '{device_type}'",
    )


def optim_wrapper_for_device(
    optim_wrapper, recipe: Mapping | None, device: torch.device
) -> tuple[object, list[str]]:
    """The optimizer wrapper config :class:`~pvtfpn_mm.engine.SafeRunner` builds for a
    model on ``device``: an ``AmpOptimWrapper`` config resolved for this machine
    (:func:`~pvtfpn_mm.engine.amp.resolve_amp_config`) and, with the lever
    ``fused_optimizer``, :func:`fused_optimizer_config`; and the lines to log."""
    notes = []
    resolved = resolve_amp_config(optim_wrapper)
    if resolved is not None:
        optim_wrapper, note = resolved
        notes.append(note)
    if (
        recipe is not None
        and recipe['fused_optimizer']
        and isinstance(optim_wrapper, dict)
        and 'optimizer' in optim_wrapper
    ):
        optimizer, note = fused_optimizer_config(
            optim_wrapper['optimizer'], device
        )
        optim_wrapper = copy.copy(optim_wrapper)
        optim_wrapper['optimizer'] = optimizer
        notes.append(note)
    return optim_wrapper, notes


# ------------------------------------------------------------ where levers apply


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s (first) parameter; the CPU for a model without any."""
    param = next(unwrap_model(model).parameters(), None)
    return param.device if param is not None else torch.device('cpu')


def channels_last_applies(recipe: Mapping, device: torch.device) -> bool:
    """Whether the ``channels_last`` lever converts the model here: with AMP, on CUDA."""
    return bool(
        recipe['channels_last'] and recipe['amp'] and device.type == 'cuda'
    )


def compile_applies(recipe: Mapping, device: torch.device) -> bool:
    """Whether the ``compile`` lever compiles here: on CUDA."""
    return recipe['compile'] is not False and device.type == 'cuda'


# --------------------------------------------------------------- channels-last


def _optimizers(target) -> list[torch.optim.Optimizer]:
    if isinstance(target, torch.optim.Optimizer):
        return [target]
    if isinstance(target, OptimWrapperDict):
        return [o for w in target.values() for o in _optimizers(w)]
    optimizer = getattr(target, 'optimizer', None)
    return [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else []


def match_state_layout(target) -> int:
    """Gives every optimizer state tensor of ``target`` (an optimizer, an
    ``OptimWrapper`` or an ``OptimWrapperDict``) the memory layout (strides) of its
    parameter (fused / foreach kernels walk them as flat arrays); returns how many it
    changed."""
    changed = 0
    for optimizer in _optimizers(target):
        for param, state in optimizer.state.items():
            if not isinstance(param, torch.Tensor):
                continue
            for key, value in state.items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.shape == param.shape
                    and value.stride() != param.stride()
                ):
                    state[key] = torch.empty_like(
                        param, dtype=value.dtype
                    ).copy_(value)
                    changed += 1
    return changed


def to_channels_last(
    model: nn.Module, parts: Iterable[str] = CHANNELS_LAST_PARTS
) -> list[str]:
    """Converts the 4-d parameters and buffers of ``model``'s submodules named ``parts``
    (those it has) to channels-last memory format, in place (the parameter objects stay
    the same, so an optimizer built before keeps them); returns the parts converted."""
    done = []
    for name in parts:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            module.to(memory_format=torch.channels_last)
            done.append(name)
    return done


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Puts the neck and heads in channels-last memory format before training, on CUDA
    only (added by the ``gpu_recipe`` lever ``channels_last`` under AMP).

    The backbone keeps its own layout; the optimizer state of the converted parameters
    (when resuming) gets their layout too; on another device it logs that it did nothing.

    Args:
        parts (Sequence[str]): Submodules of the model to convert. Defaults to
            :data:`CHANNELS_LAST_PARTS` (those the model has).
    """

    priority = 'NORMAL'

    def __init__(self, parts: Iterable[str] = CHANNELS_LAST_PARTS):
        if isinstance(parts, str) or not all(
            isinstance(p, str) for p in parts
        ):
            raise TypeError(
                f'ChannelsLastHook: parts must be a list of submodule names, got {parts!r}'
            )
        self.parts = tuple(parts)

    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)
        device = model_device(model)
        if device.type != 'cuda':
            runner.logger.info(
                f'ChannelsLastHook: the model is on {device.type}, not CUDA; '
                'memory format left as it is'
            )
            return
        done = to_channels_last(model, self.parts)
        changed = match_state_layout(runner.optim_wrapper)
        runner.logger.info(
            f'ChannelsLastHook: {", ".join(done) or "no part"} in channels-last memory '
            f'format ({changed} optimizer state tensors relaid)'
        )
