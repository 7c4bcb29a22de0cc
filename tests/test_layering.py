"""The layers import only downwards, and no module imports another module's private name (DESIGN.md, "Layout").

Every module of ``metricloss/`` is parsed with ``ast``, nothing imported, so that an import inside a function counts
as much as one at the top. For each import of a ``metricloss`` module this checks that (a) it goes to the same
layer or a lower one (``LAYERS``, top first) and (b) it takes no ``_private`` name (a leading underscore, not a
dunder) from another module, neither by ``from module import _name`` nor as ``module._name`` on an imported
module, unless both modules are in one subpackage of one layer (``losses/``, ``textbook/``, ``_kernels/``,
``adapters/``): a subpackage's modules are one unit, written and reviewed together, and its private names are
shared within it (the losses share the triplet family's helpers). The top-level modules are no such unit.
Importing a private *module* (``from . import _validation``, ``from ._kernels import get_kernels``) is an import of
its public names, checked by (a).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "metricloss"

# Top first. A module belongs to the layer of the longest entry that is it or a package above it ("metricloss"
# itself is only the package's __init__.py).
LAYERS = (
    # What a user imports: the flat namespace, the conformance report (it runs every public loss), the framework
    # adapters (they wrap any loss), the gradient checker (it imports only _validation; conformance may use it).
    ("public", ("metricloss", "metricloss.conformance", "metricloss.adapters", "metricloss.testing")),
    # The losses, and their textbook twins, which share nothing with the fast path but _validation.check_option
    # (test_the_textbook_shares_only_check_option_with_the_fast_path).
    ("losses", ("metricloss.losses", "metricloss.textbook")),
    # Index arrays and scores from distances, on the engine: the miners, the samplers, and the retrieval metrics.
    ("mining", ("metricloss.mining", "metricloss.sampling", "metricloss.metrics")),
    # The engine: a labelled batch in blocks of rows, its triplet selections, nearest-neighbour search.
    ("_batch", ("metricloss._batch", "metricloss._triplets", "metricloss._search")),
    # The public distances and their unchecked core with its VJPs.
    ("distances", ("metricloss.distances", "metricloss._pairwise")),
    ("_kernels", ("metricloss._kernels",)),
    # The array seam, checks, reductions, the configuration and the vocabulary's tables (the array seam names the
    # parameter a wrong guess means), which import nothing of metricloss above them.
    (
        "_validation",
        (
            "metricloss._arrays",
            "metricloss._vocabulary",
            "metricloss._validation",
            "metricloss._reduce",
            "metricloss._config",
            "metricloss._version",
        ),
    ),
)


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(module):
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file()


def _exists(module):
    return _is_package(module) or (PACKAGE.parent / (module.replace(".", "/") + ".py")).is_file()


def _layer(module):
    """(index from the top, name) of a module's layer; None for a module no entry of ``LAYERS`` places."""
    best = None
    for index, (name, entries) in enumerate(LAYERS):
        for entry in entries:
            inside = module == entry or (entry != "metricloss" and module.startswith(entry + "."))
            if inside and (best is None or len(entry) > best[0]):
                best = (len(entry), index, name)
    return None if best is None else best[1:]


def _package_of(module):
    return module if _is_package(module) else module.rpartition(".")[0]


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(module, source):
    """Each metricloss name the module's source takes: (line, imported module, name taken from it or None for the
    module itself). ``from package import submodule`` imports the submodule; ``module._name`` on a module the source
    imported (``from .. import _batch``, ``import metricloss.distances as d``) takes ``_name`` from it."""
    package = _package_of(module)
    tree = ast.parse(source)
    found, bound = [], {}  # bound: local name ↦ the metricloss module it names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "metricloss":
                    found.append((node.lineno, alias.name, None))
                    if alias.asname:
                        bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source_module = ".".join(base + ([node.module] if node.module else []))
            else:
                source_module = node.module or ""
            if source_module.split(".")[0] != "metricloss":
                continue
            for alias in node.names:
                submodule = f"{source_module}.{alias.name}"
                if _exists(submodule):
                    found.append((node.lineno, submodule, None))
                    bound[alias.asname or alias.name] = submodule
                else:
                    found.append((node.lineno, source_module, alias.name))
    for node in ast.walk(tree):
        on_module = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
        if on_module and _is_private(node.attr) and not _exists(f"{bound[node.value.id]}.{node.attr}"):
            found.append((node.lineno, bound[node.value.id], node.attr))
    return found


def _problems(module, source):
    """What the module's source breaks: (a) an import of a layer above it; (b) a private name of another module,
    unless both are in one subpackage of one layer. Each message names the module, line, name and both layers."""
    layer = _layer(module)
    problems = []
    for line, imported, name in _imports(module, source):
        imported_layer = _layer(imported)
        where = f"{module}:{line} imports {imported}{'.' + name if name else ''}"
        layers = f"(layer {layer[1]!r} → layer {imported_layer[1]!r})"
        if imported_layer[0] < layer[0]:
            problems.append(f"{where}: an import upwards {layers}")
        package = _package_of(module)
        same_unit = imported_layer == layer and package != "metricloss" and _package_of(imported) == package
        if name and _is_private(name) and imported != module and not same_unit:
            problems.append(f"{where}: a private name of another module {layers}")
    return problems


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_is_found_and_has_a_layer():
    """A new module is placed in ``LAYERS`` before it lands (and the walk is not empty by accident)."""
    assert {"metricloss", "metricloss._batch", "metricloss.mining", "metricloss.losses.triplet"} <= set(MODULES)
    unplaced = sorted(module for module in MODULES if _layer(module) is None)
    assert not unplaced, f"modules in no layer of LAYERS (place them): {unplaced}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_and_take_no_private_name(module):
    """(a) every import of a metricloss module, at the top or inside a function, goes to the same or a lower layer;
    (b) no private name is taken from another module, except within one subpackage of one layer."""
    problems = _problems(module, MODULES[module].read_text())
    assert not problems, "\n".join(problems)


def test_the_textbook_shares_only_check_option_with_the_fast_path():
    """The textbook twins are the oracle of the fast losses: outside ``metricloss.textbook`` they take nothing of
    metricloss but ``_validation.check_option`` (the closed options' error messages)."""
    shared = {
        (imported, name)
        for module, path in MODULES.items()
        if module.startswith("metricloss.textbook")
        for _, imported, name in _imports(module, path.read_text())
        if not imported.startswith("metricloss.textbook")
    }
    assert shared == {("metricloss._validation", "check_option")}


def test_the_checks_can_fail():
    """An engine module importing a loss inside a function, and taking a private name by ``from`` and by attribute,
    is caught on each line, naming both layers; a loss taking a sibling loss's private name is not."""
    engine = (
        "from . import _validation\n"
        "from ._kernels import get_kernels, _cuda\n"
        "def f():\n"
        "    from .losses.triplet import triplet_loss\n"
        "    return _validation._INT64_MAX, _cuda.require_cuda\n"
        "from .distances import _scale_exponent\n"
    )
    assert _problems("metricloss._batch", engine) == [
        "metricloss._batch:6 imports metricloss.distances._scale_exponent: a private name of another module "
        "(layer '_batch' → layer 'distances')",
        "metricloss._batch:4 imports metricloss.losses.triplet.triplet_loss: an import upwards "
        "(layer '_batch' → layer 'losses')",
        "metricloss._batch:5 imports metricloss._validation._INT64_MAX: a private name of another module "
        "(layer '_batch' → layer '_validation')",
    ]
    assert _problems("metricloss.losses.center", "from .triplet import _triplet_terms\n") == []


# Where an array library other than NumPy may be imported: the framework adapters and the conformance report (they
# run other frameworks' code), and the array seam (array_api_compat, which imports a library only when handed its
# arrays).
ARRAY_LIBRARIES = {
    "torch": ("metricloss.adapters", "metricloss.conformance"),
    "jax": ("metricloss.adapters", "metricloss.conformance"),
    "tensorflow": ("metricloss.adapters", "metricloss.conformance"),
    "cupy": (),
    "array_api_compat": ("metricloss._arrays", "metricloss._kernels._gpu"),
}


def _library_imports(source):
    """(line, top-level module) of each import in ``source`` of an array library, at the top or in a function."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module]
        else:
            continue
        yield from ((node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in ARRAY_LIBRARIES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_array_libraries_are_imported_only_at_the_seam(module):
    """The core imports no array library but NumPy: torch, JAX, TensorFlow and CuPy only in the adapters and the
    conformance report, array_api_compat only in the array seam (metricloss._arrays and the GPU path's arrays)."""
    misplaced = [
        f"{module}:{line} imports {library}"
        for line, library in _library_imports(MODULES[module].read_text())
        if not any(module == allowed or module.startswith(allowed + ".") for allowed in ARRAY_LIBRARIES[library])
    ]
    assert not misplaced
