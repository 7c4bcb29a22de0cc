"""The kernel packages ``metricloss._kernels.numpy``, ``numba`` and ``cuda`` have the same family modules, and each
family module defines the same public kernels with the same signatures in every backend; the few names that not
every backend defines are listed here, in one place, each with its reason. The CUDA package's lists (``KERNELS``,
``IMPLEMENTED``) are derived from its family modules."""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

BACKENDS = ("numpy", "numba", "cuda")
FAMILIES = ("distances", "triplets", "pairs", "lifted", "quadruplet", "warp")

# Public functions of a family module that not every backend defines: name -> (the backends that do, why). A kernel
# that the CUDA backend lacks goes here too, with ("numpy", "numba"); asking the cuda package for it raises
# NotImplementedError naming it (tests/cuda/test_cuda_backend.py). None today.
NOT_IN_EVERY_BACKEND = {}


def _package(backend):
    if backend == "cuda":
        pytest.importorskip("numba_cuda", reason="the cuda kernels need the numba-cuda package (extra [cuda])")
    return importlib.import_module(f"metricloss._kernels.{backend}")


def _public_functions(module):
    """The public functions (kernels) a module defines, by name: Python functions and Numba dispatchers alike."""
    return {
        name: value
        for name, value in vars(module).items()
        if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
    }


def _signature(function):
    return inspect.signature(getattr(function, "py_func", function))


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_has_the_same_family_modules(backend):
    package = _package(backend)
    modules = {info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_")}
    assert modules == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_defines_the_same_kernels_with_the_same_signatures_in_every_backend(family):
    functions = {
        backend: _public_functions(importlib.import_module(f"{_package(backend).__name__}.{family}"))
        for backend in BACKENDS
    }
    for name in set().union(*functions.values()):
        having = tuple(backend for backend in BACKENDS if name in functions[backend])
        expected = NOT_IN_EVERY_BACKEND[name][0] if name in NOT_IN_EVERY_BACKEND else BACKENDS
        assert having == expected, f"{family}.{name} is defined by {having}; expected {expected}"
        signatures = {backend: _signature(functions[backend][name]) for backend in having}
        assert len(set(signatures.values())) == 1, f"{family}.{name} has different signatures: {signatures}"


def test_the_exceptions_are_each_defined_where_listed():
    """Each name of NOT_IN_EVERY_BACKEND is defined by exactly the backends listed (the list stays true)."""
    packages = {backend: _package(backend) for backend in BACKENDS}
    defined = {
        backend: set().union(*(_public_functions(importlib.import_module(f"{package.__name__}.{f}")) for f in FAMILIES))
        for backend, package in packages.items()
    }
    for name, (having, reason) in NOT_IN_EVERY_BACKEND.items():
        assert reason
        assert tuple(backend for backend in BACKENDS if name in defined[backend]) == having, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_package_exposes_exactly_its_families_kernels(backend):
    package = _package(backend)
    kernels = {}
    for family in FAMILIES:
        kernels.update(_public_functions(importlib.import_module(f"{package.__name__}.{family}")))
    exposed = {name for name in package.__all__ if callable(getattr(package, name))}
    if backend == "cuda":  # besides the kernels: the helpers that tests and the GPU path use
        exposed -= {"kernel_name", "launching_on"}
        assert set(package.IMPLEMENTED) == set(kernels)
    assert exposed == set(kernels)
    for name, function in kernels.items():
        assert getattr(package, name) is function


def test_the_cuda_kernel_list_holds_every_cuda_jit_function_of_the_family_modules():
    """KERNELS is collected from the family modules: it holds one entry per ``@cuda.jit`` in their source."""
    package = _package("cuda")
    directory = Path(package.__file__).parent
    decorated = {
        name
        for family in FAMILIES
        for name in re.findall(r"^@cuda\.jit\ndef (\w+)", (directory / f"{family}.py").read_text(), re.M)
    }
    assert decorated  # the pattern matches the source as it is written
    assert sorted(package.kernel_name(kernel) for kernel in package.KERNELS) == sorted(decorated)


_CLASS_FIELDS = {"ref_class", "anchor_class", "class_order", "class_starts"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernels_take_the_classes_as_one_structure(backend):
    """No public kernel takes the class arrays one by one (the fields of metricloss._kernels.Classes): a kernel that
    reads the classes takes ``classes``, right after its matrix."""
    package = _package(backend)
    taking_classes = []
    for family in FAMILIES:
        for name, function in _public_functions(importlib.import_module(f"{package.__name__}.{family}")).items():
            parameters = list(_signature(function).parameters)
            assert not _CLASS_FIELDS & set(parameters), f"{family}.{name} takes class arrays: {parameters}"
            if "classes" in parameters:
                assert parameters.index("classes") == 1, f"{family}.{name}: {parameters}"
                taking_classes.append(name)
    assert len(taking_classes) == 12, taking_classes  # every kernel that reads the classes
