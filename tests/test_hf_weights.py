"""Hugging Face transformers' PVT-v2 weights (the ``'hf'`` format) and ``.safetensors``.

The hub's ``OpenGVLab/pvt_v2_b0`` ... ``b5`` / ``pvt_v2_b2_linear`` files are what
``PvtV2ForImageClassification.save_pretrained`` writes (``model.safetensors``, or
``pytorch_model.bin``); here transformers itself writes them from random weights
(nothing is downloaded), and our ``PVTv2`` loading them must give transformers' four
hidden states. transformers' LayerNorms all use eps 1e-6: ``embed_norm_eps=1e-6``.
"""

import functools
import os
import os.path as osp
import re

import pytest
import torch

transformers = pytest.importorskip('transformers')

from safetensors.torch import load_file, save_file  # noqa: E402

from pvtfpn_mm.models.backbones.pvt_v2 import PVTv2  # noqa: E402
from pvtfpn_mm.weights import (  # noqa: E402
    CheckpointFormatError,
    CheckpointReadError,
    StateDictMismatchError,
    convert_file,
    detect_format,
    from_ours,
    load_pretrained,
    read_checkpoint,
    to_ours,
)

from _helpers import random_params_  # noqa: E402

ATOL = 1e-5
#: transformers' PvtV2Config for each case (b2-li with one block per stage: fast) and
#: the matching PVTv2 arguments.
CASES = {
    'b0': (dict(), dict(arch='b0')),
    'b2_li': (
        dict(
            hidden_sizes=[64, 128, 320, 512],
            depths=[1, 1, 1, 1],
            linear_attention=True,
        ),
        dict(arch='b2_li', depths=(1, 1, 1, 1)),
    ),
}


@functools.lru_cache
def hf_model(case, cls='PvtV2ForImageClassification', seed=0):
    """transformers' model with random weights (built once per arguments; not to be
    changed by a test)."""
    config = transformers.PvtV2Config(
        num_labels=10,
        out_features=['stage1', 'stage2', 'stage3', 'stage4'],
        **CASES[case][0],
    )
    model = getattr(transformers, cls)(config)
    return random_params_(model, seed=seed).eval()


def ours(case, **kwargs):
    return PVTv2(**CASES[case][1], embed_norm_eps=1e-6, **kwargs).eval()


@pytest.fixture(scope='module')
def image():
    # odd sizes: every stage pads
    return torch.randn(
        1, 3, 67, 93, generator=torch.Generator().manual_seed(0)
    )


def hidden_states(hf, x):
    base = getattr(hf, 'pvt_v2', hf)
    with torch.no_grad():
        return base(x, output_hidden_states=True).hidden_states


def max_diff(model, reference, x):
    with torch.no_grad():
        out = model(x)
    assert len(out) == len(reference) == 4
    for a, b in zip(out, reference, strict=True):
        assert a.shape == b.shape
    return max(
        float((a - b).abs().max()) for a, b in zip(out, reference, strict=True)
    )


@pytest.mark.parametrize('case', ['b0', 'b2_li'])
@pytest.mark.parametrize('serialization', ['safetensors', 'bin'])
def test_save_pretrained_files_load_into_pvtv2(
    tmp_path, image, case, serialization
):
    """``save_pretrained``'s ``model.safetensors`` / ``pytorch_model.bin`` through
    ``init_cfg=dict(type='Pretrained')``: transformers' hidden states within 1e-5."""
    hf = hf_model(case)
    hf.save_pretrained(
        tmp_path, safe_serialization=serialization == 'safetensors'
    )
    name = (
        'model.safetensors'
        if serialization == 'safetensors'
        else 'pytorch_model.bin'
    )
    path = str(tmp_path / name)
    assert detect_format(read_checkpoint(path)) == 'hf'
    model = ours(case, init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    assert max_diff(model.eval(), hidden_states(hf, image), image) <= ATOL


def test_backbone_and_base_model_state_dicts_load(image):
    """``PvtV2Backbone`` / ``PvtV2Model`` state dicts (no ``pvt_v2.`` prefix) are 'hf'
    too; the backbone's feature maps are ours."""
    hf = hf_model('b2_li', cls='PvtV2Backbone', seed=1)
    state = hf.state_dict()
    assert 'encoder.layers.0.patch_embedding.proj.weight' in state
    model = ours('b2_li')
    assert load_pretrained(model, state) == 'hf'
    with torch.no_grad():
        maps = hf(image).feature_maps
    assert max_diff(model, maps, image) <= ATOL


def test_keys_map_one_to_one_and_back():
    """Every tensor of transformers' model is used (key and value joined into our kv,
    the classifier dropped) and converting back gives them again, exactly."""
    hf = hf_model('b2_li', seed=2)
    state = hf.state_dict()
    converted = to_ours(state)
    assert set(converted) == set(ours('b2_li').state_dict())
    kv = converted['stages.1.blocks.0.attn.kv.weight']
    prefix = 'pvt_v2.encoder.layers.1.blocks.0.attention.'
    assert torch.equal(kv[:128], state[prefix + 'key.weight'])
    assert torch.equal(kv[128:], state[prefix + 'value.weight'])
    back = from_ours(converted, 'hf')
    assert set(back) == {k for k in state if not k.startswith('classifier.')}
    assert all(torch.equal(v, state[k]) for k, v in back.items())


def test_loading_is_strict(tmp_path):
    """An unknown key and a key without its value partner are named."""
    state = dict(hf_model('b0').state_dict())
    extra = dict(state, **{'pvt_v2.encoder.extra.weight': torch.zeros(1)})
    with pytest.raises(
        StateDictMismatchError, match=r'pvt_v2\.encoder\.extra\.weight'
    ):
        load_pretrained(ours('b0'), extra)
    del state['pvt_v2.encoder.layers.2.blocks.1.attention.value.weight']
    with pytest.raises(StateDictMismatchError) as info:
        load_pretrained(ours('b0'), state)
    assert info.value.missing == ['stages.2.blocks.1.attn.kv.weight']
    assert info.value.unexpected == ['stages.2.blocks.1.attn.k.weight']


def test_other_eps_warns(recwarn):
    load_pretrained(
        PVTv2('b0', embed_norm_eps=1e-5), hf_model('b0').state_dict()
    )
    messages = [str(w.message) for w in recwarn.list]
    assert any(
        "format 'hf'" in m and 'embed_norm_eps=1e-06' in m for m in messages
    ), messages


def test_convert_weights_round_trip_and_transformers_reads_ours(
    tmp_path, image
):
    """``tools/convert_weights.py`` hf -> ours -> hf (a ``.safetensors`` DST) gives the
    hub file's tensors back exactly (its classifier aside), and transformers'
    ``PvtV2Model.from_pretrained`` reads what ``--to hf`` wrote."""
    from convert_weights import main

    hf = hf_model('b0', seed=3)
    hf.save_pretrained(tmp_path / 'hub')
    src = str(tmp_path / 'hub' / 'model.safetensors')
    main([src, str(tmp_path / 'ours.pth'), '--from', 'hf'])
    converted = read_checkpoint(str(tmp_path / 'ours.pth'))
    assert detect_format(converted) == 'ours'
    (tmp_path / 'out').mkdir()
    dst = str(tmp_path / 'out' / 'model.safetensors')
    main([str(tmp_path / 'ours.pth'), dst, '--to', 'hf'])
    original, back = load_file(src), load_file(dst)
    assert set(back) == {
        k for k in original if not k.startswith('classifier.')
    }
    assert all(torch.equal(v, original[k]) for k, v in back.items())
    hf.config.save_pretrained(tmp_path / 'out')
    reread = transformers.PvtV2Model.from_pretrained(tmp_path / 'out').eval()
    reference = hidden_states(hf, image)
    for a, b in zip(hidden_states(reread, image), reference, strict=True):
        assert torch.equal(a, b)
    with pytest.raises(
        CheckpointFormatError, match=r"is in format 'hf', not 'official'"
    ):
        convert_file(src, str(tmp_path / 'x.pth'), src='official')


def test_safetensors_everywhere(tmp_path):
    """``.safetensors`` read by content too, written only for flat state dicts, and a
    truncated one named by convert_file."""
    state = {'a.weight': torch.arange(6.0).reshape(2, 3)}
    renamed = tmp_path / 'weights.pth'  # safetensors content, another name
    save_file(state, str(renamed))
    assert torch.equal(
        read_checkpoint(str(renamed))['a.weight'], state['a.weight']
    )
    from pvtfpn_mm.weights import save_atomic

    with pytest.raises(ValueError, match=r"x\.safetensors'.*flat dict"):
        save_atomic(
            {'meta': {}, 'state_dict': state}, str(tmp_path / 'x.safetensors')
        )
    bad = tmp_path / 'cut.safetensors'
    save_file({'w': torch.zeros(1000)}, str(bad))
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(
        CheckpointReadError,
        match=re.escape(repr(str(bad))) + r' \(200 bytes\) is a damaged',
    ):
        convert_file(str(bad), str(tmp_path / 'y.pth'))
    assert not osp.exists(tmp_path / 'y.pth')
    # a whole detector (mmdet's layout) in a .safetensors file converts as a whole
    backbone = random_params_(PVTv2('b0'), seed=5).state_dict()
    whole = {
        'backbone.' + k: v.contiguous()
        for k, v in from_ours(backbone, 'mmdet').items()
    }
    whole['neck.lateral_convs.0.conv.weight'] = torch.ones(8, 32, 1, 1)
    save_file(whole, str(tmp_path / 'det.safetensors'))
    layout, count, is_whole = convert_file(
        str(tmp_path / 'det.safetensors'), str(tmp_path / 'det.pth')
    )
    assert (layout, count, is_whole) == ('mmdet', len(backbone) + 1, True)
    written = read_checkpoint(str(tmp_path / 'det.pth'))['state_dict']
    assert all(
        torch.equal(written['backbone.' + k], v) for k, v in backbone.items()
    )


def test_safetensors_url_is_downloaded_once_and_read(tmp_path, monkeypatch):
    """An ``http(s)://...model.safetensors`` URL (the hub's resolve URLs) goes to
    torch.hub's checkpoint folder, as ``load_state_dict_from_url`` files do, and is read
    by safetensors."""
    state = {'w': torch.arange(4.0)}
    served = tmp_path / 'served.safetensors'
    save_file(state, str(served))
    calls = []

    def download(url, dst, progress=True):
        calls.append(url)
        with open(dst, 'wb') as f:
            f.write(served.read_bytes())

    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.setattr(torch.hub, 'download_url_to_file', download)
    url = 'https://huggingface.co/OpenGVLab/pvt_v2_b0/resolve/main/model.safetensors'
    for _ in range(2):
        assert torch.equal(read_checkpoint(url)['w'], state['w'])
    assert calls == [url]
    # so does load_from = such a URL (SafeRunner), on every torch
    from pvtfpn_mm.engine.runner import load_checkpoint_file

    assert torch.equal(load_checkpoint_file(url)['w'], state['w'])
    assert calls == [url]
    # another repo's model.safetensors is another file
    other = url.replace('b0', 'b1')
    read_checkpoint(other)
    assert calls == [url, other]
    cached = os.listdir(tmp_path / 'hub' / 'checkpoints')
    assert len(cached) == 2
    assert all(name.endswith('-model.safetensors') for name in cached)
