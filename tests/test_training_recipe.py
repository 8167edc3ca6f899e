"""Issue 19 item 2 / issue 20 item 4: the GPU training recipe (``configs/_base_/gpu_recipe.py``,
:mod:`pvtfpn_mm.engine.recipe`) and the AMP variants of the RetinaNet / Mask R-CNN configs.

Fast: the variants are their fp32 configs plus the recipe; each lever's resolution and
its CPU behaviour (it applies on CUDA only, or is refused up front with a message naming
it); the CUDA branches with the device checks mocked; a real (tiny) CPU run with every
lever on.

Slow: toy trainings (96 px, seeded) of the AMP variants against their fp32 configs on the
CPU (bfloat16 autocast), within the tolerance stated at :data:`CURVE_TOLERANCE`; the
``recipe`` benchmark at a tiny size (tests/test_benchmark_recipe.py).
"""

import ast
import glob
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS

import pvtfpn_mm  # noqa: F401  (registers the engine)
from pvtfpn_mm.engine import CPUAmpOptimWrapper, SafeRunner, amp
from pvtfpn_mm.engine import recipe as recipe_module
from pvtfpn_mm.engine.recipe import (
    LEVERS,
    ChannelsLastHook,
    apply_gpu_recipe,
    fused_optimizer_config,
    fused_supported_devices,
    match_state_layout,
    recipe_of,
    to_channels_last,
)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FRAGMENT = osp.join(ROOT, 'configs', '_base_', 'gpu_recipe.py')
VARIANTS = sorted(glob.glob(osp.join(ROOT, 'configs', 'amp', '*.py')))


def parent_of(variant: str) -> str:
    """The fp32 config of an AMP variant (configs/amp/X_amp-1x_coco.py)."""
    name = osp.basename(variant).replace('_amp-1x_', '_1x_')
    family = 'retinanet' if name.startswith('retinanet') else 'mask_rcnn'
    return osp.join(ROOT, 'configs', family, name)


# ----------------------------------------------------------------- the configs


def test_every_1x_detector_config_has_an_amp_variant():
    parents = sorted(
        glob.glob(osp.join(ROOT, 'configs', 'retinanet', '*_1x_coco.py'))
        + glob.glob(osp.join(ROOT, 'configs', 'mask_rcnn', '*_1x_coco.py'))
    )
    assert len(parents) == 14
    assert sorted(parent_of(v) for v in VARIANTS) == parents


def test_variants_are_their_fp32_config_plus_the_fragment():
    """Each variant file is exactly ``_base_ = [its fp32 config, the fragment]`` (read
    without mmengine: cheap); two of them loaded: the fp32 config plus gpu_recipe."""
    for variant in VARIANTS:
        tree = ast.parse(open(variant).read())
        assert len(tree.body) == 1, variant
        (assign,) = tree.body
        assert isinstance(assign, ast.Assign)
        assert [t.id for t in assign.targets] == ['_base_']
        parent = osp.relpath(parent_of(variant), osp.dirname(variant))
        assert ast.literal_eval(assign.value) == [
            parent,
            '../_base_/gpu_recipe.py',
        ], variant


@pytest.mark.parametrize(
    'name',
    [
        'retinanet_pvtv2-b0_topdownfpn_amp-1x_coco.py',
        'mask-rcnn_pvtv2-b2_topdownfpn_amp-1x_coco.py',
    ],
)
def test_a_variant_loads_as_fp32_config_plus_recipe(name):
    fragment = Config.fromfile(FRAGMENT).to_dict()
    assert set(fragment) == {'gpu_recipe'}  # sits in any _base_ list
    assert set(fragment['gpu_recipe']) == set(LEVERS)
    variant = osp.join(ROOT, 'configs', 'amp', name)
    mine = Config.fromfile(variant).to_dict()
    assert mine.pop('gpu_recipe') == fragment['gpu_recipe']
    assert mine == Config.fromfile(parent_of(variant)).to_dict()


def test_variants_in_the_index_as_their_fp32_config():
    import yaml

    with open(osp.join(ROOT, 'model-index.yml')) as f:
        assert 'configs/amp/metafile.yml' in yaml.safe_load(f)['Import']
    with open(osp.join(ROOT, 'configs', 'amp', 'metafile.yml')) as f:
        models = yaml.safe_load(f)['Models']
    assert sorted(m['Config'] for m in models) == sorted(
        osp.relpath(v, ROOT) for v in VARIANTS
    )
    parents = {}
    for folder in ('retinanet', 'mask_rcnn'):
        with open(osp.join(ROOT, 'configs', folder, 'metafile.yml')) as f:
            parents.update(
                {m['Config']: m for m in yaml.safe_load(f)['Models']}
            )
    for mine in models:
        parent = parents[mine['Metadata']['Mixed Precision Of']]
        assert parent['Config'] == osp.relpath(parent_of(mine['Config']), ROOT)
        assert 'Results' not in mine  # no metrics of its own
        assert mine['Weights'] is None
        for key in ('Parameters', 'Epochs', 'Batch Size', 'Pretrained'):
            assert mine['Metadata'][key] == parent['Metadata'][key], (
                mine['Name'],
                key,
            )


# ------------------------------------------------------------------ the levers


def test_no_recipe_changes_nothing():
    cfg = dict(optim_wrapper=dict(optimizer=dict(type='AdamW')))
    assert recipe_of(cfg) is None
    assert apply_gpu_recipe(cfg) == (cfg, [])


@pytest.mark.parametrize(
    'recipe, message',
    [
        (dict(amp='fp16'), "gpu_recipe.amp must be False, 'auto'.*got 'fp16'"),
        (dict(turbo=True), r"unknown lever\(s\) \['turbo'\]"),
        (
            dict(fused_optimizer='yes'),
            "gpu_recipe.fused_optimizer must be True or False, got 'yes'",
        ),
        (
            dict(channels_last=1),
            'gpu_recipe.channels_last must be True or False, got 1',
        ),
        (
            dict(cudnn_benchmark=None),
            'gpu_recipe.cudnn_benchmark must be True or False, got None',
        ),
        (
            dict(with_cp='on'),
            "gpu_recipe.with_cp must be True or False, got 'on'",
        ),
        (dict(compile='max'), "gpu_recipe.compile must be True.*got 'max'"),
    ],
)
def test_bad_levers_are_refused_by_name(recipe, message):
    with pytest.raises(ValueError, match=message):
        recipe_of(dict(gpu_recipe=recipe))


def test_recipe_must_be_a_dict():
    with pytest.raises(TypeError, match="gpu_recipe must be a dict.*got 'on'"):
        recipe_of(dict(gpu_recipe='on'))


def test_left_out_levers_are_off():
    assert recipe_of(dict(gpu_recipe=dict(amp='auto'))) == {
        **LEVERS,
        'amp': 'auto',
    }
    assert all(v is False for v in LEVERS.values())


def det_cfg(**recipe):
    return Config(
        dict(
            default_scope='mmdet',
            model=dict(backbone=dict(type='PVTv2', arch='b0')),
            optim_wrapper=dict(
                type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4)
            ),
            custom_hooks=[dict(type='StrictLoadHook')],
            env_cfg=dict(cudnn_benchmark=False),
            gpu_recipe=recipe,
        )
    )


def test_amp_lever_makes_an_amp_optim_wrapper():
    cfg, notes = apply_gpu_recipe(det_cfg(amp='auto'))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'auto'
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4)
    assert any("amp='auto'" in n for n in notes)
    # the input is left as it was
    assert det_cfg(amp='auto').optim_wrapper.type == 'OptimWrapper'


def test_amp_lever_refuses_another_wrapper_or_dtype():
    cfg = det_cfg(amp='auto')
    cfg.optim_wrapper.type = 'MyWrapper'
    with pytest.raises(ValueError, match="optim_wrapper.type is 'MyWrapper'"):
        apply_gpu_recipe(cfg)
    cfg = det_cfg(amp='bfloat16')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.dtype = 'float16'
    with pytest.raises(
        ValueError, match="amp='bfloat16' but optim_wrapper.dtype='float16'"
    ):
        apply_gpu_recipe(cfg)


@pytest.mark.parametrize(
    'wrapper', [dict(type='AmpOptimWrapper'), dict(type='CPUAmpOptimWrapper')]
)
def test_amp_lever_with_the_amp_flag(wrapper):
    """``tools/train.py CONFIG --amp`` (on a GPU, and without one) with the recipe."""
    cfg = det_cfg(amp='auto')
    cfg.optim_wrapper.update(wrapper, loss_scale='dynamic')
    out, _ = apply_gpu_recipe(cfg)
    assert out.optim_wrapper.type == 'AmpOptimWrapper'
    assert out.optim_wrapper.dtype == 'auto'
    assert out.optim_wrapper.loss_scale == 'dynamic'


def test_config_levers_and_idempotence():
    cfg, _ = apply_gpu_recipe(
        det_cfg(
            amp='auto', channels_last=True, cudnn_benchmark=True, with_cp=True
        )
    )
    assert cfg.env_cfg.cudnn_benchmark is True
    assert cfg.model.backbone.with_cp is True
    assert [h['type'] for h in cfg.custom_hooks] == [
        'StrictLoadHook',
        'ChannelsLastHook',
    ]
    again, _ = apply_gpu_recipe(cfg)  # a dumped config trained again
    assert again.to_dict() == cfg.to_dict()


def test_channels_last_only_under_amp():
    cfg, notes = apply_gpu_recipe(det_cfg(channels_last=True))
    assert [h['type'] for h in cfg.custom_hooks] == ['StrictLoadHook']
    assert any('channels_last applies under AMP only' in n for n in notes)


def test_with_cp_refused_for_a_backbone_without_it():
    cfg = det_cfg(with_cp=True)
    cfg.model.backbone = dict(type='PyramidVisionTransformerV2')
    with pytest.raises(
        ValueError,
        match="backbone 'PyramidVisionTransformerV2' has no with_cp argument",
    ):
        apply_gpu_recipe(cfg)


def test_compile_in_two_places_is_refused():
    cfg = det_cfg(compile=True)
    cfg.compile = dict(backend='eager')
    with pytest.raises(ValueError, match='set torch.compile in one place'):
        apply_gpu_recipe(cfg)


# ------------------------------------------------------------------------- AMP


def fake_machine(monkeypatch, accelerator, device='cuda', bf16=False):
    monkeypatch.setattr(amp, 'accelerator_available', lambda: accelerator)
    monkeypatch.setattr(amp, 'get_device', lambda: device)
    monkeypatch.setattr(amp, 'cuda_bf16_supported', lambda: bf16)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda *a: 'Tesla T4')


def amp_wrapper(**kwargs):
    return dict(
        type='AmpOptimWrapper', optimizer=dict(type='AdamW', lr=1), **kwargs
    )


def test_auto_dtype_without_gpu_is_cpu_bfloat16(monkeypatch):
    fake_machine(monkeypatch, accelerator=False, device='cpu')
    out, note = amp.resolve_amp_config(amp_wrapper(dtype='auto'))
    assert out == dict(
        type='CPUAmpOptimWrapper', optimizer=dict(type='AdamW', lr=1)
    )
    assert 'bfloat16 autocast on the CPU' in note


def test_auto_dtype_on_a_bfloat16_gpu(monkeypatch):
    fake_machine(monkeypatch, accelerator=True, bf16=True)
    out, note = amp.resolve_amp_config(
        amp_wrapper(dtype='auto', loss_scale='dynamic')
    )
    assert out['type'] == 'AmpOptimWrapper'
    assert out['dtype'] == 'bfloat16'
    assert out['loss_scale'] == dict(
        enabled=False
    )  # bfloat16 needs no scaling
    assert 'no loss scaling' in note


def test_auto_dtype_on_an_older_gpu_is_float16_with_dynamic_scaling(
    monkeypatch,
):
    fake_machine(monkeypatch, accelerator=True, bf16=False)
    out, note = amp.resolve_amp_config(amp_wrapper(dtype='auto'))
    assert out['dtype'] == 'float16'
    assert 'loss_scale' not in out  # mmengine's default: dynamic
    assert "loss_scale='dynamic'" in note


def test_bfloat16_refused_up_front_on_a_gpu_without_it(monkeypatch):
    fake_machine(monkeypatch, accelerator=True, bf16=False)
    with pytest.raises(
        ValueError, match=r"dtype='bfloat16', but this GPU \(Tesla T4\)"
    ):
        amp.resolve_amp_config(amp_wrapper(dtype='bfloat16'))


def test_float16_on_the_cpu_is_refused_by_the_wrapper(monkeypatch):
    fake_machine(monkeypatch, accelerator=False, device='cpu')
    out, _ = amp.resolve_amp_config(amp_wrapper(dtype='float16'))
    with pytest.raises(ValueError, match="bfloat16 only, got dtype='float16'"):
        CPUAmpOptimWrapper(
            optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1),
            dtype=out['dtype'],
        )


def test_cuda_bf16_check_counts_native_support_only(monkeypatch):
    calls = []

    def new_torch(including_emulation=True):
        calls.append(including_emulation)
        return including_emulation  # an emulating GPU: True only when counted

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', new_torch)
    assert amp.cuda_bf16_supported() is False and calls == [False]
    # torch < 2.3: no argument, native support only
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: True)
    assert amp.cuda_bf16_supported() is True


def rpn_and_roi_extractor():
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    rpn = DET_MODELS.build(
        dict(
            type='RPNHead',
            in_channels=8,
            feat_channels=8,
            anchor_generator=dict(
                type='AnchorGenerator',
                scales=[8],
                ratios=[1.0],
                strides=[8],
            ),
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0.0] * 4,
                target_stds=[1.0] * 4,
            ),
        )
    )
    extractor = DET_MODELS.build(
        dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=2, sampling_ratio=0),
            out_channels=8,
            featmap_strides=[8],
        )
    )
    return nn.ModuleDict(dict(rpn_head=rpn, roi_extractor=extractor))


def test_fp32_islands_let_mmdet_parts_run_under_bfloat16():
    from mmengine.config import ConfigDict

    model = rpn_and_roi_extractor()
    # the neck's outputs under autocast
    feats = (torch.randn(1, 8, 16, 16).bfloat16(),)
    rois = torch.tensor([[0.0, 8.0, 8.0, 64.0, 64.0]])
    proposal_cfg = ConfigDict(
        nms_pre=50, max_per_img=10, nms=dict(type='nms', iou_threshold=0.7)
    )

    def run():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            roi_feats = model.roi_extractor(feats, rois)
            cls, reg = model.rpn_head(feats)
            proposals = model.rpn_head.predict_by_feat(
                cls,
                reg,
                batch_img_metas=[dict(img_shape=(128, 128))],
                cfg=proposal_cfg,
            )
        return roi_feats, proposals

    # mmcv's RoIAlign has no bfloat16 kernel (and its NMS takes float32 boxes only)
    with pytest.raises(RuntimeError, match='BFloat16'):
        run()
    assert amp.keep_fp32_islands(model) == ['rpn_head', 'roi_extractor']
    roi_feats, proposals = run()
    assert roi_feats.dtype == torch.bfloat16  # back to the features' dtype
    assert roi_feats.shape == (1, 8, 2, 2)
    assert proposals[0].bboxes.dtype == torch.float32
    # outside autocast: the methods as they were
    plain = model.roi_extractor((feats[0].float(),), rois)
    assert plain.dtype == torch.float32
    assert torch.allclose(plain, roi_feats.float(), rtol=0.02, atol=0.02)
    assert amp.keep_fp32_islands(model) == []  # wrapped once


# ------------------------------------------------------------ fused optimizer


def test_fused_on_cuda(monkeypatch):
    monkeypatch.setattr(
        recipe_module, 'fused_supported_devices', lambda: ('cuda',)
    )
    out, note = fused_optimizer_config(dict(type='AdamW', lr=1), 'cuda')
    assert out == dict(type='AdamW', lr=1, fused=True)
    assert "AdamW(fused=True) on 'cuda'" in note


def test_fused_falls_back_where_torch_has_no_kernel(monkeypatch):
    """torch 2.1 has fused Adam / AdamW for CUDA only."""
    monkeypatch.setattr(
        recipe_module, 'fused_supported_devices', lambda: ('cuda',)
    )
    out, note = fused_optimizer_config(dict(type='AdamW', lr=1), 'cpu')
    assert out == dict(type='AdamW', lr=1)
    assert "no fused AdamW for 'cpu'" in note and "torch's default" in note


@pytest.mark.parametrize(
    'optimizer',
    [
        dict(type='SGD', lr=1),
        dict(type='AdamW', lr=1, foreach=True),
        dict(type='AdamW', lr=1, fused=False),
    ],
)
def test_fused_leaves_other_optimizers_and_explicit_choices(optimizer):
    out, note = fused_optimizer_config(optimizer, 'cuda')
    assert out == optimizer and 'left as it is' in note


def test_fused_on_this_cpu_matches_torch():
    out, _ = fused_optimizer_config(dict(type='AdamW'), 'cpu')
    assert out.get('fused', False) is ('cpu' in fused_supported_devices())
    # torch >= 2.4 has a fused CPU AdamW (the stack of this machine, 2.14, has)
    major, minor = (int(x) for x in torch.__version__.split('.')[:2])
    assert ('cpu' in fused_supported_devices()) is ((major, minor) >= (2, 4))


# -------------------------------------------------------------- channels-last


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3)
        self.neck = nn.Conv2d(4, 4, 1)
        self.bbox_head = nn.Sequential(nn.Conv2d(4, 4, 3), nn.GroupNorm(2, 4))


def test_to_channels_last_converts_neck_and_heads_in_place():
    model = Detector()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()  # state in the old layout
    params = list(model.parameters())
    assert to_channels_last(model) == ['neck', 'bbox_head']
    assert list(model.parameters()) == params  # the same objects
    cl = torch.channels_last
    assert model.neck.weight.is_contiguous(memory_format=cl)
    assert model.bbox_head[0].weight.is_contiguous(memory_format=cl)
    assert not model.backbone.weight.is_contiguous(memory_format=cl)
    assert match_state_layout(optimizer) == 4  # exp_avg(_sq) of the 2 convs
    for p in params:
        for value in optimizer.state[p].values():
            if value.dim():
                assert value.stride() == p.stride()
    assert match_state_layout(optimizer) == 0


class FakeRunner:
    def __init__(self, model, optim_wrapper=None):
        self.model, self.optim_wrapper = model, optim_wrapper
        self.lines = []
        self.logger = type(
            'L', (), {'info': lambda _, line: self.lines.append(line)}
        )()


def test_channels_last_hook_on_cpu_does_nothing():
    model = Detector()
    runner = FakeRunner(model)
    ChannelsLastHook().before_train(runner)
    assert model.neck.weight.is_contiguous()
    assert 'the model is on cpu, not CUDA' in runner.lines[0]


def test_channels_last_hook_on_cuda(monkeypatch):
    from mmengine.optim import OptimWrapper

    monkeypatch.setattr(
        recipe_module, 'model_device', lambda m: torch.device('cuda')
    )
    model = Detector()
    runner = FakeRunner(
        model, OptimWrapper(torch.optim.AdamW(model.parameters()))
    )
    ChannelsLastHook(parts=['neck']).before_train(runner)
    assert model.neck.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.bbox_head[0].weight.is_contiguous()
    assert 'neck in channels-last memory format' in runner.lines[0]


def test_channels_last_hook_parts_must_be_names():
    with pytest.raises(TypeError, match="got 'neck'"):
        ChannelsLastHook(parts='neck')


# ------------------------------------------------------ a run on the CPU (real)


@MODELS.register_module(name='RecipeTestConvModel', force=True)
class TinyConvModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3, padding=1)
        self.neck = nn.Conv2d(4, 4, 3, padding=1)
        self.neck_dtypes = []

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.neck(self.backbone(inputs))
        self.neck_dtypes.append(out.dtype)
        if mode == 'loss':
            return dict(
                loss=(out.float().mean(dim=(1, 2, 3)) - targets).pow(2).mean()
            )
        return out


@DATASETS.register_module(name='RecipeTestImages', force=True)
class Images(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(i))
        return dict(inputs=x, targets=x.mean())


def tiny_cfg(work_dir, **recipe):
    return dict(
        model=dict(type='RecipeTestConvModel'),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dict(type='RecipeTestImages'),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0,
            collate_fn=dict(type='default_collate'),
        ),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        default_hooks=dict(checkpoint=None),
        env_cfg=dict(cudnn_benchmark=False),
        default_scope='mmengine',
        experiment_name=f'recipe_{work_dir.name}',
        gpu_recipe=recipe,
    )


def train_tiny(tmp_path, monkeypatch, cfg=None, **recipe):
    # cudnn_benchmark=True sets a process-wide flag: restored after the test
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)
    runner = SafeRunner.from_cfg(cfg or tiny_cfg(tmp_path, **recipe))
    lines = []
    monkeypatch.setattr(
        runner.logger, 'info', lambda msg, *a, **k: lines.append(str(msg))
    )
    runner.train()
    return runner, '\n'.join(lines)


ALL_ON = dict(
    amp='auto',
    fused_optimizer=True,
    channels_last=True,
    cudnn_benchmark=True,
    compile=True,
    with_cp=False,  # TinyConvModel has no backbone config
)


def test_every_lever_leaves_a_cpu_run_working(tmp_path, monkeypatch):
    runner, log = train_tiny(tmp_path, monkeypatch, **ALL_ON)
    model = runner.model
    # amp: bfloat16 autocast in the forward, fp32 master weights
    assert isinstance(runner.optim_wrapper, CPUAmpOptimWrapper)
    assert model.neck_dtypes == [torch.bfloat16] * 2
    assert model.neck.weight.dtype == torch.float32
    # fused AdamW where torch has it for the CPU (torch >= 2.4), else the default
    fused = runner.optim_wrapper.optimizer.defaults.get('fused')
    assert bool(fused) is ('cpu' in fused_supported_devices())
    assert 'gpu_recipe: fused_optimizer' in log
    # channels_last: CUDA only
    assert 'ChannelsLastHook: the model is on cpu, not CUDA' in log
    assert model.neck.weight.is_contiguous()
    # compile: CUDA only
    assert 'compile is for CUDA; the model is on cpu' in log
    assert not hasattr(model.train_step, '_torchdynamo_orig_callable')
    assert model.train_step.__func__ is BaseModel.train_step
    # cudnn_benchmark: the env_cfg flag (no-op on the CPU)
    assert torch.backends.cudnn.benchmark is True


def test_float16_on_the_cpu_stops_before_training(tmp_path, monkeypatch):
    runner = SafeRunner.from_cfg(tiny_cfg(tmp_path, amp='float16'))
    with pytest.raises(
        ValueError,
        match="CPU autocast runs in bfloat16 only, got dtype='float16'",
    ):
        runner.train()
    assert runner.model.neck_dtypes == []  # not one step


def test_amp_flag_with_auto_dtype_on_the_cpu(tmp_path, monkeypatch):
    """``tools/train.py --amp --cfg-options optim_wrapper.dtype=auto`` without a GPU."""
    cfg = tiny_cfg(tmp_path)
    cfg['optim_wrapper'].update(type='CPUAmpOptimWrapper', dtype='auto')
    runner, _ = train_tiny(tmp_path, monkeypatch, cfg=cfg)
    assert runner.model.neck_dtypes == [torch.bfloat16] * 2


def test_fused_fallback_run_on_the_cpu(tmp_path, monkeypatch):
    """What torch 2.1 does on the CPU: no fused kernel, torch's default AdamW."""
    monkeypatch.setattr(
        recipe_module, 'fused_supported_devices', lambda: ('cuda',)
    )
    runner, log = train_tiny(tmp_path, monkeypatch, fused_optimizer=True)
    assert not runner.optim_wrapper.optimizer.defaults.get('fused')
    assert "no fused AdamW for 'cpu'" in log
    assert runner.model.neck_dtypes == [torch.float32] * 2  # amp off


def test_compile_on_cuda_compiles_train_step_dynamic(tmp_path, monkeypatch):
    from pvtfpn_mm.engine import runner as runner_module

    runner = SafeRunner.from_cfg(
        tiny_cfg(tmp_path, compile=dict(mode='max-autotune'))
    )
    calls = []

    def fake_compile(fn, **kwargs):
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(
        runner_module, 'model_device', lambda m: torch.device('cuda')
    )
    monkeypatch.setattr(torch, 'compile', fake_compile)
    runner._maybe_compile('train_step')
    assert calls == [dict(dynamic=True, mode='max-autotune')]


# ------------------------------------------- toy trainings: AMP against fp32 (slow)

#: The tolerance of an AMP loss curve against fp32's (same seed, data order and initial
#: weights; only the arithmetic differs): the first iteration's loss (the same weights
#: and batch) within 2 %, and the 5-iteration moving average of the loss within 15 % of
#: fp32's at every iteration. Measured on the CPU (bfloat16 autocast, 2 threads; torch
#: 2.14 / 2.1): first 0.12 % / 0.12 % and moving average 3.0 % / 3.8 % (RetinaNet-b0, 24
#: iterations), 0.74 % / 0.22 % and 6.2 % / 6.4 % (Mask R-CNN-b0, 20); see
#: docs/training_recipe.md.
CURVE_TOLERANCE = dict(first=0.02, smoothed=0.15, window=5)


def curve_gap(fp32, other, window=CURVE_TOLERANCE['window']):
    """(relative difference of the first losses, largest relative difference of the
    moving averages) of two loss curves."""
    fp32, other = np.asarray(fp32, float), np.asarray(other, float)
    kernel = np.ones(window) / window
    a = np.convolve(fp32, kernel, 'valid')
    b = np.convolve(other, kernel, 'valid')
    return (
        abs(other[0] - fp32[0]) / fp32[0],
        float(np.max(np.abs(b - a) / a)),
    )


def test_curve_gap_tells_close_from_apart():
    rng = np.random.default_rng(0)
    base = 2.0 * np.exp(-np.arange(40) / 20) + 0.1 * rng.random(40)
    first, smoothed = curve_gap(
        base, base * (1 + 0.02 * rng.standard_normal(40))
    )
    assert first < CURVE_TOLERANCE['first'] * 5
    assert smoothed < CURVE_TOLERANCE['smoothed']
    # a run that learns at another pace leaves the tolerance
    slower = 2.0 * np.exp(-np.arange(40) / 60)
    assert curve_gap(base, slower)[1] > CURVE_TOLERANCE['smoothed']


TOY_CONFIG = """
_base_ = '{base}'
data_root = '{root}/coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'))
model = dict(backbone=dict(init_cfg=None, drop_path_rate=0.0), {model})
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask={mask}),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=train_pipeline,
    ),
)
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters})
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr=3e-4), clip_grad=dict(max_norm=10))
default_hooks = dict(logger=dict(type='LoggerHook', interval=10), checkpoint=None)
log_processor = dict(by_epoch=False)
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
randomness = dict(seed=0)
"""
#: The toy models: the configs' detectors with the quickstart's small neck and heads
#: (64 channels; RetinaNet on P3-P5 with anchors for 21-43 px objects; Mask R-CNN with
#: fewer sampled anchors, proposals and RoIs), so that a CPU iteration takes ~0.1 s.
TOY_MODELS = {
    'retinanet': (
        "neck=dict(out_channels=64, start_level=1, num_outs=3, extra_source='input'),"
        'bbox_head=dict(num_classes=3, in_channels=64, feat_channels=64, '
        'stacked_convs=2, anchor_generator=dict(octave_base_scale=3, '
        'scales_per_octave=2, strides=[8, 16, 32]))',
        False,
        24,
    ),
    'mask-rcnn': (
        'neck=dict(out_channels=64), '
        'rpn_head=dict(in_channels=64, feat_channels=64), '
        'roi_head=dict(bbox_roi_extractor=dict(out_channels=64), '
        'bbox_head=dict(num_classes=3, in_channels=64, fc_out_channels=256), '
        'mask_roi_extractor=dict(out_channels=64), '
        'mask_head=dict(num_classes=3, in_channels=64, conv_out_channels=64)), '
        'train_cfg=dict(rpn=dict(sampler=dict(num=64)), '
        'rpn_proposal=dict(nms_pre=200, max_per_img=100), '
        'rcnn=dict(sampler=dict(num=64)))',
        True,
        20,
    ),
}


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    from pvtfpn_tools.toy_data import write_toy_data

    root = str(tmp_path_factory.mktemp('toy'))
    write_toy_data(
        root, num_train=16, num_val=2, img_size=96, seed=0, formats=['coco']
    )
    return root


class NeckDtypes(Hook):
    """Records the dtype of the neck's first output in every forward."""

    def __init__(self):
        self.dtypes = []

    def before_train(self, runner):
        from pvtfpn_mm.engine.strict_load import unwrap_model

        unwrap_model(runner.model).neck.register_forward_hook(
            lambda module, args, out: self.dtypes.append(out[0].dtype)
        )


def toy_training(tmp_path, toy, config, family):
    from mmengine.registry import RUNNERS

    from pvtfpn_mm.engine import tasks

    model, mask, iters = TOY_MODELS[family]
    name = osp.basename(config)[:-3]
    path = tmp_path / f'toy_{name}.py'
    path.write_text(
        TOY_CONFIG.format(
            base=config, root=toy, model=model, mask=mask, iters=iters
        )
    )
    cfg = tasks.load_config(str(path), work_dir=str(tmp_path / name))
    runner = RUNNERS.build(cfg)
    dtypes = NeckDtypes()
    runner.register_hook(dtypes)
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    return runner, np.asarray(losses, float), dtypes.dtypes


@pytest.mark.slow
@pytest.mark.parametrize(
    'variant',
    [
        'retinanet_pvtv2-b0_topdownfpn_amp-1x_coco.py',
        'mask-rcnn_pvtv2-b0_topdownfpn_amp-1x_coco.py',
    ],
)
def test_amp_variant_trains_within_tolerance_of_fp32(tmp_path, toy, variant):
    family = variant.split('_')[0]
    variant = osp.join(ROOT, 'configs', 'amp', variant)
    fp32_run, fp32, fp32_dtypes = toy_training(
        tmp_path, toy, parent_of(variant), family
    )
    amp_run, mixed, amp_dtypes = toy_training(tmp_path, toy, variant, family)
    iters = TOY_MODELS[family][2]
    assert len(fp32) == len(mixed) == iters
    # the AMP path ran: bfloat16 autocast in every forward; fp32 without
    assert isinstance(amp_run.optim_wrapper, CPUAmpOptimWrapper)
    assert amp_dtypes == [torch.bfloat16] * iters
    assert fp32_dtypes == [torch.float32] * iters
    assert type(fp32_run.optim_wrapper).__name__ == 'OptimWrapper'
    # fp32 learned (else two flat curves would agree trivially)
    kernel = np.ones(5) / 5
    smooth = np.convolve(fp32, kernel, 'valid')
    assert smooth[-1] < 0.85 * smooth[0], fp32
    first, smoothed = curve_gap(fp32, mixed)
    np.set_printoptions(precision=3, linewidth=150)
    report = (
        f'fp32 {fp32}\namp  {mixed}\nfirst {first:.4f} smoothed {smoothed:.4f}'
    )
    print(report)
    assert first < CURVE_TOLERANCE['first'], report
    assert smoothed < CURVE_TOLERANCE['smoothed'], report
