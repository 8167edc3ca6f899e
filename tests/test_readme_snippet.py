"""The README's "Using it from your own mm config" snippet works as written."""

import os.path as osp
import re

import torch
from mmengine.config import Config

from pvtfpn_mm.engine.build import build_model_from_config
from pvtfpn_mm.models.backbones import PVTv2

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_own_config_snippet_builds_under_an_mmdet_base(tmp_path):
    text = open(osp.join(REPO, 'README.md'), encoding='utf-8').read()
    section = text.split('## Using it from your own mm config', 1)[1]
    snippet = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    assert '_base_' in snippet and snippet.count('_delete_=True') == 2
    path = tmp_path / 'my_config.py'
    path.write_text(snippet)
    cfg = Config.fromfile(str(path))
    # nothing of ResNet
    assert cfg.model.backbone == dict(
        type='PVTv2',
        arch='b2',
        init_cfg=dict(type='Pretrained', checkpoint='pvt_v2_b2.pth'),
    )
    model = build_model_from_config(cfg).eval()  # building loads no weights
    assert isinstance(model.backbone, PVTv2) and model.backbone.arch == 'b2'
    with torch.no_grad():
        cls_scores, _ = model(torch.rand(1, 3, 64, 64), mode='tensor')
    # P3-P7 from TopDownFPN into mmdet's RetinaHead
    assert len(cls_scores) == 5
