"""Every public function's docstring documents its signature, checked by numpydoc's validation: each parameter
documented, under its own name, in the signature's order, with a type; a Returns section; and (except the framework
adapters, whose examples need torch, JAX or TensorFlow) an Examples section, which the doctests then run."""

import importlib
import inspect

import pytest
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from numpydoc.validate import validate  # the [docs] extra, which [test] includes
from sphinx.ext.autosummary import extract_summary

import metricloss

# numpydoc's codes that this project holds every public docstring to (numpydoc.validate.ERROR_MSGS has them all):
CHECKED = {
    "GL08": "no docstring",
    "PR01": "a parameter of the signature is not documented",
    "PR02": "a documented parameter is not in the signature",
    "PR03": "the parameters are documented in another order than the signature's",
    "PR04": "a parameter has no type",
    "RT01": "no Returns section",
    "EX01": "no Examples section",
}
# The public names outside ``metricloss.__all__``: the gradient checker and the framework adapters.
SUBMODULE_NAMES = {
    "metricloss.testing": ("assert_close", "check_grad"),
    "metricloss.adapters.torch": ("wrap", "distributed", "gather_across_ranks"),
    "metricloss.adapters.jax": ("wrap",),
    "metricloss.adapters.tensorflow": ("wrap",),
}
WITHOUT_EXAMPLES = ("metricloss.adapters.",)  # importing a framework in a doctest costs seconds to a minute
# Known gaps, each with the reason; strict: the entry must go when the docstring is fixed.
PENDING = {}  # name → why its docstring is known to fail, while it is being fixed (a strict xfail)


def _public_functions():
    functions = {}
    for name in metricloss.__all__:
        obj = getattr(metricloss, name)
        if inspect.isfunction(obj):
            functions[f"metricloss.{name}"] = obj
    for module, names in SUBMODULE_NAMES.items():
        for name in names:
            functions[f"{module}.{name}"] = getattr(importlib.import_module(module), name)
    return functions


PUBLIC = _public_functions()


def test_the_public_functions_are_found():
    """The list below is not empty by accident: every loss and the checker are in it."""
    assert "metricloss.triplet_loss" in PUBLIC and "metricloss.testing.check_grad" in PUBLIC
    assert sum(name.endswith("_loss") for name in PUBLIC) >= 20


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.xfail(reason=PENDING[n], strict=True)) if n in PENDING else n for n in PUBLIC],
)
def test_docstring_documents_the_signature(name):
    function = PUBLIC[name]
    report = validate(f"{function.__module__}.{function.__qualname__}")
    checked = set(CHECKED) - ({"EX01"} if name.startswith(WITHOUT_EXAMPLES) else set())
    problems = [f"{code} ({CHECKED[code]}): {message}" for code, message in report["errors"] if code in checked]
    assert not problems, "\n".join(problems)


def _textbook_functions():
    from metricloss import textbook

    return {f"metricloss.textbook.{name}": getattr(textbook, name) for name in textbook.__all__}


SUMMARIZED = {**PUBLIC, **_textbook_functions()}


@pytest.mark.parametrize("name", sorted(SUMMARIZED))
def test_summary_is_a_whole_sentence(name):
    """The API page's line for a function is autosummary's first sentence of its docstring: it must end where the
    sentence does, with a full stop, not at a comma or a colon cut by a formula that follows."""
    settings = get_default_settings(Parser)
    summary = extract_summary(inspect.getdoc(SUMMARIZED[name]).splitlines(), settings)
    assert summary.endswith("."), f"{name}'s summary is cut: {summary!r}"
