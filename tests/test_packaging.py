"""The package as users install it.

* ``pip install .`` into this stack's environment installs pvtfpn_mm and nothing else:
  install_requires / extras are satisfied by the tested stacks, so torch and mmcv are
  never upgraded or replaced (pip's resolver, offline dry run).
* A non-editable install (the wheel, into a folder of its own) carries the configs, tools
  and model index in OpenMMLab's ``pvtfpn_mm/.mim`` layout, and from there -- no checkout
  on the path -- ``mim search pvtfpn_mm`` lists every config, mmengine's inferencer
  lookup and ours find them by name, and ``mim train pvtfpn_mm <config name>`` trains.
* So does this stack's editable install (``pip install -e .``: ``pvtfpn_mm/.mim`` links
  in the checkout, found by mim through the install's metadata; see setup.py): ``mim
  search``, ``mim train`` and ``mim test`` by name, run from outside the checkout.
"""

import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import zipfile

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
pytestmark = pytest.mark.slow
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in osp.relpath(p, ROOT).split(osp.sep)
)
NAMES = {osp.basename(p)[:-3] for p in CONFIGS}


def run(cmd, cwd=ROOT, env=None, timeout=900):
    env = dict(
        os.environ if env is None else env, OMP_NUM_THREADS='1', COLUMNS='400'
    )
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f'{cmd} failed ({proc.returncode}):\n{proc.stdout[-6000:]}'
    )
    return proc.stdout


def pip(*args, **kwargs):
    return run(
        [sys.executable, '-m', 'pip', '--disable-pip-version-check', *args],
        **kwargs,
    )


@pytest.mark.parametrize(
    'target',
    [['.'], ['-e', '.'], ['.[mmdet,mmseg,mmpretrain]'], ['.[tests]']],
)
def test_install_changes_nothing_in_this_stack(tmp_path, target):
    """Offline (--no-index): anything pip wanted to add or upgrade would fail or be listed."""
    report = tmp_path / 'report.json'
    pip(
        'install',
        '--dry-run',
        '--no-index',
        '--no-build-isolation',
        '--report',
        str(report),
        *target,
    )
    with open(report) as f:
        installs = [i['metadata']['name'] for i in json.load(f)['install']]
    assert installs == ['pvtfpn_mm'] or installs == ['pvtfpn-mm'], installs


def _editable_checkout():
    """The checkout this stack's pvtfpn_mm is editable-installed from (PEP 610's
    direct_url.json), or None."""
    from importlib.metadata import distributions

    # the installed one: the checkout's own pvtfpn_mm.egg-info is on the path too
    for dist in distributions(name='pvtfpn_mm'):
        info = json.loads(dist.read_text('direct_url.json') or '{}')
        if info.get('dir_info', {}).get('editable'):
            return info['url'].removeprefix('file://')
    return None


@pytest.fixture(scope='module', params=['wheel', 'editable'])
def installed(request, tmp_path_factory):
    """``wheel``: the wheel built from this checkout, installed (without dependencies)
    into a folder. ``editable``: this stack's own ``pip install -e .`` of this checkout
    (tools/setup_env.sh), used from outside it."""
    tmp = tmp_path_factory.mktemp('pkg')
    if request.param == 'editable':
        if _editable_checkout() != ROOT:
            pytest.skip('this stack has no editable install of this checkout')
        env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
        return dict(
            kind='editable',
            package=osp.join(ROOT, 'pvtfpn_mm'),
            env=env,
            cwd=str(tmp),
        )
    pip(
        'wheel',
        '--no-deps',
        '--no-build-isolation',
        '-w',
        str(tmp / 'dist'),
        ROOT,
    )
    wheel = glob.glob(str(tmp / 'dist' / 'pvtfpn_mm-*.whl'))
    assert len(wheel) == 1, wheel
    site = tmp / 'site'
    pip('install', '--no-deps', '--no-index', '--target', str(site), wheel[0])
    env = dict(os.environ, PYTHONPATH=str(site))
    return dict(
        kind='wheel',
        wheel=wheel[0],
        site=str(site),
        package=str(site / 'pvtfpn_mm'),
        env=env,
        cwd=str(tmp),
    )


def _wheel_only(installed):
    if installed['kind'] != 'wheel':
        pytest.skip('about the wheel')


def test_wheel_carries_the_mim_files(installed):
    _wheel_only(installed)
    with zipfile.ZipFile(installed['wheel']) as z:
        names = set(z.namelist())
    assert 'pvtfpn_mm/.mim/model-index.yml' in names
    assert (
        'pvtfpn_mm/.mim/tools/train.py' in names
        and 'pvtfpn_mm/.mim/tools/test.py' in names
    )
    for path in CONFIGS:
        assert f'pvtfpn_mm/.mim/{path}' in names, path
    for path in glob.glob(
        osp.join(ROOT, 'configs', '**', '*.yml'), recursive=True
    ):
        assert f'pvtfpn_mm/.mim/{osp.relpath(path, ROOT)}' in names
    assert not [n for n in names if '__pycache__' in n or n.endswith('.pyc')]


LOOKUP = """
import os.path as osp, sys
import pvtfpn_mm
from mmengine.config import Config
from mmengine.infer import BaseInferencer
from pvtfpn_mm.model_index import get_config_path, index_root, list_models
site = sys.argv[1]
assert pvtfpn_mm.__file__.startswith(site), pvtfpn_mm.__file__
mim_dir = osp.join(site, 'pvtfpn_mm', '.mim')
assert index_root() == mim_dir, index_root()
# mmengine's inferencers: the package's .mim dir and its metafiles
assert BaseInferencer._get_repo_or_mim_dir('pvtfpn_mm') == mim_dir
names = [m['Name'] for m in BaseInferencer._get_models_from_metafile(mim_dir)]
assert sorted(names) == sorted(m['Name'] for m in list_models())
path = get_config_path('retinanet_pvtv2-b0_topdownfpn_1x_coco')
assert path.startswith(mim_dir), path
cfg = Config.fromfile(path)
assert cfg.model.backbone.type == 'PVTv2' and cfg.model.neck.type == 'TopDownFPN'
print('NAMES', ' '.join(sorted(names)))
"""


def test_lookup_by_name_from_the_install(installed):
    _wheel_only(installed)
    out = run(
        [sys.executable, '-c', LOOKUP, installed['site']],
        cwd=installed['cwd'],
        env=installed['env'],
    )
    names = set(out.split('NAMES ', 1)[1].split())
    assert names == NAMES


def test_mim_search_lists_every_config(installed):
    pytest.importorskip('mim')
    out = run(
        [
            sys.executable,
            '-c',
            'import sys; from mim.cli import cli; sys.exit(cli())',
            'search',
            'pvtfpn_mm',
            '--field',
            'config',
        ],
        cwd=installed['cwd'],
        env=installed['env'],
    )
    missing = sorted(n for n in NAMES if n not in out)
    assert not missing, out[-3000:]


def test_mim_train_by_config_name(installed, tmp_path):
    """``mim train pvtfpn_mm <name>``: the config and tools/train.py of the install;
    then ``mim test pvtfpn_mm <name>`` of the checkpoint it wrote."""
    pytest.importorskip('mim')
    from pvtfpn_tools.toy_data import write_toy_data

    write_toy_data(
        str(tmp_path / 'data' / 'toy'),
        num_train=4,
        num_val=2,
        img_size=64,
        seed=0,
    )
    work = tmp_path / 'work'
    loader = ['batch_size=2', 'num_workers=0', 'persistent_workers=False']
    opts = [
        f'{d}.{o}'
        for d in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        for o in loader
    ]
    opts += [
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1',
        'model.test_cfg.score_thr=0.0',
    ]
    out = run(
        [
            sys.executable,
            '-c',
            'import sys; from mim.cli import cli; sys.exit(cli())',
            'train',
            'pvtfpn_mm',
            'retinanet_pvtv2-b0_topdownfpn_toy-96.py',
            '--work-dir',
            str(work),
            '--cfg-options',
            *opts,
        ],
        cwd=str(tmp_path),
        env=installed['env'],
    )
    mim_configs = osp.join(installed['package'], '.mim', 'configs')
    config = (
        f'{mim_configs}/quickstart/retinanet_pvtv2-b0_topdownfpn_toy-96.py'
    )
    # the editable install's .mim links to the checkout: mim names the file it links to
    config = config if config in out else osp.realpath(config)
    assert config in out, out[-3000:]
    assert 'coco/bbox_mAP' in out
    assert osp.isfile(work / 'iter_2.pth')
    out = run(
        [
            sys.executable,
            '-c',
            'import sys; from mim.cli import cli; sys.exit(cli())',
            'test',
            'pvtfpn_mm',
            'retinanet_pvtv2-b0_topdownfpn_toy-96.py',
            '--checkpoint',
            str(work / 'iter_2.pth'),
            '--cfg-options',
            *opts,
        ],
        cwd=str(tmp_path),
        env=installed['env'],
    )
    assert config in out
    assert re.search(r'coco/bbox_mAP: [\d.]+', out), out[-3000:]
