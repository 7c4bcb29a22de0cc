"""The documentation says what is there: every ``tests/<file>.py::<test>`` the site's pages cite in docs/ (and every
``::<test>`` after one, which names a test of the same file) is a function defined in that file, and the README's
test command is the one CI runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md"))
PAGES = [page for page in PAGES if "_build" not in page.parts and "notebooks" not in page.parts]
CITATION = re.compile(r"`(tests/[\w/]+\.py)?::(\w+)`")


def _citations(page):
    """(file, test) for each citation on the page, in order; a bare ``::test`` takes the file cited last."""
    current = None
    for path, test in CITATION.findall(page.read_text(encoding="utf-8")):
        current = path or current
        yield current, test


def test_the_compatibility_page_cites_tests():
    assert len(list(_citations(ROOT / "docs" / "compatibility.md"))) >= 50


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_cited_test_exists(page):
    missing = []
    for path, test in _citations(page):
        if path is None or not re.search(rf"^\s*def {test}\(", (ROOT / path).read_text(encoding="utf-8"), re.M):
            missing.append(f"{path}::{test}")
    assert not missing, f"{page.name} cites tests that do not exist: {missing}"


def test_ci_runs_the_readme_test_command_verbatim():
    """.ci/run's command line is the README's second command, character for character, so that what the README
    tells a user to run is what CI runs."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n\s*(.+?)\n\s*```", readme)
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in commands
