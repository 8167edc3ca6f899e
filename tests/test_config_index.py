"""Our config names: unique, and never the name of an mmdet / mmseg / mmpretrain config.

mim, mmengine's inferencers and ``mim search`` find a config by its file name, so one of
ours that shared a name with a shipped OpenMMLab config would resolve to theirs (or be
ambiguous). Every name carries a token no OpenMMLab codebase uses: ``topdownfpn`` (our
neck) or, for the UPerNet configs that have no TopDownFPN, ``pvtfpnmm``.
"""

import glob
import importlib
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: Every config of ours (the fragments under configs/_base_ are not configs to train).
CONFIGS = sorted(
    p
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in osp.relpath(p, ROOT).split(osp.sep)
)
UNIQUE_TOKENS = ('topdownfpn', 'pvtfpnmm')


def shipped_config_names(package: str) -> set:
    """File names of the configs an installed OpenMMLab package ships in ``.mim/configs``."""
    module = importlib.import_module(package)
    root = osp.join(osp.dirname(module.__file__), '.mim', 'configs')
    assert osp.isdir(root), f'{package} ships no .mim/configs at {root}'
    names = {
        osp.basename(p)
        for p in glob.glob(osp.join(root, '**', '*.py'), recursive=True)
    }
    assert len(names) > 100, (package, len(names))
    return names


def test_config_names_are_unique():
    names = [osp.basename(p) for p in CONFIGS]
    assert len(CONFIGS) >= 40
    assert len(set(names)) == len(names), sorted(
        n for n in names if names.count(n) > 1
    )


def test_config_names_carry_a_token_of_ours():
    for path in CONFIGS:
        name = osp.basename(path)
        assert any(t in name.split('_') for t in UNIQUE_TOKENS), name


@pytest.mark.parametrize('package', ['mmdet', 'mmseg', 'mmpretrain'])
def test_no_config_name_is_an_openmmlab_name(package):
    pytest.importorskip(package)
    shipped = shipped_config_names(package)
    ours = {osp.basename(p) for p in CONFIGS}
    assert not ours & shipped, sorted(ours & shipped)
    if package == 'mmdet':
        # The names we had before: the check can fail.
        assert 'retinanet_pvtv2-b0_fpn_1x_coco.py' in shipped


# --- the model index (model-index.yml + configs/*/metafile.yml) ---------------------------


def index_models():
    import yaml

    with open(osp.join(ROOT, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    models = []
    for metafile in imports:
        with open(osp.join(ROOT, metafile)) as f:
            models += yaml.safe_load(f)['Models']
    return imports, models


def test_model_index_lists_every_config_once():
    imports, models = index_models()
    metafiles = sorted(
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(ROOT, 'configs', '*', 'metafile.yml'))
    )
    assert sorted(imports) == metafiles
    listed = [m['Config'] for m in models]
    assert sorted(listed) == sorted(osp.relpath(p, ROOT) for p in CONFIGS)
    for m in models:
        assert m['Name'] == osp.basename(m['Config'])[:-3]
        assert isinstance(m['Metadata']['Parameters'], int)
        # mmengine's inferencers and `mim download` fetch it: a checkpoint file, or
        # null -- none released, or only as a page (the release's Google Drive links,
        # named by Metadata.Trained Weights, with the layout they come in)
        assert 'Weights' in m
        trained = m['Metadata']['Trained Weights']
        if str(trained).startswith('https://drive.google.com/'):
            assert m['Weights'] is None, m['Name']
            assert m['Metadata']['Weights Layout'], m['Name']
        else:
            assert trained == (m['Weights'] or 'none released'), m['Name']
        if m['Weights'] is not None:
            assert m['Weights'].endswith('.pth'), m['Name']
        if 'Results' in m:
            assert m['Metadata']['Results Source'], m['Name']
        backbone_weights = m['Metadata'].get('Pretrained')
        if backbone_weights:
            assert backbone_weights.startswith(
                'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b'
            )


def test_mim_parses_the_index():
    """What ``mim search pvtfpn_mm`` does with the index: every config is a row."""
    pytest.importorskip('mim')
    from mim.commands.search import convert2df
    from modelindex.load_model_index import load

    table = convert2df(load(osp.join(ROOT, 'model-index.yml')))
    assert set(table.index) == {osp.basename(p)[:-3] for p in CONFIGS}
    assert (
        table.loc['retinanet_pvtv2-b0_topdownfpn_1x_coco', 'coco/box_ap']
        == 37.2
    )
    assert (
        table.loc[
            'fpn_pvtv2-b5_topdownfpn_8xb4-40k_ade20k-512x512', 'ade20k/miou'
        ]
        == 48.7
    )


def test_lookup_by_name():
    from pvtfpn_mm.model_index import (
        get_config_path,
        get_model_info,
        list_models,
    )

    assert len(list_models()) == len(CONFIGS)
    path = get_config_path('mask-rcnn_pvtv2-b2_topdownfpn_ms-3x_coco')
    assert path == osp.join(
        ROOT,
        'configs',
        'mask_rcnn',
        'mask-rcnn_pvtv2-b2_topdownfpn_ms-3x_coco.py',
    )
    assert get_config_path('retinanet_r50_topdownfpn_1x_coco.py').endswith(
        'configs/resnet/retinanet_r50_topdownfpn_1x_coco.py'
    )
    assert get_model_info('retinanet_r50_topdownfpn_1x_coco')[
        'Weights'
    ].startswith('https://download.openmmlab.com/mmdetection/')
    with pytest.raises(
        KeyError,
        match="no pvtfpn_mm config named 'retinanet_pvtv2-b0_fpn_1x_coco'",
    ):
        get_config_path('retinanet_pvtv2-b0_fpn_1x_coco')


@pytest.mark.slow
def test_every_config_resolves():
    from mmengine.config import Config

    for path in CONFIGS:
        cfg = Config.fromfile(path)
        assert 'pvtfpn_mm' in cfg.custom_imports['imports'], path
        # what takes the backbone's features: UPerNet's decode head, Mask2Former's
        # pixel decoder (in its panoptic head), else a neck
        if 'upernet' in path:
            feature_user = 'decode_head'
        elif 'mask2former' in path:
            feature_user = 'panoptic_head'
        else:
            feature_user = 'neck'
        assert cfg.model.get('backbone') and cfg.model.get(feature_user), path


def _index_entries():
    from pvtfpn_mm.model_index import list_models

    return list_models()


@pytest.mark.slow
@pytest.mark.parametrize('entry', _index_entries(), ids=lambda m: m['Name'])
def test_every_index_entry_states_its_parameter_count(entry):
    """Metadata.Parameters is the count of the model its config builds (built on the
    meta device: shapes only, no weights, no download)."""
    import torch
    from mmengine.config import Config

    from pvtfpn_mm.engine.build import build_model_from_config, drop_pretrained

    cfg = Config.fromfile(entry['Config'])
    cfg.model = drop_pretrained(cfg.model)

    def build():
        if cfg.get('default_scope') is None:  # model parts, no detector around
            import pvtfpn_mm  # noqa: F401
            from pvtfpn_mm.registry import MODELS

            return [MODELS.build(part) for part in cfg.model.values()]
        return [build_model_from_config(cfg)]

    try:
        with torch.device('meta'):
            parts = build()
    except (
        NotImplementedError
    ):  # timm 0.9 reads values while building (no meta)
        parts = build()
    count = sum(p.numel() for m in parts for p in m.parameters())
    assert entry['Metadata']['Parameters'] == count
