"""./test.sh's checks: tools/lint.sh (ruff check, ruff format --check, mypy; configured in
pyproject.toml) fails on a lint, format or type error, and ./test.sh then exits non-zero
even when every test passes; a -m of the user's narrows the oldest stack's run too.

Each case runs the real test.sh, tools/lint.sh, pyproject.toml and pytest.ini on a tiny
project in a temporary folder (a stub tools/setup_env.sh; this venv's tools), so nothing
here installs anything or depends on the state of the checkout.
"""

import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VENV = osp.dirname(osp.dirname(sys.executable))

CLEAN = '''"""A tiny package."""


def add(a: int, b: int) -> int:
    """The sum."""
    return a + b
'''
TESTS = '''import pytest


@pytest.mark.oldest
def test_fast():
    assert True


@pytest.mark.oldest
@pytest.mark.slow
def test_slow():
    assert True


def test_newest_only():
    assert True
'''
#: (what is wrong, the package's source, what the output names)
BROKEN = [
    ('unused import', 'import os\n' + CLEAN, 'F401'),
    (
        'bare except',
        CLEAN + '\n\ntry:\n    add(1, 2)\nexcept:\n    pass\n',
        'E722',
    ),
    (
        'unsorted imports',
        'import sys\nimport os\n\nprint(os, sys)\n' + CLEAN,
        'I001',
    ),
    ('not formatted', CLEAN + '\n\nX = [1,2]\n', 'would be reformatted'),
    (
        'type error',
        CLEAN.replace('return a + b', 'return str(a + b)'),
        'return value',
    ),
]


@pytest.fixture(scope='module')
def need_tools():
    for tool in ('ruff', 'mypy'):
        if not osp.exists(osp.join(VENV, 'bin', tool)):
            pytest.fail(
                f'{tool} is not installed in {VENV}: run tools/setup_env.sh'
            )


def make_project(root, package_source):
    """A copy of the checks' files around a one-module package and three tests."""
    os.makedirs(osp.join(root, 'tools'))
    for name in ('test.sh', 'pyproject.toml', 'pytest.ini', 'tools/lint.sh'):
        shutil.copy(osp.join(ROOT, name), osp.join(root, name))
    with open(osp.join(root, 'tools', 'setup_env.sh'), 'w') as f:
        f.write('exit 0  # stub: the tests use the running venv\n')
    os.makedirs(osp.join(root, 'pvtfpn_mm'))
    with open(osp.join(root, 'pvtfpn_mm', '__init__.py'), 'w') as f:
        f.write(package_source)
    os.makedirs(osp.join(root, 'tests'))
    with open(osp.join(root, 'tests', 'test_tiny.py'), 'w') as f:
        f.write(TESTS)


def run(cmd, cwd, **env):
    full_env = dict(os.environ, PVTFPN_VENV=VENV, **env)
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout


def test_a_clean_project_passes(tmp_path, need_tools):
    make_project(tmp_path, CLEAN)
    rc, out = run(
        ['bash', 'test.sh', '-p', 'no:cacheprovider'],
        tmp_path,
        PVTFPN_STACKS='newest',
    )
    assert rc == 0, out
    assert '[lint] passed: ruff check, ruff format --check, mypy' in out, out
    assert '3 passed' in out, out


@pytest.mark.parametrize(
    'what,source,named', BROKEN, ids=[b[0] for b in BROKEN]
)
def test_the_checks_fail(tmp_path, need_tools, what, source, named):
    make_project(tmp_path, source)
    rc, out = run(['bash', 'tools/lint.sh'], tmp_path)
    assert rc == 1, out
    assert named in out, out
    assert '[lint] FAILED' in out, out


def test_test_sh_fails_on_a_lint_error_although_the_tests_pass(
    tmp_path, need_tools
):
    make_project(tmp_path, BROKEN[0][1])
    rc, out = run(
        ['bash', 'test.sh', '-p', 'no:cacheprovider'],
        tmp_path,
        PVTFPN_STACKS='newest',
    )
    assert rc == 1, out
    assert 'F401' in out and '3 passed' in out, out
    assert '[test.sh] the checks failed' in out, out


def test_user_selection_is_combined_with_the_oldest_marker(tmp_path):
    make_project(tmp_path, CLEAN)
    rc, out = run(
        ['bash', 'test.sh', '-q', '-p', 'no:cacheprovider', '-m', 'not slow'],
        tmp_path,
        PVTFPN_STACKS='newest oldest',
        PVTFPN_VENV_OLDEST=VENV,
        PVTFPN_LINT='0',
    )
    assert rc == 0, out
    # newest: test_fast + test_newest_only; oldest: "oldest and (not slow)" = test_fast
    # (of 3; under pytest-xdist the workers deselect, so the summary counts no deselected)
    assert re.findall(r'\b(\d+) passed', out) == ['2', '1'], out
    assert '[lint]' not in out, out


def test_changelog_records_this_version():
    """CHANGELOG.md (Keep a Changelog) has an entry for the version in
    pvtfpn_mm/version.py, the newest released one, under "Unreleased"."""
    import re

    from pvtfpn_mm import __version__

    with open(osp.join(ROOT, 'CHANGELOG.md'), encoding='utf-8') as f:
        text = f.read()
    headings = re.findall(r'^## \[([^\]]+)\]', text, flags=re.M)
    assert headings[0] == 'Unreleased', headings
    assert headings[1] == __version__, (
        f'CHANGELOG.md: newest release {headings[1]!r}, pvtfpn_mm/version.py '
        f'{__version__!r}'
    )
    assert f'[{__version__}]: ' in text  # its link reference
