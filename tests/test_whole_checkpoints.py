"""Whole-checkpoint conversion (issue 11) and the converter's output safety (issue 9.6).

Released detectors / segmentors are rebuilt here with random weights (nothing is
downloaded): mmdet's own ``configs/pvt`` RetinaNet-b0, saved as mmdet's runner saves
checkpoints; and official whai362/PVT Mask R-CNN / Semantic FPN / RetinaNet checkpoints
made from key lists written from the official code (``_official_layout.py``). After
conversion our configs' models must predict what the original models predict.

The reference for the official layout is independent of our converter: timm's
``pvt_v2_b0`` (a port of the official code) loaded through timm's own
official-to-timm key filter, behind mmdet's / mmseg's ``FPN`` and the official heads
loaded with their keys as they are.
"""

import glob
import os
import os.path as osp
import re
import subprocess
import sys
import warnings

import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.runner.checkpoint import save_checkpoint

try:
    from timm.models.pvt_v2 import checkpoint_filter_fn
except ImportError:  # timm 0.9 (the oldest stack): the same function, private
    from timm.models.pvt_v2 import (
        _checkpoint_filter_fn as checkpoint_filter_fn,
    )

import pvtfpn_mm  # noqa: F401
from pvtfpn_mm import weights
from pvtfpn_mm.engine.build import build_model_from_config
from pvtfpn_mm.weights import (
    CheckpointFormatError,
    convert_to_model_layout,
    detect_layout,
    load_state_dict_strict,
    whole_to_ours,
)

from _helpers import random_params_
from _official_layout import official_checkpoint

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MMDET_PVT_B0 = 'mmdet::pvt/retinanet_pvtv2-b0_fpn_1x_coco.py'
SIZES = [(96, 128), (128, 96), (160, 160)]


def config(pattern):
    """Our config matching ``pattern`` (names survive renames of their middle part)."""
    found = sorted(glob.glob(osp.join(REPO, 'configs', pattern)))
    assert len(found) == 1, (pattern, found)
    return found[0]


def build(cfg_path, cfg_options=None, **backbone):
    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.update(backbone)
    return build_model_from_config(cfg, cfg_options).eval()


#: Fewer proposals (for both models compared): a cheaper test, the same code paths.
FEW_PROPOSALS = {
    'model.test_cfg.rpn.nms_pre': 200,
    'model.test_cfg.rpn.max_per_img': 200,
}


def cli(*args):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import convert_weights
    finally:
        sys.path.pop(0)
    return convert_weights.main([str(a) for a in args])


def images(sizes=SIZES, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8)
        for h, w in sizes
    ]


def predict(model, img):
    """``model.test_step`` on one uint8 image at scale 1 (as after the test pipeline)."""
    h, w = img.shape[1:]
    if hasattr(model, 'rpn_head') or hasattr(model, 'bbox_head'):
        from mmdet.structures import DetDataSample

        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)
            )
        )
    else:
        from mmseg.structures import SegDataSample

        sample = SegDataSample(
            metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
        )
    with torch.no_grad():
        return model.test_step(dict(inputs=[img], data_samples=[sample]))[0]


def compare_detections(a, b, box_atol, score_atol):
    """Same number of detections and labels; boxes / scores within tolerance. Returns
    the largest box and score differences."""
    a, b = a.pred_instances, b.pred_instances
    assert len(a) == len(b) > 0
    assert torch.equal(a.labels, b.labels)
    box_diff = float((a.bboxes - b.bboxes).abs().max())
    score_diff = float((a.scores - b.scores).abs().max())
    assert box_diff <= box_atol and score_diff <= score_atol, (
        box_diff,
        score_diff,
    )
    return box_diff, score_diff


# ------------------------------------------------------------ mmdet 3.x RetinaNet


@pytest.fixture(scope='module')
def mmdet_retinanet(tmp_path_factory):
    """mmdet's configs/pvt RetinaNet-b0 with random weights, and its checkpoint saved as
    mmdet's runner saves one (meta + state_dict, mmengine's save_checkpoint)."""
    cfg = get_config(MMDET_PVT_B0)
    cfg.model.backbone.init_cfg = None
    model = random_params_(build_model_from_config(cfg), seed=1).eval()
    path = (
        tmp_path_factory.mktemp('mmdet') / 'retinanet_pvtv2-b0_fpn_1x_coco.pth'
    )
    meta = dict(
        epoch=12,
        iter=87960,
        mmengine_version='0.10.7',
        seed=0,
        experiment_name='retinanet_pvtv2-b0_fpn_1x_coco',
        dataset_meta=dict(classes=tuple(f'c{i}' for i in range(80))),
    )
    save_checkpoint(dict(meta=meta, state_dict=model.state_dict()), str(path))
    return model, path


def test_mmdet_retinanet_converted_predicts_what_mmdet_predicts(
    mmdet_retinanet, tmp_path, capsys
):
    mmdet_model, path = mmdet_retinanet
    ours_cfg = config('retinanet/retinanet_pvtv2-b0_*1x_coco.py')
    dst = tmp_path / 'ours.pth'
    # whole checkpoint detected, checked strictly
    cli(path, dst, '--config', ours_cfg)
    assert '(mmdet)' in capsys.readouterr().out
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['converted_from'] == 'mmdet'
    # mmdet's PVT-v2 uses LayerNorm eps 1e-6 in the patch embeddings: exact with it
    ours = build(ours_cfg, embed_norm_eps=1e-6)
    load_state_dict_strict(ours, converted['state_dict'])
    for img in images():
        compare_detections(
            predict(ours, img),
            predict(mmdet_model, img),
            box_atol=2e-4,
            score_atol=1e-6,
        )


def test_mmdet_retinanet_on_the_fly_with_default_eps_warns(mmdet_retinanet):
    mmdet_model, path = mmdet_retinanet
    ours = build(config('retinanet/retinanet_pvtv2-b0_*1x_coco.py'))
    state = weights.read_checkpoint(str(path))['state_dict']
    with pytest.warns(UserWarning, match='embed_norm_eps=1e-06'):
        converted, src = convert_to_model_layout(state, ours)
    assert src == 'mmdet'
    load_state_dict_strict(ours, converted)
    for img in images()[:2]:  # eps 1e-5 vs 1e-6: close, not exact
        compare_detections(
            predict(ours, img),
            predict(mmdet_model, img),
            box_atol=2e-3,
            score_atol=1e-5,
        )


def test_model_layout_is_returned_as_it_is(mmdet_retinanet):
    ours = build(config('retinanet/retinanet_pvtv2-b0_*1x_coco.py'))
    state = ours.state_dict()
    converted, src = convert_to_model_layout(state, ours)
    assert src is None and list(converted) == list(state)
    # a model whose backbone is not our PVTv2 is left alone
    resnet = build_model_from_config(
        config('resnet/retinanet_r50_*1x_coco.py')
    )
    mmdet_state = mmdet_retinanet[0].state_dict()
    converted, src = convert_to_model_layout(mmdet_state, resnet)
    assert src is None and list(converted) == list(mmdet_state)


# --------------------------------------------------------------- official layout


def timm_reference_backbone(state_dict, tmp_path, arch='b0'):
    """A TimmFeatures backbone config holding the official backbone, converted to timm's
    names by timm's own filter."""
    backbone = {
        k[len('backbone.') :]: v
        for k, v in state_dict.items()
        if k.startswith('backbone.')
    }
    path = tmp_path / f'timm_pvt_v2_{arch}.pth'
    torch.save(
        checkpoint_filter_fn(backbone, timm.create_model(f'pvt_v2_{arch}')),
        path,
    )
    return dict(
        type='TimmFeatures', model_name=f'pvt_v2_{arch}', checkpoint=str(path)
    )


def reference_model(
    cfg_path, state_dict, tmp_path, neck, cfg_options=None, arch='b0'
):
    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone = timm_reference_backbone(state_dict, tmp_path, arch)
    cfg.model.neck = neck
    model = build_model_from_config(cfg, cfg_options).eval()
    own = {
        k: v for k, v in state_dict.items() if not k.startswith('backbone.')
    }
    own.update(
        ('backbone.' + k, v) for k, v in model.backbone.state_dict().items()
    )
    # names as they are
    load_state_dict_strict(model, own, source='official neck/heads')
    return model


@pytest.mark.slow
def test_official_mask_rcnn_converted_predicts_what_the_official_model_predicts(
    tmp_path,
):
    ckpt = official_checkpoint('mask_rcnn')
    ckpt['state_dict']['roi_head.bbox_head.fc_cls.weight'] *= (
        6  # scores above score_thr
    )
    src = tmp_path / 'mask_rcnn_pvt_v2_b0_fpn_1x_coco.pth'
    torch.save(ckpt, src)
    cfg_path = config('mask_rcnn/mask-rcnn_pvtv2-b0_*1x_coco.py')
    cli(src, tmp_path / 'ours.pth', '--config', cfg_path)
    converted = torch.load(tmp_path / 'ours.pth', weights_only=True)
    assert converted['meta']['converted_from'] == 'official'
    assert converted['meta']['dataset_meta']['classes'][:2] == ('c0', 'c1')
    ours = build(cfg_path, FEW_PROPOSALS)
    load_state_dict_strict(ours, converted['state_dict'])
    reference = reference_model(
        cfg_path,
        ckpt['state_dict'],
        tmp_path,
        dict(
            type='FPN',
            in_channels=[32, 64, 160, 256],
            out_channels=256,
            num_outs=5,
        ),
        FEW_PROPOSALS,
    )
    for img in images(SIZES[:2]):
        a, b = predict(ours, img), predict(reference, img)
        compare_detections(a, b, box_atol=2e-3, score_atol=2e-4)
        # binary masks (threshold 0.5 of the pasted probabilities): a pixel may flip
        # where the probability is within float noise of 0.5
        flipped = int((a.pred_instances.masks != b.pred_instances.masks).sum())
        assert flipped <= 1e-3 * a.pred_instances.masks.sum(), flipped


def test_official_sem_fpn_converted_predicts_what_the_official_model_predicts(
    tmp_path,
):
    ckpt = official_checkpoint('sem_fpn')
    cfg_path = config('sem_fpn/fpn_pvtv2-b0_*40k_ade20k-512x512.py')
    ours = build(cfg_path)
    # on the fly
    converted, src = convert_to_model_layout(ckpt['state_dict'], ours)
    assert src == 'official'
    load_state_dict_strict(ours, converted)
    reference = reference_model(
        cfg_path,
        ckpt['state_dict'],
        tmp_path,
        dict(
            type='FPN',
            in_channels=[32, 64, 160, 256],
            out_channels=256,
            num_outs=4,
        ),
    )
    for img in images():
        a, b = predict(ours, img), predict(reference, img)
        logits_a, logits_b = a.seg_logits.data, b.seg_logits.data
        assert float((logits_a - logits_b).abs().max()) <= 1e-4 * float(
            logits_b.abs().max()
        )
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)


@pytest.mark.parametrize(
    'kind,pattern',
    [
        ('retinanet', 'retinanet/retinanet_pvtv2-b0_*1x_coco.py'),
        ('mask_rcnn', 'mask_rcnn/mask-rcnn_pvtv2-b0_*1x_coco.py'),
        ('sem_fpn', 'sem_fpn/fpn_pvtv2-b0_*40k_ade20k-512x512.py'),
    ],
)
def test_official_checkpoints_fit_our_configs_strictly(kind, pattern):
    state = official_checkpoint(kind)['state_dict']
    assert detect_layout(state) == 'official'
    model = build_model_from_config(config(pattern))
    converted = whole_to_ours(state)
    assert len(converted) == len(state)
    load_state_dict_strict(model, converted)


def test_official_b2_li_fits_our_config():
    state = official_checkpoint('retinanet', arch='b2_li')['state_dict']
    load_state_dict_strict(
        build_model_from_config(
            config('retinanet/retinanet_pvtv2-b2-li_*.py')
        ),
        whole_to_ours(state),
    )


def test_keys_no_rule_maps_are_refused_with_a_list(tmp_path):
    state = official_checkpoint('retinanet')['state_dict']
    # a classifier: not mapped
    state['backbone.head.weight'] = torch.zeros(1000, 256)
    state['roi_head.foo.weight'] = torch.zeros(1)
    state['ema_bbox_head.retina_cls.weight'] = torch.zeros(1)
    with pytest.raises(
        CheckpointFormatError,
        match=r'3 keys are mapped by no rule.*'
        r'backbone\.head\.weight.*roi_head\.foo\.weight.*ema_bbox_head',
    ):
        whole_to_ours(state)
    src = tmp_path / 'bad.pth'
    torch.save({'state_dict': state}, src)
    with pytest.raises(CheckpointFormatError, match='3 keys'):
        cli(src, tmp_path / 'out.pth')
    assert not (tmp_path / 'out.pth').exists()


def test_whole_checkpoints_convert_to_ours_only(tmp_path):
    src = tmp_path / 'official.pth'
    torch.save(official_checkpoint('retinanet'), src)
    with pytest.raises(ValueError, match=r"--to 'mmdet'.*--prefix backbone\."):
        cli(src, tmp_path / 'out.pth', '--to', 'mmdet')
    with pytest.raises(
        CheckpointFormatError, match="layout 'official', not 'mmdet'"
    ):
        cli(src, tmp_path / 'out.pth', '--from', 'mmdet')
    # --prefix (or --backbone) converts only the backbone, to any format
    cli(src, tmp_path / 'timm.pth', '--to', 'timm', '--prefix', 'backbone.')
    assert 'stages.0.blocks.0.attn.q.weight' in torch.load(
        tmp_path / 'timm.pth', weights_only=True
    )
    with pytest.raises(ValueError, match=r'model= \(--config\) checks whole'):
        cli(
            src,
            tmp_path / 'b.pth',
            '--backbone',
            '--config',
            config('retinanet/retinanet_pvtv2-b0_*1x_coco.py'),
        )


def test_config_check_names_what_does_not_fit(tmp_path):
    src = tmp_path / 'official_mask_rcnn.pth'
    torch.save(official_checkpoint('mask_rcnn'), src)
    with pytest.raises(
        weights.StateDictMismatchError, match='missing keys.*bbox_head'
    ):
        cli(
            src,
            tmp_path / 'out.pth',
            '--config',
            config('retinanet/retinanet_pvtv2-b0_*1x_coco.py'),
        )
    assert not (tmp_path / 'out.pth').exists()


# ------------------------------------------------------- output safety (issue 9.6)


@pytest.fixture
def src(tmp_path):
    path = tmp_path / 'src.pth'
    torch.save(official_checkpoint('retinanet'), path)
    return path


def test_existing_dst_needs_force(src, tmp_path):
    dst = tmp_path / 'dst.pth'
    dst.write_bytes(b'keep me')
    with pytest.raises(FileExistsError, match=rf"{dst}.*exists.*--force"):
        cli(src, dst)
    assert dst.read_bytes() == b'keep me'
    cli(src, dst, '--force')
    assert (
        torch.load(dst, weights_only=True)['meta']['converted_from']
        == 'official'
    )


@pytest.mark.parametrize('how', ['same', 'relative', 'symlink', 'dotdot'])
def test_dst_equal_to_src_is_refused_even_with_force(
    src, tmp_path, monkeypatch, how
):
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    dst = {
        'same': str(src),
        'relative': 'src.pth',
        'dotdot': f'../{tmp_path.name}/src.pth',
        'symlink': 'link.pth',
    }[how]
    if how == 'symlink':
        os.symlink(src, tmp_path / 'link.pth')
    with pytest.raises(ValueError, match='is the input file'):
        cli(src, dst, '--force')
    assert src.read_bytes() == before


def test_dst_in_a_missing_folder_is_named(src, tmp_path):
    missing = tmp_path / 'no' / 'such'
    with pytest.raises(
        FileNotFoundError, match=rf"folder '{missing}'.*does not exist"
    ):
        cli(src, missing / 'out.pth')


def test_dst_that_is_a_folder_is_refused(src, tmp_path):
    with pytest.raises(IsADirectoryError, match='is a folder'):
        cli(src, tmp_path, '--force')


def test_user_home_is_expanded(src, tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    cli('~/src.pth', '~/out.pth')
    assert (tmp_path / 'out.pth').is_file()
    assert not (tmp_path / '~').exists()


def test_write_is_atomic(src, tmp_path, monkeypatch):
    dst = tmp_path / 'dst.pth'
    dst.write_bytes(b'old')
    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):
        # the bytes are written, then the disk fails
        real_save(obj, f, *args, **kwargs)
        raise OSError('No space left on device')

    monkeypatch.setattr(torch, 'save', save_then_fail)
    with pytest.raises(OSError, match='No space left'):
        cli(src, dst, '--force')
    assert dst.read_bytes() == b'old'  # untouched
    # no temp
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'dst.pth',
        'src.pth',
    ]
    monkeypatch.setattr(torch, 'save', real_save)
    cli(src, dst, '--force')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['dst.pth', 'src.pth']
    assert oct(dst.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_cli_errors_are_one_line_without_traceback(src, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            osp.join(REPO, 'tools', 'convert_weights.py'),
            str(src),
            str(src),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    assert (
        'convert_weights.py: error:' in result.stderr
        and 'is the input file' in result.stderr
    )


def test_no_warning_for_layouts_trained_with_the_models_eps():
    model = build(config('retinanet/retinanet_pvtv2-b0_*1x_coco.py'))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        convert_to_model_layout(
            official_checkpoint('retinanet')['state_dict'], model
        )


# ------------------------------------------------- tools/test.py and mim test, end to end


@pytest.mark.slow
def test_test_tools_convert_a_released_layout_on_the_fly(tmp_path):
    """An mmdet-layout checkpoint of the quickstart RetinaNet tested as it is: the
    strict loading of our configs converts it (logging so) and the metrics are those of
    the same weights in our layout."""
    from pvtfpn_mm.weights import from_ours

    from pvtfpn_tools.toy_data import write_toy_data

    toy = tmp_path / 'toy'
    write_toy_data(str(toy), num_train=2, num_val=4, img_size=64, seed=0)
    base = config('quickstart/retinanet_pvtv2-b0_*toy-96.py')
    cfg_path = tmp_path / 'tiny.py'
    cfg_path.write_text(
        f"_base_ = '{base}'\ndata_root = '{toy}/coco/'\n"
        "test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,\n"
        "                       dataset=dict(data_root=data_root))\n"
        "test_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')\n"
        "model = dict(test_cfg=dict(score_thr=0.0))\n"
    )
    model = random_params_(build(str(cfg_path)), seed=2)
    ours = tmp_path / 'ours.pth'
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, ours)
    state = model.state_dict()
    backbone = {
        k[len('backbone.') :]: v
        for k, v in state.items()
        if k.startswith('backbone.')
    }
    mmdet_state = {
        'backbone.' + k: v for k, v in from_ours(backbone, 'mmdet').items()
    }
    mmdet_state.update(
        (k, v) for k, v in state.items() if not k.startswith('backbone.')
    )
    assert detect_layout(mmdet_state) == 'mmdet'
    released = tmp_path / 'released_mmdet.pth'
    save_checkpoint(
        dict(meta=dict(epoch=12), state_dict=mmdet_state), str(released)
    )

    def test_tool(*cmd):
        proc = subprocess.run(
            [*cmd, '--work-dir', str(tmp_path / 'work')],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ, OMP_NUM_THREADS='1'),
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out = proc.stdout + proc.stderr
        return out, re.search(r'coco/bbox_mAP: (\S+)', out).group(1)

    tool = [sys.executable, osp.join(REPO, 'tools', 'test.py'), str(cfg_path)]
    out, converted_map = test_tool(*tool, str(released))
    assert "converted on the fly from the 'mmdet' layout" in out
    out, ours_map = test_tool(*tool, str(ours))
    assert 'converted on the fly' not in out
    assert converted_map == ours_map
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    out, mim_map = test_tool(
        mim, 'test', 'mmdet', str(cfg_path), '--checkpoint', str(released)
    )
    assert (
        "converted on the fly from the 'mmdet' layout" in out
        and mim_map == ours_map
    )


# ------------------------------------------------------- the release's 3x detectors

#: ``_official_layout`` kind -> (our config, the release's FPN as mmdet's ``FPN``).
RELEASE_3X = {
    'cascade_mask_rcnn': (
        'cascade_rcnn/cascade-mask-rcnn_pvtv2-{}_topdownfpn_*3x_coco.py',
        dict(start_level=0, add_extra_convs=False, num_outs=5),
    ),
    'atss': (
        'atss/atss_pvtv2-{}_topdownfpn_*3x_coco.py',
        dict(start_level=1, add_extra_convs='on_output', num_outs=5),
    ),
    'gfl': (
        'gfl/gfl_pvtv2-{}_topdownfpn_*3x_coco.py',
        dict(start_level=1, add_extra_convs='on_output', num_outs=5),
    ),
    'sparse_rcnn': (
        'sparse_rcnn/sparse-rcnn_pvtv2-{}_topdownfpn_*3x_coco.py',
        dict(start_level=0, add_extra_convs='on_input', num_outs=4),
    ),
}


def release_3x_config(kind, arch):
    return config(RELEASE_3X[kind][0].format(arch.replace('_', '-')))


def release_3x_fpn(kind):
    return dict(
        type='FPN',
        in_channels=[64, 128, 320, 512],
        out_channels=256,
        **RELEASE_3X[kind][1],
    )


@pytest.mark.parametrize('arch', ['b2', 'b2_li'])
@pytest.mark.parametrize('kind', list(RELEASE_3X))
def test_every_official_3x_key_is_mapped(kind, arch):
    """The release's 3x checkpoints' key lists (official backbone names, mmdet 2.13 necks
    and heads): every key is mapped, the neck and heads as they are (keys only, cheap;
    the strict load into our models is the slow test below)."""
    from _official_layout import KINDS, backbone_shapes, fpn_shapes

    (start_level, num_outs, extra), heads = KINDS[kind]
    keys = ['backbone.' + k for k in backbone_shapes(arch)]
    keys += list(fpn_shapes([64, 128, 320, 512], start_level, num_outs, extra))
    keys += list(heads())
    state = {k: torch.zeros(0) for k in keys}
    converted = whole_to_ours(state)
    assert len(converted) == len(state)
    assert [k for k in converted if not k.startswith('backbone.')] == [
        k for k in keys if not k.startswith('backbone.')
    ]


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['b2', 'b2_li'])
@pytest.mark.parametrize('kind', list(RELEASE_3X))
def test_official_3x_checkpoints_fit_our_configs_strictly(kind, arch):
    """... and the converted checkpoint is exactly our config's model."""
    state = official_checkpoint(kind, arch)['state_dict']
    assert detect_layout(state) == 'official'
    converted = whole_to_ours(state)
    assert len(converted) == len(state)
    load_state_dict_strict(
        build_model_from_config(release_3x_config(kind, arch)), converted
    )


def test_unknown_3x_head_keys_are_named():
    state = official_checkpoint('sparse_rcnn', 'b2_li')['state_dict']
    state['roi_head.bbox_head.0.attention.attn.bias_k'] = torch.zeros(1)
    state['bbox_head.scales.0.weight'] = torch.zeros(1)
    with pytest.raises(
        CheckpointFormatError,
        match=r'2 keys are mapped by no rule.*attention\.attn\.bias_k.*'
        r'bbox_head\.scales\.0\.weight',
    ):
        whole_to_ours(state)


def official_3x(kind, arch, tmp_path, scale_cls=1.0, scale_reg=1.0):
    """An official ``kind`` checkpoint (file and state dict) whose classifiers are
    ``scale_cls`` times sharper and regressors ``scale_reg`` times gentler."""
    ckpt = official_checkpoint(kind, arch)
    for key, value in ckpt['state_dict'].items():
        if key.endswith(
            ('fc_cls.weight', 'atss_cls.weight', 'gfl_cls.weight')
        ):
            ckpt['state_dict'][key] = value * scale_cls
        if key.endswith('fc_reg.weight'):
            ckpt['state_dict'][key] = value * scale_reg
    src = tmp_path / f'{kind}_pvt_v2_{arch}_3x.pth'
    torch.save(ckpt, src)
    return src, ckpt['state_dict']


def match_detections(a, b, box_atol, score_atol):
    """As :func:`compare_detections`, in any order: every detection of ``a`` has exactly
    one in ``b`` (and back) with its label, its box within ``box_atol`` px and its score
    within ``score_atol``. Returns the largest box and score differences."""
    a, b = a.pred_instances, b.pred_instances
    assert len(a) == len(b) > 0
    box = (a.bboxes[:, None] - b.bboxes[None]).abs().amax(-1)
    score = (a.scores[:, None] - b.scores[None]).abs()
    same = a.labels[:, None] == b.labels[None]
    close = same & (box <= box_atol) & (score <= score_atol)
    assert bool((close.sum(1) == 1).all()) and bool(
        (close.sum(0) == 1).all()
    ), (int((close.sum(1) != 1).sum()), float(box[same].min()))
    j = close.float().argmax(1)
    return (
        float((a.bboxes - b.bboxes[j]).abs().max()),
        float((a.scores - b.scores[j]).abs().max()),
    )


def converted_model(kind, arch, src, state, tmp_path, cfg_options, how):
    """Our config's model with the official checkpoint ``src`` loaded, converted by
    ``tools/convert_weights.py`` (``how='cli'``, checked against the config) or on the
    fly as the test tools load it (``convert_to_model_layout``)."""
    cfg_path = release_3x_config(kind, arch)
    ours = build(cfg_path, cfg_options)
    if how == 'cli':
        dst = tmp_path / 'ours.pth'
        cli(src, dst, '--config', cfg_path)
        converted = torch.load(dst, weights_only=True)
        assert converted['meta']['converted_from'] == 'official'
        load_state_dict_strict(ours, converted['state_dict'])
    else:
        converted, layout = convert_to_model_layout(state, ours)
        assert layout == 'official'
        load_state_dict_strict(ours, converted)
    reference = reference_model(
        cfg_path,
        state,
        tmp_path,
        release_3x_fpn(kind),
        cfg_options,
        arch=arch,
    )
    return ours, reference


@pytest.mark.slow
def test_official_cascade_3x_converted_predicts_what_the_official_model_predicts(
    tmp_path,
):
    src, state = official_3x('cascade_mask_rcnn', 'b2', tmp_path, scale_cls=6)
    ours, reference = converted_model(
        'cascade_mask_rcnn', 'b2', src, state, tmp_path, FEW_PROPOSALS, 'cli'
    )
    img = images(SIZES[:1])[0]
    a, b = predict(ours, img), predict(reference, img)
    compare_detections(a, b, box_atol=1e-3, score_atol=1e-5)
    assert len(a.pred_instances) == 100
    # binary masks: a pixel may flip where the probability is within float noise of 0.5
    flipped = int((a.pred_instances.masks != b.pred_instances.masks).sum())
    assert flipped <= 1e-3 * a.pred_instances.masks.sum(), flipped


@pytest.mark.slow
@pytest.mark.parametrize(
    'kind,arch,how', [('atss', 'b2', 'fly'), ('gfl', 'b2_li', 'cli')]
)
def test_official_atss_gfl_3x_converted_predict_what_the_official_models_predict(
    kind, arch, how, tmp_path
):
    src, state = official_3x(kind, arch, tmp_path)
    ours, reference = converted_model(
        kind, arch, src, state, tmp_path, None, how
    )
    for img in images(SIZES[:2]):
        a, b = predict(ours, img), predict(reference, img)
        compare_detections(a, b, box_atol=1e-3, score_atol=1e-5)
        assert len(a.pred_instances) == 100


@pytest.mark.slow
def test_official_sparse_rcnn_3x_converted_predicts_what_the_official_model_predicts(
    tmp_path,
):
    """300 detections, all of them (the release's max_per_img), of 300 x 80 sigmoid
    scores within a few percent of each other: two float paths may order near-equal
    scores differently, so they are matched in any order. The regressors are 0.3 x the
    random scale: six stages of full-scale random box deltas move the boxes far outside
    the image and amplify float rounding (7e-3 px), where trained refinements are small."""
    src, state = official_3x('sparse_rcnn', 'b2_li', tmp_path, scale_reg=0.3)
    ours, reference = converted_model(
        'sparse_rcnn', 'b2_li', src, state, tmp_path, None, 'fly'
    )
    img = images(SIZES[:1])[0]
    a, b = predict(ours, img), predict(reference, img)
    match_detections(a, b, box_atol=1e-3, score_atol=1e-5)
    assert len(a.pred_instances) == 300


@pytest.mark.slow
def test_test_tools_convert_a_released_3x_checkpoint_on_the_fly(tmp_path):
    """A Cascade Mask R-CNN b2-li checkpoint in the release's layout (official backbone
    names, mmdet 2.13 heads with their SyncBN buffers) tested as it is by tools/test.py
    and ``mim test``: converted on the fly (logged), the predictions are those of the
    same weights in our layout, box for box and mask for mask."""
    import pickle

    from pvtfpn_mm.weights import from_ours

    from pvtfpn_tools.toy_data import write_toy_data

    toy = tmp_path / 'toy'
    write_toy_data(
        str(toy),
        num_train=1,
        num_val=2,
        img_size=64,
        seed=0,
        formats=('coco',),
    )
    base = release_3x_config('cascade_mask_rcnn', 'b2_li')
    cfg_path = tmp_path / 'tiny_cascade.py'
    cfg_path.write_text(
        f"_base_ = '{base}'\ndata_root = '{toy}/coco/'\n"
        "test_pipeline = [\n"
        "    dict(type='LoadImageFromFile'),\n"
        "    dict(type='Resize', scale=(167, 100), keep_ratio=True),\n"
        "    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),\n"
        "    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', "
        "'ori_shape', 'img_shape', 'scale_factor')),\n"
        "]\n"
        "test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,\n"
        "    dataset=dict(data_root=data_root, pipeline=test_pipeline,\n"
        "                 metainfo=dict(classes=('circle', 'square', 'triangle'))))\n"
        "test_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')\n"
        "model = dict(backbone=dict(init_cfg=None), test_cfg=dict(\n"
        "    rpn=dict(nms_pre=100, max_per_img=50),\n"
        "    rcnn=dict(score_thr=0.0, max_per_img=20)))\n"
    )
    # 3 classes: the heads are a list, set by index as on a command line
    options = {
        f'model.roi_head.bbox_head.{i}.num_classes': 3 for i in range(3)
    }
    options['model.roi_head.mask_head.num_classes'] = 3
    model = random_params_(build(str(cfg_path), options), seed=3)
    state = model.state_dict()
    ours = tmp_path / 'ours.pth'
    torch.save({'meta': {}, 'state_dict': state}, ours)
    backbone = {
        k[len('backbone.') :]: v
        for k, v in state.items()
        if k.startswith('backbone.')
    }
    official = {
        'backbone.' + k: v for k, v in from_ours(backbone, 'official').items()
    }
    official.update(
        (k, v) for k, v in state.items() if not k.startswith('backbone.')
    )
    assert detect_layout(official) == 'official'
    assert any(k.endswith('shared_convs.0.bn.running_var') for k in official)
    released = (
        tmp_path / 'cascade_mask_rcnn_pvt_v2_b2_li_fpn_3x_mstrain_fp16.pth'
    )
    torch.save(
        dict(meta=dict(mmdet_version='2.13.0', epoch=36), state_dict=official),
        released,
    )
    cfg_options = [f'{k}={v}' for k, v in options.items()]

    def run_tool(name, *cmd):
        out_file = tmp_path / f'{name}.pkl'
        proc = subprocess.run(
            [
                *cmd,
                '--work-dir',
                str(tmp_path / name),
                '--out',
                str(out_file),
                '--cfg-options',
                *cfg_options,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
            env=dict(os.environ, OMP_NUM_THREADS='1'),
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        with open(out_file, 'rb') as f:
            return proc.stdout + proc.stderr, pickle.load(f)

    tool = [sys.executable, osp.join(REPO, 'tools', 'test.py'), str(cfg_path)]
    out, converted = run_tool('converted', *tool, str(released))
    assert "converted on the fly from the 'official' layout" in out
    out, reference = run_tool('ours', *tool, str(ours))
    assert 'converted on the fly' not in out
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    out, by_mim = run_tool(
        'mim',
        mim,
        'test',
        'mmdet',
        str(cfg_path),
        '--checkpoint',
        str(released),
    )
    assert "converted on the fly from the 'official' layout" in out
    assert len(reference) == 2
    for results in (converted, by_mim):
        assert len(results) == len(reference)
        for a, b in zip(results, reference, strict=True):
            a, b = a['pred_instances'], b['pred_instances']
            assert len(b['labels']) == 20
            assert torch.equal(a['labels'], b['labels'])
            assert torch.equal(a['bboxes'], b['bboxes'])
            assert torch.equal(a['scores'], b['scores'])
            assert a['masks'] == b['masks']  # RLE-encoded
