"""The package's layout (issue 18): imports run downward only, the package is the plugin.

Every ``import`` in ``pvtfpn_mm/`` (module level or inside a function) is read from the
source; a module may import its own floor or a lower one, never a higher one, and never
the scripts' helpers (``tools/pvtfpn_tools``) or anything in ``tools/``.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'pvtfpn_mm'

#: The floors, lowest first: a module imports only from its floor and below.
FLOORS = {
    'pvtfpn_mm.version': 0,
    'pvtfpn_mm.compat': 0,
    'pvtfpn_mm.registry': 0,
    'pvtfpn_mm.model_index': 0,
    'pvtfpn_mm.weights': 1,
    'pvtfpn_mm.models': 2,
    'pvtfpn_mm.engine': 3,
    'pvtfpn_mm.deploy': 4,
}
#: What the package holds besides the floors: nothing (benchmarking, the scripts'
#: argument handling, toy data and the quickstart live in tools/).
TOP_LEVEL = {
    '__init__.py',
    'version.py',
    'compat.py',
    'registry.py',
    'model_index.py',
    'weights',
    'models',
    'engine',
    'deploy',
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def _floor(module: str) -> int | None:
    for prefix, floor in FLOORS.items():
        if module == prefix or module.startswith(prefix + '.'):
            return floor
    return None


def _imports(path: Path):
    """Absolute names of what ``path`` imports from pvtfpn_mm, and other top-level
    packages it imports."""
    name = _module_name(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[: len(base) - (node.level - 1)]
                module = '.'.join(
                    base + ([node.module] if node.module else [])
                )
            else:
                module = node.module or ''
            if node.module is None or module == 'pvtfpn_mm':
                for (
                    alias
                ) in node.names:  # from . import x / from pvtfpn_mm import x
                    yield f'{module}.{alias.name}', node.lineno
            else:
                yield module, node.lineno


SOURCES = sorted(PACKAGE.rglob('*.py'))


@pytest.mark.parametrize(
    'path', SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent))
)
def test_imports_run_downward(path):
    name = _module_name(path)
    if name == 'pvtfpn_mm':
        return  # the package itself imports its floors to register them
    floor = _floor(name)
    assert floor is not None, f'{name} is on no floor of FLOORS'
    for imported, line in _imports(path):
        top = imported.split('.')[0]
        assert top not in ('pvtfpn_tools', 'tools'), (
            f'{path}:{line} imports {imported}: the package never imports the '
            'scripts or their helpers'
        )
        if top != 'pvtfpn_mm':
            continue
        target = _floor(imported)
        assert target is not None, f'{path}:{line} imports {imported}'
        assert target <= floor, (
            f'{path}:{line}: {name} (floor {floor}) imports {imported} '
            f'(floor {target}): imports run downward only'
        )


def test_the_package_holds_only_the_plugin():
    found = {
        p.name
        for p in PACKAGE.iterdir()
        if p.name not in ('__pycache__', '.mim')
    }
    assert found == TOP_LEVEL, sorted(found ^ TOP_LEVEL)


def test_weights_is_one_subpackage():
    """Checkpoint handling in one place: reading, formats, layouts, loading."""
    assert sorted(p.name for p in (PACKAGE / 'weights').glob('*.py')) == [
        '__init__.py',
        'formats.py',
        'io.py',
        'layouts.py',
        'loading.py',
    ]
