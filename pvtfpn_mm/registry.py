"""The plugin's registry scope and its link to mmdet's and mmseg's registries.

``MODELS`` is a child of mmengine's root model registry with the scope ``pvtfpn_mm``,
so ``type='pvtfpn_mm.PVTv2'`` resolves from any scope. :func:`register_model` also
registers each class in mmdet's and mmseg's ``MODELS`` (when they are installed), so an
ordinary mmdet or mmseg config builds our types by their bare names once
``custom_imports=dict(imports=['pvtfpn_mm'])`` has run. None of our names is also a
name in mmdet or mmseg; registering one that is raises ``KeyError``.
"""

import importlib
from collections.abc import Callable, Sequence

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='pvtfpn_mm',
    locations=['pvtfpn_mm.models'],
)

#: The downstream scopes our models are also registered in.
DOWNSTREAM_SCOPES = ('mmdet', 'mmseg', 'mmpretrain')


def downstream_registry(scope: str) -> Registry | None:
    """Returns ``<scope>.registry.MODELS``, or None when that package is not installed."""
    try:
        return importlib.import_module(f'{scope}.registry').MODELS
    except ImportError:
        return None


def register_model(
    scopes: Sequence[str] = DOWNSTREAM_SCOPES,
) -> Callable[[type], type]:
    """Class decorator: register in ``pvtfpn_mm`` and in each installed scope of ``scopes``.

    Args:
        scopes (Sequence[str]): Downstream scopes to register in besides ``pvtfpn_mm``
            (those not installed are skipped). Defaults to ``('mmdet', 'mmseg', 'mmpretrain')``.
    """

    def wrap(cls: type) -> type:
        registries = [MODELS] + [
            r for r in map(downstream_registry, scopes) if r is not None
        ]
        # Check every registry before touching any, so a clash leaves none half-done.
        for registry in registries:
            if cls.__name__ in registry.module_dict:
                raise KeyError(
                    f'{cls.__name__} is already registered in the {registry.scope} '
                    f'registry (by {registry.module_dict[cls.__name__].__module__}); '
                    'pvtfpn_mm names must not collide with mmdet/mmseg names'
                )
        for registry in registries:
            registry.register_module(module=cls)
        return cls

    return wrap
