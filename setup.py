import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
#: What OpenMMLab's tools look for in ``<package>/.mim`` of an installed package: mim
#: (``mim search / train / test pvtfpn_mm``) and mmengine's inferencers read
#: ``.mim/model-index.yml`` and the configs under ``.mim/configs``; ``mim train`` runs
#: ``.mim/tools/train.py``.
MIM_FILES = ('configs', 'tools', 'model-index.yml', 'README.md')


def read_version():
    namespace = {}
    with open(osp.join(ROOT, 'pvtfpn_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


class BuildPyWithMim(build_py):
    """build_py that also copies configs/, tools/, model-index.yml and README.md into
    ``pvtfpn_mm/.mim`` of the build -- OpenMMLab's layout (mmdet's ``add_mim_extension``
    copies the same files into its source tree; here the source tree stays untouched).

    An editable install (``pip install -e .``) links them instead
    (:class:`EditableWheelWithMim`).
    """

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        target = osp.join(self.build_lib, 'pvtfpn_mm', '.mim')
        for name in MIM_FILES:
            src, dst = osp.join(ROOT, name), osp.join(target, name)
            if osp.isdir(dst):
                shutil.rmtree(dst)
            os.makedirs(target, exist_ok=True)
            if osp.isdir(src):
                shutil.copytree(
                    src,
                    dst,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'),
                )
            else:
                shutil.copyfile(src, dst)


def link_mim_files() -> None:
    """``pvtfpn_mm/.mim`` in the checkout, for an editable install: relative symlinks to
    ``configs/``, ``tools/``, ``model-index.yml`` and ``README.md`` (mmdet's
    ``add_mim_extension`` in develop mode; a copy where the file system has no symlinks).
    Ignored by git. Anything there that is not such a link is left alone and named."""
    target = osp.join(ROOT, 'pvtfpn_mm', '.mim')
    os.makedirs(target, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(ROOT, name), osp.join(target, name)
        rel = osp.relpath(src, target)
        if osp.islink(dst):
            if os.readlink(dst) == rel:
                continue
            os.remove(dst)
        elif osp.exists(dst):
            raise FileExistsError(
                f'{dst} exists and is not a link to {src}: remove it, then install '
                'again (an editable install links the checkout\'s files there)'
            )
        try:
            os.symlink(rel, dst, target_is_directory=osp.isdir(src))
        except OSError:
            if osp.isdir(src):
                shutil.copytree(src, dst)
            else:
                shutil.copyfile(src, dst)


def point_mim_at_checkout(dist_info_dir: str) -> None:
    """Make mim and mmengine find ``.mim`` of an editable install.

    Both look for ``<distribution location>/<name>/.mim`` and then
    ``<location>/<first line of top_level.txt>/.mim``; an editable install's location is
    site-packages, which holds no ``pvtfpn_mm`` folder (the package is imported from the
    checkout by setuptools' finder). ``os.path.join`` keeps an absolute second part, so a
    first line naming the checkout's package folder sends both there; the second line
    keeps the module's name for every other reader.
    """
    path = osp.join(dist_info_dir, 'top_level.txt')
    with open(path, 'w') as f:
        f.write(f'{osp.join(ROOT, "pvtfpn_mm")}\npvtfpn_mm\n')


CMDCLASS: dict = {'build_py': BuildPyWithMim}
try:  # setuptools >= 64 (PEP 660 editable installs)
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # pragma: no cover
    editable_wheel = None
if editable_wheel is not None and hasattr(editable_wheel, '_ensure_dist_info'):

    class EditableWheelWithMim(editable_wheel):
        """``pip install -e .``: the checkout gets ``pvtfpn_mm/.mim`` (links) and the
        wheel's metadata points mim / mmengine at it (:func:`point_mim_at_checkout`), so
        ``mim search / train / test pvtfpn_mm`` work as after ``pip install .``."""

        def _ensure_dist_info(self):
            super()._ensure_dist_info()
            link_mim_files()
            point_mim_at_checkout(str(self.dist_info_dir))

    CMDCLASS['editable_wheel'] = EditableWheelWithMim


# Lower bounds: the "oldest supported" stack (requirements/constraints-oldest.txt) that
# ./test.sh tests besides the pinned newest one (requirements/constraints.txt). Loose on
# purpose: installing into an existing mmdet 3.3 / mmseg 1.2 environment (torch 2.1,
# mmcv 2.1.0, timm 0.9, numpy 1.26) changes none of them. torch and mmcv come from that
# environment (or tools/setup_env.sh): mmcv has no wheels for most torch versions and
# builds from source, so pip must never pick another one.
INSTALL_REQUIRES = [
    'torch>=2.1',
    'mmcv>=2.1.0,<2.2.0',  # mmdet 3.3 / mmseg 1.2 refuse mmcv >= 2.2
    'mmengine>=0.10.3,<1.0',
    'timm>=0.9.16',
    'numpy>=1.26',
    'packaging',
    'filelock>=3.13',  # the work-dir lock (FileLock(thread_local=...): 3.11)
]
EXTRAS_REQUIRE = {
    'mmdet': ['mmdet>=3.3.0,<3.4', 'pycocotools>=2.0.7'],
    # mmseg 1.2 imports ftfy and regex without declaring them.
    'mmseg': ['mmsegmentation>=1.2.2,<1.3', 'ftfy>=6.1', 'regex'],
    'mmpretrain': ['mmpretrain>=1.2.0,<1.3'],
    # ONNX export (torch.onnx.export(dynamo=True)) and its check with onnxruntime; tested
    # on the newest stack only; torchvision (its nms / roi_align) must match your torch.
    'deploy': ['onnx>=1.23.2', 'onnxruntime>=1.31.1', 'onnxscript>=0.7.2'],
    # mmdet's / mmseg's analysis tools (analyze_logs: seaborn; benchmark: psutil).
    'analysis': ['seaborn>=0.13.2', 'psutil>=7.2.2'],
    # transformers: the PvtV2 models the 'hf' weight format is tested against (4.39 added
    # PvtV2; mmpretrain 1.2's multimodal models do not import with >= 4.52).
    'tests': ['pytest>=7', 'transformers>=4.39,<4.52'],
}

setup(
    name='pvtfpn_mm',
    version=read_version(),
    description='PVT-v2 backbones and an FPN neck with heads for mmdetection 3.x '
    'and mmsegmentation 1.x',
    long_description=open(osp.join(ROOT, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['pvtfpn_mm', 'pvtfpn_mm.*']),
    cmdclass=CMDCLASS,
    python_requires='>=3.10',  # tested: 3.10 (oldest stack), 3.11 (newest)
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license='Apache-2.0',
)
