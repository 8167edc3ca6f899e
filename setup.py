import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'pvtfpn_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='pvtfpn_mm',
    version=read_version(),
    description='PVT-v2 backbones and an FPN neck with heads for mmdetection 3.x '
    'and mmsegmentation 1.x',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['pvtfpn_mm', 'pvtfpn_mm.*']),
    python_requires='>=3.9',
    # The tested stack is pinned in requirements/constraints.txt and installed by
    # tools/setup_env.sh (mmcv needs a source build); these are the loose requirements.
    install_requires=['torch>=2.0', 'mmengine>=0.10', 'timm>=0.9'],
    license='Apache-2.0',
)
