"""Sphinx configuration of metricloss's documentation site.

Build from the repository root: ``python -m sphinx -W -b html docs docs/_build/html``. The notebooks are rendered
with their saved outputs and never executed (myst-nb, ``nb_execution_mode = "off"``): the test suite runs them.
"""

import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout's metricloss, installed or not

import metricloss  # noqa: E402

project = "metricloss"
author = "The metricloss developers"
copyright = "The metricloss developers"
release = version = metricloss.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",  # Markdown pages (MyST) and notebooks
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"

# autodoc / numpydoc: the API pages document the public names from their docstrings.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()  # tests/test_docstrings.py validates the docstrings
numpydoc_xref_param_type = False

# MyST and notebooks: dollar math in Markdown, and the notebooks' saved outputs, never re-run.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "off"
# a notebook saved without language metadata is shown without highlighting, and an output of a type that a static
# page cannot show (a live widget without a text form) is left out, rather than failing the build
suppress_warnings = ["myst.header", "myst-nb.lexer", "mystnb.unknown_mime_type"]

html_theme = "alabaster"
html_theme_options = {
    "description": "Metric-learning losses with analytic gradients",
    "fixed_sidebar": True,
    "page_width": "1240px",
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]


def _copy_notebooks():
    """Copy ../notebooks/*.ipynb into docs/notebooks/ (not committed) and write its index, so that the site has
    whatever notebooks the checkout has: Sphinx reads only files under its source folder."""
    target = DOCS / "notebooks"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for notebook in notebooks:
        shutil.copy2(notebook, target / notebook.name)
    entries = "\n".join(notebook.stem for notebook in notebooks)
    body = (
        "Each notebook tells one story with pictures. They are shown here with the outputs saved in the "
        "repository (the test suite executes them; this site does not).\n\n"
        f"```{{toctree}}\n:maxdepth: 1\n\n{entries}\n```\n"
        if notebooks
        else "This checkout has no notebooks.\n"
    )
    (target / "index.md").write_text(f"# Notebooks\n\n{body}", encoding="utf-8")


_GROUPS = (  # (title, module prefix) for the summary tables of the API page, first match wins
    ("Losses", "metricloss.losses"),
    ("Mining", "metricloss.mining"),
    ("Sampling", "metricloss.sampling"),
    ("Distances and similarities", "metricloss.distances"),
    ("Retrieval metrics", "metricloss.metrics"),
    ("Other", "metricloss"),
)


def _write_api_summary():
    """docs/api/summary.inc (not committed): every public function of ``metricloss.__all__`` in a summary table
    by the module that defines it, and every option tuple with its values, so that the API page lists each public
    name however many are added."""
    functions = {title: [] for title, _ in _GROUPS}
    constants = []
    for name in metricloss.__all__:
        obj = getattr(metricloss, name)
        if callable(obj):
            title = next(t for t, prefix in _GROUPS if obj.__module__.startswith(prefix))
            functions[title].append(name)
        elif isinstance(obj, tuple):
            constants.append(f"   * - ``{name}``\n     - ``{obj!r}``")
    parts = []
    for title, names in functions.items():
        if names:
            rows = "\n".join(f"   ~metricloss.{name}" for name in names)
            parts.append(f".. rubric:: {title}\n\n.. autosummary::\n   :nosignatures:\n\n{rows}\n")
    parts.append(
        ".. rubric:: Options\n\nThe closed sets of option strings, as module-level tuples:\n\n"
        ".. list-table::\n   :header-rows: 1\n\n   * - name\n     - values\n" + "\n".join(constants) + "\n"
    )
    (DOCS / "api" / "summary.inc").write_text("\n".join(parts), encoding="utf-8")


# The pages of docs/ that index.md lists by name; any other docs/*.md (checking.md, cuda.md, ...) is added after
# them in the contents, so that a new page needs no edit here (a glob would warn, and -W fail, while none exists).
_LISTED = {"index", "installation", "compatibility", "benchmarks"}
FURTHER_PAGES = sorted(path.stem for path in DOCS.glob("*.md") if path.stem not in _LISTED)


def _list_further_pages(app, docname, source):
    if docname == "index":
        source[0] = source[0].replace("further-pages-placeholder", "\n".join(FURTHER_PAGES))


def _link_public_names(app, env, node, contnode):
    """A docstring's :func:`mine_dataset` or :func:`metricloss.sampling.mine_dataset` links to the top-level name
    that the API page documents (``metricloss.mine_dataset``), wherever the function is defined."""
    name = node.get("reftarget", "").rsplit(".", 1)[-1]
    if node.get("refdomain") != "py" or name not in metricloss.__all__:
        return None
    target = f"metricloss.{name}"
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], target, node, contnode)


def _reread_index(app, env, added, changed, removed):
    """index.md's contents depend on which pages exist, not on its own text: read it again on every build."""
    return ["index"]


def setup(app):
    app.connect("source-read", _list_further_pages)
    app.connect("env-get-outdated", _reread_index)
    app.connect("missing-reference", _link_public_names)


_copy_notebooks()
_write_api_summary()
