"""The ``recipe`` mode of ``tools/benchmark.py``: what the GPU training recipe and each of
its levers buy, per model, against our fp32 config and mmdet's.

    python tools/benchmark.py recipe                  # RetinaNet-b2, Mask R-CNN-b2,
                                                      # 800x1333, batch 2, CUDA
    python tools/benchmark.py recipe --models retinanet-b0 --size 64x64 --batch 1 \\
        --rounds 1 --device cpu                       # the mechanics, in seconds

Candidates of each model, timed in interleaved rounds (A B C, A B C, ...) of the real
training step (``model.train_step``: preprocessing, forward under the optimizer
wrapper's context, losses, backward, the optimizer step), each built as
:class:`~pvtfpn_mm.engine.SafeRunner` builds it (:func:`~pvtfpn_mm.engine.recipe.
apply_gpu_recipe`, :func:`~pvtfpn_mm.engine.recipe.optim_wrapper_for_device`,
:func:`~pvtfpn_mm.engine.amp.keep_fp32_islands`, the channels-last conversion, the
compiled ``train_step``):

``recipe``
    our ``configs/amp/*_amp-1x_coco.py`` config (the fp32 config +
    ``configs/_base_/gpu_recipe.py``),
    with a per-part profile (backbone, neck, heads, loss + assigner, backward, optimizer);
``fp32``
    our fp32 config;
``mmdet fp32`` / ``mmdet amp``
    the reference (:data:`MODELS`: mmdet's own ``configs/pvt`` RetinaNet, or our Mask
    R-CNN config with mmdet's ``PyramidVisionTransformerV2`` + ``FPN``) as mmdet trains
    it, and with mmdet's ``--amp`` (``AmpOptimWrapper``, float16 with dynamic loss
    scaling on CUDA; bfloat16 autocast on the CPU);
``recipe <lever>=<value>``
    the recipe with one lever flipped from the fragment's value (and ``amp`` with the
    other dtype). A flip that changes nothing on this device (``channels_last``,
    ``cudnn_benchmark``, ``compile`` and float16 off CUDA) is listed, not timed. The
    ``compile`` flip is measured last, after every model's other candidates, against
    ``recipe`` and ``fp32`` again (its first steps compile for minutes).

Reported: median ms a step, images/s, the speed-up over ``fp32``, and on CUDA the peak
memory of a step (the candidate's own parameters, gradients and optimizer state plus
the step's peak above what was allocated before it; several models share the GPU, so
this is what one of them alone would need, less the allocator's caching). CPU peak
memory needs a fresh process per candidate (``compare --parts memory``) and is not
reported here. A candidate that fails to build or step is reported with its error.
Images are random, weights the models' own initialization (nothing is downloaded).
"""

import copy
import functools
import gc
import json
import os.path as osp
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .common import (
    PeakMemory,
    add_device_arguments,
    describe_machine,
    device_from_args,
    markdown_table,
    synchronize,
    write_text,
)
from .compare import (
    CLOCKS,
    PAIRS,
    REFERENCE_NAMES,
    PartTimer,
    _median_parts,
    load_text,
    parts_text,
    resolve_config,
    rounds_of,
)

Size = tuple[int, int]

#: The models: name -> (our fp32 config, the reference config, its cfg_options, what
#: the reference is). The recipe config is the fp32 config's twin in ``configs/amp``.
MODELS: dict[str, tuple[str, str, dict, str]] = {
    name: (*PAIRS[name], REFERENCE_NAMES[name])
    for name in ('retinanet-b0', 'retinanet-b2', 'mask-rcnn-b0')
}
MODELS['mask-rcnn-b2'] = (
    'configs/mask_rcnn/mask-rcnn_pvtv2-b2_topdownfpn_1x_coco.py',
    'configs/mask_rcnn/mask-rcnn_pvtv2-b2_topdownfpn_1x_coco.py',
    {
        # mmdet's PyramidVisionTransformerV2 defaults are PVT-v2-b2's
        'model.backbone': dict(
            _delete_=True,
            type='PyramidVisionTransformerV2',
            embed_dims=64,
            num_layers=[3, 4, 6, 3],
            init_cfg=None,
        ),
        'model.neck': dict(
            _delete_=True,
            type='FPN',
            in_channels=[64, 128, 320, 512],
            out_channels=256,
            num_outs=5,
        ),
    },
    "our config with mmdet's PyramidVisionTransformerV2 + mmdet's FPN",
)
#: The levers flipped, in this order (``compile`` last: minutes of compiling).
LEVER_ORDER = (
    'amp',
    'fused_optimizer',
    'channels_last',
    'cudnn_benchmark',
    'with_cp',
    'compile',
)


def recipe_config(fp32_config: str) -> str:
    """The AMP twin (``configs/amp/*_amp-1x_*``) of an fp32 ``_1x_`` config path."""
    name = osp.basename(fp32_config)
    if '_1x_' not in name:
        raise ValueError(f'{fp32_config} is no 1x config with an AMP twin')
    return osp.join('configs', 'amp', name.replace('_1x_', '_amp-1x_'))


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class RecipeCandidate:
    """A config's model and optimizer wrapper, built as :class:`SafeRunner` builds them
    on ``device``, with a batch; :meth:`step` is one training step."""

    def __init__(
        self,
        config: str,
        device: torch.device,
        size: Size,
        batch: int,
        cfg_options: dict | None = None,
        mmdet_amp: bool = False,
    ):
        from mmengine.model import revert_sync_batchnorm
        from mmengine.optim import build_optim_wrapper

        from pvtfpn_mm.engine.amp import keep_fp32_islands, uses_amp
        from pvtfpn_mm.engine.build import (
            build_model_from_config,
            drop_pretrained,
            init_quietly,
            load_model_config,
            task_of,
        )
        from pvtfpn_mm.engine.recipe import (
            apply_gpu_recipe,
            channels_last_applies,
            compile_applies,
            compile_arguments,
            optim_wrapper_for_device,
            recipe_of,
            to_channels_last,
        )

        from .configs import make_batch

        self.device = device
        cfg = load_model_config(resolve_config(config), cfg_options)
        if mmdet_amp:  # what mmdet's tools/train.py --amp does
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        cfg, self.notes = apply_gpu_recipe(cfg)
        recipe = recipe_of(cfg)
        cfg.model = drop_pretrained(cfg.model)
        model = revert_sync_batchnorm(build_model_from_config(cfg))
        init_quietly(model)
        model.to(device)
        wrapper_cfg, notes = optim_wrapper_for_device(
            copy.deepcopy(cfg.optim_wrapper), recipe, device
        )
        self.notes += notes
        self.optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
        self.amp = uses_amp(self.optim_wrapper)
        if self.amp and not mmdet_amp:
            keep_fp32_islands(model)
        self.cudnn_benchmark = bool(
            cfg.get('env_cfg', {}).get('cudnn_benchmark', False)
        )
        self.channels_last = bool(
            recipe and channels_last_applies(recipe, device)
        )
        if self.channels_last:
            to_channels_last(model)
        self.model = model
        self.train_step: Callable = model.train_step
        self.compiled = bool(recipe and compile_applies(recipe, device))
        if self.compiled:
            self.train_step = torch.compile(
                model.train_step, **(compile_arguments(recipe) or {})
            )
        self.data = make_batch(
            model, task_of(cfg), size, batch, train=True, seed=1
        )
        self.batch = batch

    def step(self) -> None:
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        self.model.train()
        self.train_step(copy.copy(self.data), optim_wrapper=self.optim_wrapper)

    def profiled_step(self, timer: PartTimer) -> dict[str, float]:
        """``model.train_step`` split into its parts (the same calls, in order)."""
        model, ow, device, now = (
            self.model,
            self.optim_wrapper,
            self.device,
            timer.now,
        )
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        model.train()
        times: dict[str, float] = {}
        synchronize(device)
        start = now()
        with ow.optim_context(model):
            data = model.data_preprocessor(copy.copy(self.data), True)
            losses = model._run_forward(data, mode='loss')
        loss, _ = model.parse_losses(losses)
        synchronize(device)
        forward = 1000 * (now() - start)
        times.update(timer.take())
        times['loss+assigner'] = forward - sum(times.values())
        start = now()
        ow.backward(loss)
        synchronize(device)
        times['backward'] = 1000 * (now() - start)
        start = now()
        ow.step()
        ow.zero_grad()
        synchronize(device)
        times['optimizer'] = 1000 * (now() - start)
        return times

    def resident_mib(self) -> float:
        """Parameters, buffers, gradients and optimizer state, in MiB."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        tensors += [
            p.grad for p in self.model.parameters() if p.grad is not None
        ]
        for state in self.optim_wrapper.optimizer.state.values():
            tensors += [
                v for v in state.values() if isinstance(v, torch.Tensor)
            ]
        return _nbytes(tensors) / 2**20


def candidate_specs(
    name: str,
    levers: Sequence[str],
    device: torch.device,
    with_reference: bool = True,
) -> list[dict[str, Any]]:
    """The candidates of model ``name``: dicts with ``name``, ``config``, ``options``,
    ``mmdet_amp`` and, for flips that change nothing on ``device``, ``skip`` (why)."""
    from mmengine.config import Config

    ours, reference, ref_options, _ = MODELS[name]
    amp_config = recipe_config(ours)
    fragment = Config.fromfile(resolve_config(amp_config)).gpu_recipe
    specs: list[dict[str, Any]] = [
        dict(name='recipe', config=amp_config, options=None),
        dict(name='fp32', config=ours, options=None),
    ]
    if with_reference:
        specs += [
            dict(name='mmdet fp32', config=reference, options=ref_options),
            dict(
                name='mmdet amp',
                config=reference,
                options=ref_options,
                mmdet_amp=True,
            ),
        ]
    cuda = device.type == 'cuda'
    for lever in LEVER_ORDER:
        if lever not in levers:
            continue
        value = fragment[lever]
        if lever == 'amp':
            flips = [False] if value else ['auto']
            if value:
                flips.append('float16' if value != 'float16' else 'bfloat16')
        elif lever == 'compile':
            flips = [value is False]
        else:
            flips = [not value]
        for flip in flips:
            spec = dict(
                name=f'recipe {lever}={flip}',
                config=amp_config,
                options={f'gpu_recipe.{lever}': flip},
            )
            if not cuda and (
                lever in ('channels_last', 'cudnn_benchmark', 'compile')
                or flip in ('float16', 'bfloat16')
            ):
                spec['skip'] = (
                    f'applies on CUDA only: the same as recipe on {device.type}'
                )
            specs.append(spec)
    return specs


def _build(spec, device, size, batch, echo) -> RecipeCandidate | str:
    try:
        return RecipeCandidate(
            spec['config'],
            device,
            size,
            batch,
            spec.get('options'),
            spec.get('mmdet_amp', False),
        )
    except Exception as error:  # reported, the others go on
        echo(f'    {spec["name"]}: failed to build: {error!r}')
        return f'build: {type(error).__name__}: {error}'


def measure_model(
    name: str,
    device: torch.device,
    size: Size,
    batch: int,
    rounds: int,
    warmup: int = 2,
    levers: Sequence[str] = LEVER_ORDER,
    with_reference: bool = True,
    profile_rounds: int = 3,
    echo: Callable[[str], None] = print,
    clock: str = 'wall',
) -> dict[str, Any]:
    """Every candidate of model ``name`` (see the module doc); one result dict."""
    specs = candidate_specs(name, levers, device, with_reference)
    rows: list[dict[str, Any]] = []
    cands: dict[str, RecipeCandidate] = {}
    for spec in specs:
        row: dict[str, Any] = dict(candidate=spec['name'])
        rows.append(row)
        if 'skip' in spec:
            row['note'] = spec['skip']
            continue
        built = _build(spec, device, size, batch, echo)
        if isinstance(built, str):
            row['error'] = built
            continue
        try:
            for _ in range(
                warmup
            ):  # compiling, cuDNN's search, optimizer state
                built.step()
        except Exception as error:
            echo(f'    {spec["name"]}: failed to step: {error!r}')
            row['error'] = f'step: {type(error).__name__}: {error}'
            continue
        row['amp'] = built.amp
        cands[spec['name']] = built
    times = rounds_of(
        {n: c.step for n, c in cands.items()}, rounds, device, clock, warmup=0
    )
    for row in rows:
        cand = cands.get(row['candidate'])
        if cand is None:
            continue
        ms = statistics.median(times[row['candidate']])
        row.update(ms=ms, images_per_s=1000 * cand.batch / ms)
    fp32 = next((r for r in rows if r['candidate'] == 'fp32'), {})
    for row in rows:
        if 'ms' in row and 'ms' in fp32:
            row['speedup_vs_fp32'] = fp32['ms'] / row['ms']
    if device.type == 'cuda':
        for row in rows:
            cand = cands.get(row['candidate'])
            if cand is None:
                continue
            gc.collect()
            with PeakMemory(device) as peak:
                cand.step()
            row['peak_mib'] = cand.resident_mib() + (peak.mib or 0.0)
    parts = None
    if 'recipe' in cands and profile_rounds > 0:
        recipe = cands['recipe']
        timer = PartTimer(recipe.model, device, clock)
        try:
            parts = _median_parts(
                [recipe.profiled_step(timer) for _ in range(profile_rounds)]
            )
        finally:
            timer.remove()
    result = dict(
        model=name,
        reference=MODELS[name][3],
        size='x'.join(map(str, size)),
        batch=batch,
        rounds=rounds,
        clock=clock,
        load=load_text(),
        rows=rows,
        recipe_parts=parts,
        notes=cands['recipe'].notes if 'recipe' in cands else [],
    )
    echo(
        f'{name} {result["size"]} batch {batch}, {rounds} rounds | {result["load"]}'
    )
    for row in rows:
        echo('    ' + row_text(row))
    if parts:
        echo(f'    recipe per part: {parts_text(parts)}')
    del cands
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return result


def row_text(row: Mapping[str, Any]) -> str:
    text = f'{row["candidate"]}: '
    if 'ms' in row:
        text += f'{row["ms"]:.0f} ms, {row["images_per_s"]:.2f} img/s'
        if 'speedup_vs_fp32' in row:
            text += f', x{row["speedup_vs_fp32"]:.2f} vs fp32'
        if 'peak_mib' in row:
            text += f', peak {row["peak_mib"]:.0f} MiB'
    if 'error' in row:
        text += f'failed ({row["error"][:200]})'
    if 'note' in row:
        text += row['note']
    return text


COLUMNS = {
    'candidate': 'candidate',
    'ms': 'ms / step',
    'images_per_s': 'images / s',
    'speedup_vs_fp32': 'x fp32',
    'peak_mib': 'peak MiB',
    'note': 'note',
}


def markdown(results: Sequence[Mapping[str, Any]], machine: Mapping) -> str:
    lines = [
        f'Training step, {machine["device_name"]} ({machine["device"]}), '
        f'{machine["threads"]} threads, torch {machine["torch"]}, {machine["date"]}',
        '',
    ]
    for result in results:
        rows = [
            dict(r, note=r.get('note') or r.get('error', ''))
            for r in result['rows']
        ]
        lines += [
            f'### {result["model"]}, {result["size"]}, batch {result["batch"]} '
            f'({result["rounds"]} rounds, {result["clock"]} clock, {result["load"]}; '
            f'reference: {result["reference"]})',
            '',
            markdown_table(rows, COLUMNS),
            '',
        ]
        if result['recipe_parts']:
            lines += [
                f'recipe per part: {parts_text(result["recipe_parts"])}',
                '',
            ]
    return '\n'.join(lines)


# --------------------------------------------------------------------------- the CLI


def add_arguments(parser) -> None:
    """The ``recipe`` mode's command-line arguments."""
    parser.add_argument(
        '--models',
        nargs='+',
        default=['retinanet-b2', 'mask-rcnn-b2'],
        choices=list(MODELS),
        help='the models (default: retinanet-b2 mask-rcnn-b2)',
    )
    parser.add_argument(
        '--size',
        default='800x1333',
        help='training images, HxW (default 800x1333)',
    )
    parser.add_argument(
        '--batch', type=int, default=2, help='images a step (default 2)'
    )
    parser.add_argument(
        '--rounds', type=int, default=10, help='timed rounds (default 10)'
    )
    parser.add_argument(
        '--warmup',
        type=int,
        default=2,
        help='untimed steps of each candidate first (default 2)',
    )
    parser.add_argument(
        '--levers',
        nargs='*',
        default=list(LEVER_ORDER),
        choices=LEVER_ORDER,
        help='levers to flip one at a time (default: all; none: just the recipe, fp32 '
        'and the reference)',
    )
    parser.add_argument(
        '--no-reference', action='store_true', help="skip mmdet's models"
    )
    parser.add_argument(
        '--profile-rounds',
        type=int,
        default=3,
        help="per-part profile of the recipe's step: steps (default 3; 0: none)",
    )
    add_device_arguments(parser)
    parser.add_argument(
        '--clock',
        choices=tuple(CLOCKS),
        default='wall',
        help='wall time, or process CPU time (with --threads 1 on a shared machine: '
        'leaves out the time other processes held the core)',
    )
    parser.add_argument('--out-json', default=None, help='every result')
    parser.add_argument('--out-md', default=None, help='Markdown tables')


def run(args) -> list[dict[str, Any]]:
    """Runs the ``recipe`` mode from parsed ``args``; prints one line per candidate."""
    from .configs import parse_size

    for name in ('batch', 'rounds'):
        if getattr(args, name) < 1:
            raise ValueError(
                f'--{name} must be >= 1, got {getattr(args, name)}'
            )
    for name in ('warmup', 'profile_rounds'):
        if getattr(args, name) < 0:
            raise ValueError(
                f'--{name.replace("_", "-")} must be >= 0, got {getattr(args, name)}'
            )
    size = parse_size(args.size)
    assert size is not None
    device = device_from_args(args)
    machine = describe_machine(device)
    echo = functools.partial(print, flush=True)
    echo(
        f"recipe on {machine['device_name']} ({machine['device']}), "
        f"{machine['threads']} threads, torch {machine['torch']}, {args.clock} clock; "
        f'medians of interleaved rounds; {load_text()}'
    )
    # on CUDA, compile last, after every model's other candidates: minutes of compiling
    # that a run cut short should not cost the rest (elsewhere it is not timed at all)
    passes = [list(args.levers)]
    if device.type == 'cuda' and 'compile' in args.levers:
        passes = [
            [lever for lever in args.levers if lever != 'compile'],
            ['compile'],
        ]
    results = []
    for levers in passes:
        for name in args.models:
            results.append(
                measure_model(
                    name,
                    device,
                    size,
                    args.batch,
                    args.rounds,
                    args.warmup,
                    levers,
                    not args.no_reference and levers != ['compile'],
                    args.profile_rounds if levers != ['compile'] else 0,
                    echo,
                    args.clock,
                )
            )
            # written after every model: a run cut short keeps what it measured
            if args.out_json:
                write_text(
                    args.out_json,
                    json.dumps(
                        dict(machine=machine, results=results), indent=1
                    ),
                )
            if args.out_md:
                write_text(args.out_md, markdown(results, machine))
    return results
