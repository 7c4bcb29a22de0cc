"""The array seam: arrays of any array library in, arrays of the same library out.

metricloss's public functions take the arrays of every library that implements the Python array API standard —
NumPy, torch tensors, JAX arrays, CuPy arrays, ``array-api-strict``'s — and recognise them as scikit-learn and
SciPy do, through ``array_api_compat.array_namespace``. This module is the one place that does; the rest of
metricloss imports no array library but NumPy.

* **Host arrays** (in CPU memory) are read as NumPy arrays without a copy (DLPack; a torch tensor that requires
  grad is read through ``.detach()``: the loss returns its gradient itself). Everything runs on them — NumPy's GEMMs
  on the same memory, the Numba kernels — and the array results (gradients, matrices, index arrays) come back as
  arrays of the input's library on its device, without a copy where the library can share NumPy's memory (torch).
* **GPU arrays** (``__cuda_array_interface__``: torch CUDA tensors, CuPy arrays, Numba device arrays) stay where
  they are: the losses that run on the GPU take them in place (``docs/cuda.md``), the others refuse them by name.
* **A loss value is a Python float**, whatever the arrays.

The library of a call is that of its arrays that are not NumPy's (NumPy labels beside torch embeddings are fine);
two different ones in one call are refused by name, as are dtypes NumPy has no equivalent of (bfloat16).
"""

import functools
import inspect
import math

import array_api_compat
import numpy as np

from ._vocabulary import unknown_keyword_help


def array_route(function):
    """Decorate a public function of arrays: arrays of any library in (read as NumPy), arrays of that library out
    (see the module docstring). Results are converted through tuples and lists; a returned function (a VJP) is
    wrapped the same way, so that it takes and returns the caller's arrays too. A keyword the function does not
    take but a user may guess (``m=`` for ``margin=``) raises a TypeError naming the right one
    (:mod:`metricloss._vocabulary`)."""
    signature = inspect.signature(function)
    for name, parameter in signature.parameters.items():  # so that a call by keyword is the same call
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise TypeError(f"array_route takes functions of named parameters; {name} is {parameter.kind.description}")

    names, n_parameters = frozenset(signature.parameters), len(signature.parameters)

    @functools.wraps(function)
    def routed(*args, **kwargs):
        if len(args) <= n_parameters and names.issuperset(kwargs) and _all_numpy(args, kwargs.values()):
            return function(*args, **kwargs)  # the common call: NumPy's arrays (or none), every keyword its own
        try:
            given = signature.bind(*args, **kwargs).arguments
        except TypeError:  # a call that does not fit: named help for a word from elsewhere, else Python's error
            help_for_keyword = unknown_keyword_help(function, kwargs)
            if help_for_keyword is not None:
                raise TypeError(help_for_keyword) from None
            return function(*args, **kwargs)
        library = call_library(given)
        if library is None:
            return function(*args, **kwargs)
        return _as_library(function(**{name: _as_host(value, name) for name, value in given.items()}), library)

    return routed


def _all_numpy(*groups):
    """Whether no value of ``groups`` (through tuples and lists) is an array of another library or on a GPU: each
    is a NumPy array or scalar, a Python number, string, bool or None."""
    for group in groups:
        for value in group:
            if isinstance(value, tuple | list):
                if not _all_numpy(value):
                    return False
            elif not isinstance(value, _NUMPY_OR_PLAIN):  # a GPU array is none of these either
                return False
    return True


_NUMPY_OR_PLAIN = (np.ndarray, np.generic, int, float, str, type(None), np.random.Generator)


def call_library(arguments):
    """The array namespace and device of a call's arrays that are not NumPy's, from ``{name: argument}`` (arrays
    inside a tuple or list argument count); None where every array is NumPy's, or where one is a GPU array (see
    the module docstring). TypeError naming the arguments where they come from two libraries."""
    found = {}
    for name, value in arguments.items():
        for item in value if isinstance(value, tuple | list) else (value,):
            if is_gpu_array(item):
                return None
            if _is_foreign_array(item):
                found.setdefault(array_api_compat.array_namespace(item), (name, item))
    if len(found) > 1:
        named = ", ".join(f"{name} ({type(item).__module__}.{type(item).__name__})" for name, item in found.values())
        raise TypeError(f"the arrays of one call must come from one array library (NumPy's beside it): got {named}")
    for namespace, (_, item) in found.items():
        return namespace, array_api_compat.device(item)
    return None


def is_gpu_array(value):
    """Whether ``value`` lives on a GPU: it exposes ``__cuda_array_interface__`` (a torch CUDA tensor, a CuPy array,
    a numba device array) or, in Numba's CUDA simulator, it is one of the simulator's device arrays."""
    try:
        if hasattr(value, "__cuda_array_interface__") and not isinstance(value, np.ndarray):
            return True
    except RuntimeError:  # a torch CUDA tensor that requires grad exports no interface, and says so
        return True
    return type(value).__name__ == "FakeCUDAArray" and type(value).__module__.startswith("numba.cuda.simulator")


def _is_foreign_array(value):
    """An array of a library other than NumPy (a torch tensor, a JAX array, ...)."""
    return array_api_compat.is_array_api_obj(value) and not isinstance(value, np.ndarray | np.generic)


def _as_host(value, name):
    """A host array of another library as a NumPy array over its memory; anything else as it is."""
    if isinstance(value, tuple | list):
        return type(value)(_as_host(item, name) for item in value)
    if not _is_foreign_array(value):
        return value
    if array_api_compat.is_torch_array(value):
        value = value.detach()  # the loss returns its gradient itself; a tensor that requires grad exports nothing
    try:
        return np.from_dlpack(value)
    except (BufferError, TypeError, RuntimeError) as error:
        raise TypeError(
            f"{name} must be an array NumPy can read (float32 or float64 numbers, or integers for labels); got "
            f"{type(value).__name__} of dtype {value.dtype} ({error}): convert it first, e.g. to float32"
        ) from None


def _as_library(result, library):
    """The results of a call in ``library``'s arrays: NumPy arrays converted (through tuples and lists), a function
    wrapped to take and return the library's arrays, anything else (a float, a dict of floats) as it is."""
    namespace, device = library
    if isinstance(result, np.ndarray):
        return namespace.asarray(result, device=device)
    if isinstance(result, tuple | list):
        return type(result)(_as_library(item, library) for item in result)
    if callable(result):

        @functools.wraps(result)
        def in_library(*args):
            return _as_library(result(*(_as_host(arg, "g") for arg in args)), library)

        return in_library
    return result


# --- what the engine asks of any array, wherever it lives ----------------------------------------------------------


def namespace(*arrays):
    """The array API namespace of ``arrays`` (NumPy's, torch's, CuPy's: ``array_api_compat.array_namespace``)."""
    if all(type(array) is np.ndarray for array in arrays):
        return _NUMPY_NAMESPACE
    return array_api_compat.array_namespace(*arrays)


_NUMPY_NAMESPACE = array_api_compat.array_namespace(np.empty(0))


def device_of(array):
    """The device ``array`` lives on, as its library names it (``array_api_compat.device``)."""
    return array_api_compat.device(array)


def numpy_dtype(array):
    """The NumPy dtype of an array of any library (the libraries name their dtypes as NumPy does: torch.float32,
    array_api_strict.float64)."""
    if isinstance(array, np.ndarray):
        return array.dtype
    return np.dtype(str(array.dtype).rpartition(".")[2])


def _on_host(array):
    """A simulated device array's memory as NumPy (Numba's simulator: device memory is host memory); else None."""
    return array.copy_to_host() if is_gpu_array(array) and not hasattr(array, "__cuda_array_interface__") else None


def all_finite(array):
    """Whether every entry of ``array`` is finite, as a Python bool (one reduction where the array lives)."""
    host = _on_host(array)
    if host is not None or isinstance(array, np.ndarray | np.generic | float | int):
        return bool(np.isfinite(array if host is None else host).all())
    xp = namespace(array)
    return bool(xp.all(xp.isfinite(array)))


def largest_magnitude(array):
    """max |entry| of ``array`` as a Python float (0 for an empty array)."""
    host = _on_host(array)
    if host is not None or isinstance(array, np.ndarray | np.generic | float | int):
        return float(np.max(np.abs(array if host is None else host), initial=0))
    if not math.prod(array.shape):
        return 0.0
    xp = namespace(array)
    return float(xp.max(xp.abs(array)))
