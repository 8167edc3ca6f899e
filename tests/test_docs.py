"""The README and docs/ link to pages and sections that exist, and name files that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / 'README.md', ROOT / 'DEVELOPERS.md'] + sorted(
    (ROOT / 'docs').glob('*.md')
)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith('#'):
            title = line.lstrip('#').strip().lower()
            out.add(re.sub(r'[^\w\- ]', '', title).replace(' ', '-'))
    return out


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    for match in re.finditer(r'\]\(([^)#\s]*)(#[^)\s]+)?\)', page.read_text()):
        target, anchor = match.group(1), match.group(2)
        if target.startswith(('http://', 'https://')):
            continue
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f'{page.name}: {match.group(0)} -> {path}'
        if anchor and path.suffix == '.md':
            assert anchor[1:] in _anchors(path), (
                f'{page.name}: {match.group(0)}'
            )


def test_readme_is_a_landing_page():
    """What it is, two commands, install, the snippet, the model zoo -- the detail in
    docs/ (issue 18: about 250 lines at most)."""
    text = (ROOT / 'README.md').read_text()
    assert len(text.splitlines()) <= 250
    headings = re.findall(r'^## (.+)$', text, re.M)
    for wanted in (
        'Two commands',
        'Install',
        'Using it from your own mm config',
        'Model zoo',
    ):
        assert wanted in headings, headings


def _code(text: str) -> str:
    """The fenced blocks and inline code spans of a Markdown page, one per line."""
    blocks = re.findall(r'^```[^\n]*\n(.*?)^```', text, re.M | re.S)
    spans = re.findall(
        r'`([^`\n]+)`', re.sub(r'^```.*?^```', '', text, flags=re.M | re.S)
    )
    return '\n'.join(blocks + spans)


def _documented_commands() -> list[tuple[str, ...]]:
    """Every ``python tools/<script>.py [subcommand]`` and ``mim <command>`` in the code of
    README.md and docs/ (a lower-case word after a script is its subcommand)."""
    found: set[tuple[str, ...]] = set()
    for page in [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md')):
        code = _code(page.read_text())
        for m in re.finditer(
            r'(?<![\w./])python (tools/[\w/]+\.py)(?: ([a-z][\w-]*)(?=\s|$))?',
            code,
        ):
            found.add(tuple(filter(None, (m.group(1), m.group(2)))))
        for m in re.finditer(r'(?<![\w./-])mim ([a-z]+)\b', code):
            found.add(('mim', m.group(1)))
    return sorted(found)


COMMANDS = _documented_commands()


def test_the_docs_name_the_tools():
    """The extraction below finds what the pages show (so an empty list cannot pass)."""
    scripts = {c[0] for c in COMMANDS}
    for script in (
        'tools/train.py',
        'tools/test.py',
        'tools/convert_weights.py',
        'tools/benchmark.py',
        'tools/export_onnx.py',
        'mim',
    ):
        assert script in scripts, sorted(scripts)


#: Runs in one fresh process: each ``python tools/x.py [sub] --help`` as Python runs a
#: script (``__main__``, its folder first on ``sys.path``), each ``mim <command> --help``
#: through mim's CLI; prints one JSON line per command: exit code and output.
_HELP_DRIVER = """
import contextlib, io, json, os, runpy, sys
for command in json.loads(sys.argv[1]):
    out = io.StringIO()
    argv, path = list(sys.argv), list(sys.path)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if command[0] == 'mim':
                from mim.cli import cli
                cli.main([*command[1:], '--help'], prog_name='mim')
            else:
                sys.argv = [*command, '--help']
                sys.path.insert(0, os.path.dirname(os.path.abspath(command[0])))
                runpy.run_path(command[0], run_name='__main__')
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (exit.code is not None)
    except BaseException as err:  # reported, not raised: the other commands still run
        code, _ = 'error', out.write(f'{type(err).__name__}: {err}')
    finally:
        sys.argv, sys.path[:] = argv, path
    print(json.dumps([command, code, out.getvalue()]), flush=True)
"""


@pytest.fixture(scope='module')
def helps() -> dict[tuple[str, ...], tuple[object, str]]:
    """Exit code and output of ``--help`` of every documented command, run in one fresh
    process (one start-up instead of one per command)."""
    import json
    import subprocess
    import sys

    if any(c[0] == 'mim' for c in COMMANDS):
        pytest.importorskip('mim')
    proc = subprocess.run(
        [sys.executable, '-c', _HELP_DRIVER, json.dumps(COMMANDS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith('['):
            command, code, output = json.loads(line)
            results[tuple(command)] = (code, output)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


@pytest.mark.slow
@pytest.mark.parametrize('command', COMMANDS, ids=' '.join)
def test_documented_command_has_help(command, helps):
    """``--help`` of every tool command the README and docs/ show: the script exists, its
    arguments parse, the subcommand is real (issue 18)."""
    assert command in helps, sorted(helps)
    code, output = helps[command]
    assert code == 0, f'{" ".join(command)} --help (exit {code}):\n{output}'
    assert 'usage' in output.lower(), output
    if command[0] != 'mim' and len(command) > 1:  # the subcommand's own usage
        assert f'{Path(command[0]).name} {command[1]}' in output, output
