"""The documentation says what is there and shows it: every ``tests/<file>.py::<test>`` the site's pages cite in
docs/ (and every ``::<test>`` after one, which names a test of the same file) is a function defined in that file;
the README's test command is the one CI runs; the site builds with warnings as errors, renders its math from its
own files, gives every public function its own page; and every loss has a section on a family page of the guide
with its formula, its textbook and fast code, its defaults as its signature has them, and a notebook."""

import fcntl
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import metricloss

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


# ---- The site: built once per test session, shared by the xdist workers ----------------------------------------

GUIDE = ROOT / "docs" / "guide"
FAMILY_PAGES = ["pair_losses", "triplet_losses", "lifted_structure", "softmax_losses", "margin_loss", "warp"]


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The documentation site, built as CI builds it (``sphinx -W``: a warning fails), into a folder that every
    xdist worker of the session shares; the first worker builds it under a lock, the others reuse it."""
    shared = tmp_path_factory.getbasetemp()  # this session's; under xdist, each worker's, in the session's folder
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    html, report = shared / "metricloss-site", shared / "metricloss-site.log"
    with open(shared / "metricloss-site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not report.exists():
            build = subprocess.run(
                [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", "docs", str(html)],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            report.write_text(f"{build.returncode}\n{build.stdout}{build.stderr}")
    returncode, output = report.read_text().split("\n", 1)
    assert returncode == "0", f"the docs build failed (sphinx -W):\n{output}"
    return html


def test_the_site_builds_with_warnings_as_errors(site):
    assert (site / "index.html").exists() and (site / "guide" / "triplet_losses.html").exists()


SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"")


def test_math_renders_from_the_sites_own_files(site):
    """Every script a page loads is a file of the site (no http, no CDN); a page with math loads MathJax from it,
    and MathJax's fonts are there too: the site renders its math with no network."""
    pages = sorted(site.rglob("*.html"))
    remote, missing, math_pages, mathjax_pages = [], [], [], []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        sources = SCRIPT.findall(text)
        for source in sources:
            if re.match(r"^(https?:)?//", source):
                remote.append(f"{page.relative_to(site)}: {source}")
            elif not (page.parent / source.split("?")[0]).is_file():
                missing.append(f"{page.relative_to(site)}: {source}")
        if 'class="math' in text:
            math_pages.append(page)
            if any(source.split("?")[0].endswith("mathjax/tex-chtml.js") for source in sources):
                mathjax_pages.append(page)
    assert not remote, f"pages load scripts from the network: {remote[:5]}"
    assert not missing, f"pages load scripts that the site does not have: {missing[:5]}"
    assert len(math_pages) >= 10, "the guide's family pages and the API pages have math"
    assert mathjax_pages == math_pages, "every page with math loads the site's MathJax"
    assert (
        site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff"
    ).is_file()


def _public_function_names():
    """Every public function under the name the API documents it by: metricloss's, the textbook's, the checker's
    and the adapters' (tests/test_docstrings.py's list, and the textbook versions)."""
    from test_docstrings import PUBLIC

    from metricloss import textbook

    return sorted(PUBLIC) + [f"metricloss.textbook.{name}" for name in textbook.__all__]


def test_every_public_function_has_its_own_api_page(site):
    names = _public_function_names()
    missing = [name for name in names if not (site / "api" / "generated" / f"{name}.html").is_file()]
    assert not missing, f"no API page for {missing}"
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert len(api) < 200_000, "the API page is the summary tables, its functions on their own pages"
    unlinked = [name for name in names if f'href="generated/{name}.html' not in api]
    assert not unlinked, f"the API page's tables do not link {unlinked}"


def test_the_mining_page_shows_notebook_02s_drawing(site):
    mining = (site / "guide" / "mining.html").read_text(encoding="utf-8")
    images = re.findall(r"<img [^>]*src=\"([^\"]+)\"", mining)
    assert any("mining_regions" in image and (site / "guide" / image).is_file() for image in images), images


# ---- The family pages, from their sources ------------------------------------------------------------------------

SECTION = re.compile(r"^## \{func\}`~metricloss\.(\w+)`\n(.*?)(?=^## |\Z)", re.M | re.S)
DEFAULT_ROW = re.compile(r"^\| `(\w+)` \| `([^`]*)` \|", re.M)


def _loss_sections():
    """{loss name: (page, its section's text)} for every ``## {func}`~metricloss.name``` of the family pages."""
    sections = {}
    for page in FAMILY_PAGES:
        for name, text in SECTION.findall((GUIDE / f"{page}.md").read_text(encoding="utf-8")):
            assert name not in sections, f"{name} has a section on {sections[name][0]} and on {page}"
            sections[name] = (page, text)
    return sections


PUBLIC_LOSSES = sorted(name for name in metricloss.__all__ if name.endswith("_loss"))


def test_every_loss_has_a_section_on_a_family_page():
    assert sorted(_loss_sections()) == PUBLIC_LOSSES


@pytest.mark.parametrize("name", PUBLIC_LOSSES)
def test_a_loss_section_has_its_formula_its_code_and_a_notebook(name):
    page, text = _loss_sections()[name]
    assert re.search(r"^\$\$\n.+?\n\$\$$", text, re.M | re.S), f"{page}: {name} has no displayed formula"
    assert f"```{{loss-code}} {name}\n```" in text, f"{page}: {name} does not show its textbook and fast code"
    page_text = (GUIDE / f"{page}.md").read_text(encoding="utf-8")
    assert "{notebook}`" in page_text, f"{page} links no notebook"
    assert "../compatibility" in page_text and "vocabulary.md#defaults" in page_text


@pytest.mark.parametrize("name", PUBLIC_LOSSES)
def test_a_loss_sections_defaults_are_its_signatures(name):
    """Each row ``| `parameter` | `default` | ...`` of a loss's table names a keyword of the loss and its default as
    Python writes it, and the table has a row for each keyword but ``backend``, the references and ``distance``
    where the loss has no other choice."""
    page, text = _loss_sections()[name]
    keywords = {
        parameter.name: parameter.default
        for parameter in inspect.signature(getattr(metricloss, name)).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    rows = dict(DEFAULT_ROW.findall(text))
    wrong = {
        p: (shown, repr(keywords.get(p, "not a keyword")))
        for p, shown in rows.items()
        if shown != repr(keywords.get(p))
    }
    assert not wrong, f"{page}: {name}'s table shows (default, signature's): {wrong}"
    undocumented = set(keywords) - set(rows) - {"backend", "ref_embeddings", "ref_labels"}
    assert not undocumented, f"{page}: {name}'s table leaves out {sorted(undocumented)}"


def test_wide_tables_scroll_and_api_names_do_not_wrap(site):
    """The benchmarks' tables are marked as tables of numbers, and the site's stylesheet makes a table wider than
    the page scroll inside it, keeps those numbers on one line and keeps the API tables' names whole."""
    benchmarks = (site / "benchmarks.html").read_text(encoding="utf-8")
    tables = re.findall(r"<table class=\"([^\"]*)\"", benchmarks)
    assert tables and all("numbers" in classes.split() for classes in tables), tables
    css = (site / "_static" / "custom.css").read_text(encoding="utf-8")
    assert re.search(r"table\.docutils \{[^}]*overflow-x: auto", css)
    assert re.search(r"table\.numbers td, table\.numbers td p \{ white-space: nowrap; \}", css)
    assert re.search(r"table\.autosummary td:first-child code[^{]*\{\s*white-space: nowrap; word-break: normal;", css)


def _nox_sessions():
    """noxfile.py's sessions, in the order ``nox`` runs them, each as the commands it would run: ("install", args)
    and ("run", args, env), read by executing the noxfile against a stand-in for nox that records the calls (nox
    itself lives in its own environment, not in the test suite's)."""
    import tomllib
    import types

    registered = {}
    fake = types.ModuleType("nox")
    fake.options = types.SimpleNamespace()
    fake.project = types.SimpleNamespace(load_toml=lambda path: tomllib.loads((ROOT / path).read_text()))
    fake.session = lambda function: registered.setdefault(function.__name__, function)

    class Session:
        posargs = ()

        def __init__(self):
            self.calls = []

        def install(self, *args):
            self.calls.append(("install", args))

        def run(self, *args, env=None):
            self.calls.append(("run", args, env or {}))

    namespace = {"__name__": "noxfile"}
    code = (ROOT / "noxfile.py").read_text().replace("import nox\n", "", 1)
    exec(compile(code, "noxfile.py", "exec"), {**namespace, "nox": fake})
    sessions = {}
    for name in fake.options.sessions:
        session = Session()
        registered[name](session)
        sessions[name] = session.calls
    # every session runs by default but docs, whose build the tests session makes and checks (the site fixture)
    assert set(registered) - set(fake.options.sessions) == {"docs"}
    assert fake.options.stop_on_first_error, "like the && chain it replaces, nox stops at the first failure"
    return sessions


def test_ci_and_the_readme_run_the_suite_as_one_nox_call():
    """.ci/run's command is one line: nox, installed by pip in its own venv, run with no arguments (every session)."""
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command == "python3 -m venv .venv-nox && .venv-nox/bin/pip install -q nox && .venv-nox/bin/nox"


def test_the_nox_sessions_run_what_the_one_line_test_command_ran():
    """The sessions reproduce the hand-written chain they replace, step for step: ruff; pytest -n 2 and the CUDA tests
    in the simulator in the [test] environment (whose tests build the site with -W); TF-Addons in its own
    environment; LightFM built without build isolation in a third."""
    pytest = ("python", "-m", "pytest")
    assert _nox_sessions() == {
        "lint": [("install", ("-q", "ruff>=0.6")), ("run", ("ruff", "check", "."), {})],
        "tests": [
            ("install", ("-q", "-e", ".[test]")),
            ("run", (*pytest, "-n", "2"), {}),
            ("run", (*pytest, "tests/cuda"), {"NUMBA_ENABLE_CUDASIM": "1"}),
        ],
        "tfa": [("install", ("-q", "-e", ".[tfa-test]")), ("run", (*pytest, "tests/tfa"), {})],
        "lightfm": [
            ("install", ("-q", "setuptools", "wheel", "numpy", "scipy", "pytest")),
            ("install", ("-q", "--no-use-pep517", "--no-build-isolation", "lightfm==1.17")),
            ("install", ("-q", "-e", ".")),
            ("run", (*pytest, "tests/test_warp.py", "-k", "lightfm"), {}),
        ],
    }
