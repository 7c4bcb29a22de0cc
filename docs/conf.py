"""Sphinx configuration of metricloss's documentation site.

Build from the repository root: ``python -m sphinx -W -b html docs docs/_build/html``. The notebooks are rendered
with their saved outputs and never executed (myst-nb, ``nb_execution_mode = "off"``): the test suite runs them.
"""

import ast
import base64
import importlib
import inspect
import json
import shutil
import sys
import textwrap
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.directives.code import container_wrapper
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout's metricloss, installed or not

import metricloss  # noqa: E402

logger = logging.getLogger(__name__)

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
    # MathJax 3.2.2 from the package's own files, copied into _static/mathjax/ and loaded from there
    # (mathjax_path = "mathjax/tex-chtml.js"), never from a CDN: the site renders its math offline. The [docs] extra.
    "sphinx-mathjax-offline",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
# api/summary.rst is written by this file and included by api/index.rst, never a page of its own
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "api/summary.rst"]
root_doc = "index"

# autodoc / numpydoc: the API pages document the public names from their docstrings.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"
# One page per public function: the summary tables of api/summary.rst (written below) generate them under
# api/generated/ (not committed), and the API page is the tables, each name linking to its page.
autosummary_generate = ["api/summary.rst"]
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
# The public functions outside ``metricloss.__all__``, each group under its own title (tests/test_docstrings.py
# holds the same names to their docstrings).
_SUBMODULE_GROUPS = (
    ("Textbook versions", "metricloss.textbook", None),  # None: the module's __all__
    ("Checking gradients", "metricloss.testing", ("check_grad", "assert_close")),
    ("PyTorch adapter", "metricloss.adapters.torch", ("wrap", "distributed", "gather_across_ranks")),
    ("JAX adapter", "metricloss.adapters.jax", ("wrap",)),
    ("TensorFlow adapter", "metricloss.adapters.tensorflow", ("wrap",)),
)


def _autosummary(title, qualified_names):
    rows = "\n".join(f"   ~{name}" for name in qualified_names)
    return f".. rubric:: {title}\n\n.. autosummary::\n   :toctree: generated\n   :nosignatures:\n\n{rows}\n"


def _write_api_summary():
    """docs/api/summary.rst (not committed): every public function in a summary table, by the module that defines
    it, each name generating its own page under api/generated/; and every option tuple with its values. So the API
    page lists each public name however many are added."""
    functions = {title: [] for title, _ in _GROUPS}
    constants = []
    for name in metricloss.__all__:
        obj = getattr(metricloss, name)
        if callable(obj):
            title = next(t for t, prefix in _GROUPS if obj.__module__.startswith(prefix))
            functions[title].append(f"metricloss.{name}")
        elif isinstance(obj, tuple):
            constants.append(f"   * - ``{name}``\n     - ``{obj!r}``")
    for title, module_name, names in _SUBMODULE_GROUPS:
        module = importlib.import_module(module_name)
        functions[title] = [f"{module_name}.{name}" for name in (names or module.__all__)]
    parts = [_autosummary(title, names) for title, names in functions.items() if names]
    parts.append(
        ".. rubric:: Options\n\nThe closed sets of option strings, as module-level tuples:\n\n"
        ".. list-table::\n   :header-rows: 1\n\n   * - name\n     - values\n" + "\n".join(constants) + "\n"
    )
    (DOCS / "api" / "summary.rst").write_text("\n".join(parts), encoding="utf-8")


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


def _mark_number_tables(app, doctree):
    """The benchmarks page's tables get the class "numbers" (custom.css: cells never wrap, the table scrolls)."""
    if app.env.docname == "benchmarks":
        for table in doctree.findall(nodes.table):
            table["classes"].append("numbers")


class LossCode(SphinxDirective):
    """``{loss-code} triplet_loss``: the loss's textbook version (metricloss.textbook, whole) and its fast version
    (the public function, its docstring left out: the body), one under the other, each captioned with its file."""

    required_arguments = 1

    def run(self):
        name = self.arguments[0]
        blocks = []
        for kind, function, keep_docstring in (
            ("Textbook version", getattr(importlib.import_module("metricloss.textbook"), name), True),
            ("Fast version (docstring left out)", getattr(metricloss, name), False),
        ):
            function = inspect.unwrap(function)  # the loss, not the array-kind wrapper around it
            path = Path(inspect.getsourcefile(function))
            self.env.note_dependency(str(path))
            code = _source_of(function, keep_docstring)
            literal = nodes.literal_block(code, code, language="python")
            self.set_source_info(literal)
            caption = f"{kind}: {function.__module__}.{name} ({path.relative_to(ROOT).as_posix()})"
            blocks.append(container_wrapper(self, literal, caption))
        return blocks


def _source_of(function, keep_docstring):
    """The function's source; without its docstring if ``keep_docstring`` is false."""
    source = inspect.getsource(function)
    if keep_docstring:
        return source
    docstring = ast.parse(textwrap.dedent(source)).body[0].body[0]
    lines = source.splitlines()
    return "\n".join(lines[: docstring.lineno - 1] + lines[docstring.end_lineno :])


def _notebook_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{notebook}`05_pair_losses```: a link to notebooks/05_pair_losses.ipynb, named by its file, while the checkout
    has it; the name as plain text while it does not (the notebooks are written beside the guide, and a page should
    not fail the build for one that has not landed yet)."""
    if not (ROOT / "notebooks" / f"{text}.ipynb").exists():
        logger.info("notebook %s is not in this checkout: shown as text", text)
        return [nodes.literal(text=text), nodes.Text(" (not in this build)")], []
    reference = addnodes.pending_xref(
        rawtext, refdomain="std", reftype="doc", reftarget=f"/notebooks/{text}", refexplicit=True, refwarn=True
    )
    reference += nodes.literal(text, text)
    return [reference], []


def _extract_notebook_figure(notebook, heading, target):
    """Write the first PNG that the code cells after the Markdown heading ``heading`` of ``notebook`` output to
    ``target`` (not committed), so that a guide page shows the notebook's own drawing, as the notebook was last
    saved."""
    cells = json.loads((ROOT / "notebooks" / notebook).read_text(encoding="utf-8"))["cells"]
    after_heading = False
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            after_heading = after_heading or heading in source
            continue
        for output in cell.get("outputs", []) if after_heading else []:
            if "image/png" in output.get("data", {}):
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(base64.b64decode(output["data"]["image/png"]))
                return
    raise RuntimeError(f"no figure after the heading {heading!r} in notebooks/{notebook}: update docs/conf.py")


def _reread_index(app, env, added, changed, removed):
    """index.md's contents depend on which pages exist, not on its own text: read it again on every build."""
    return ["index"]


def setup(app):
    app.connect("source-read", _list_further_pages)
    app.connect("env-get-outdated", _reread_index)
    app.connect("missing-reference", _link_public_names)
    app.connect("doctree-read", _mark_number_tables)
    app.add_directive("loss-code", LossCode)
    app.add_role("notebook", _notebook_role)


_copy_notebooks()
_write_api_summary()
# The mining page's picture: notebook 02's drawing of the easy, semi-hard and hard regions of one anchor.
_extract_notebook_figure(
    "02_mining.ipynb", "One anchor, one positive", DOCS / "guide" / "_figures" / "mining_regions.png"
)
