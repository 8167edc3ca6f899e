"""Our configs by name, through the model index (``model-index.yml`` + ``configs/*/metafile.yml``).

The same lookup as mmengine's inferencers and ``mim``: in a checkout (or an editable
install) the configs sit next to the package (``<repo>/configs``); an installed package
carries them in OpenMMLab's layout, ``pvtfpn_mm/.mim/{model-index.yml,configs}``. Give
mmengine's inferencers :func:`get_config_path`'s path, not a bare name (they look names
up only in their scope's index): docs/install.md, "Configs by name".
"""

import os.path as osp

import yaml

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def index_root() -> str:
    """The folder holding ``model-index.yml`` and ``configs/``: the checkout, or ``.mim``."""
    repo = osp.dirname(PACKAGE_DIR)
    if osp.isfile(osp.join(repo, 'model-index.yml')) and osp.isdir(
        osp.join(repo, 'configs')
    ):
        return repo
    mim = osp.join(PACKAGE_DIR, '.mim')
    if osp.isfile(osp.join(mim, 'model-index.yml')):
        return mim
    raise FileNotFoundError(
        f'no model-index.yml next to the package ({repo}) nor in {mim}: this pvtfpn_mm '
        'was installed without its configs (build it with setup.py, e.g. pip install .)'
    )


def config_root() -> str:
    """The ``configs`` folder (the checkout's, or the installed package's ``.mim``)."""
    return osp.join(index_root(), 'configs')


def list_models() -> list[dict]:
    """Every model of the index: its metafile entry, ``Config`` made an absolute path."""
    root = index_root()
    with open(osp.join(root, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    models = []
    for metafile in index['Import']:
        with open(osp.join(root, metafile)) as f:
            for model in yaml.safe_load(f)['Models']:
                models.append(
                    dict(model, Config=osp.join(root, model['Config']))
                )
    return models


def get_model_info(name: str) -> dict:
    """The index entry of the config called ``name`` (file name without ``.py``)."""
    key = osp.basename(name)[:-3] if name.endswith('.py') else name
    models = list_models()
    for model in models:
        if model['Name'] == key:
            return model
    close = sorted(
        m['Name'] for m in models if key.split('_')[0] in m['Name']
    )[:8]
    raise KeyError(
        f'no pvtfpn_mm config named {name!r}; similar: {close or "none"} '
        f'({len(models)} in {index_root()}/model-index.yml)'
    )


def get_config_path(name: str) -> str:
    """Absolute path of the config called ``name``, e.g.
    ``'retinanet_pvtv2-b0_topdownfpn_1x_coco'``."""
    return get_model_info(name)['Config']
