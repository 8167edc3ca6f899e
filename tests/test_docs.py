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
