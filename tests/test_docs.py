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
    assert set(fake.options.sessions) == set(registered), "every session runs by default"
    assert fake.options.stop_on_first_error, "like the && chain it replaces, nox stops at the first failure"
    return sessions


def test_ci_and_the_readme_run_the_suite_as_one_nox_call():
    """.ci/run's command is one line: nox, installed by pip in its own venv, run with no arguments (every session)."""
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command == "python3 -m venv .venv-nox && .venv-nox/bin/pip install -q nox && .venv-nox/bin/nox"


def test_the_nox_sessions_run_what_the_one_line_test_command_ran():
    """The sessions reproduce the hand-written chain they replace, step for step: ruff; pytest -n 2 and the CUDA tests
    in the simulator in the [test] environment; the site with -W; TF-Addons in its own environment; LightFM built
    without build isolation in a third."""
    pytest = ("python", "-m", "pytest")
    assert _nox_sessions() == {
        "lint": [("install", ("-q", "ruff>=0.6")), ("run", ("ruff", "check", "."), {})],
        "tests": [
            ("install", ("-q", "-e", ".[test]")),
            ("run", (*pytest, "-n", "2"), {}),
            ("run", (*pytest, "tests/cuda"), {"NUMBA_ENABLE_CUDASIM": "1"}),
        ],
        "docs": [
            ("install", ("-q", "-e", ".[docs,torch,jax,tf]")),
            ("run", ("python", "-m", "sphinx", "-W", "-q", "-b", "html", "docs", "docs/_build/html"), {}),
        ],
        "tfa": [("install", ("-q", "-e", ".[tfa-test]")), ("run", (*pytest, "tests/tfa"), {})],
        "lightfm": [
            ("install", ("-q", "setuptools", "wheel", "numpy", "scipy", "pytest")),
            ("install", ("-q", "--no-use-pep517", "--no-build-isolation", "lightfm==1.17")),
            ("install", ("-q", "-e", ".")),
            ("run", (*pytest, "tests/test_warp.py", "-k", "lightfm"), {}),
        ],
    }
