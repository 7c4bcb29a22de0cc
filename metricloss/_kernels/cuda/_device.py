"""What the CUDA family modules share: ``cuda`` itself, the launch geometry (``THREADS``, :func:`_grid2`), every
launch (:func:`_launch`, which tests can record), the stream and allocator the launches and copies use
(:func:`launching_on`), the copies between host and device, and the lists of kernels a family module defines
(:func:`device_kernels`, :func:`host_functions`).
"""

import contextlib
import inspect

import numpy as np

from .._cuda import cuda_module, simulator_enabled

cuda = cuda_module()

# Threads per block of the per-anchor kernels (a power of two: the shared-memory reductions halve it), and the
# side of the elementwise kernels' square blocks. The simulator runs one Python thread per CUDA thread, so there
# the blocks are small, still smaller than the tested batch sizes 17 and 33, so that the strided loops and the
# reductions run as they do on a GPU.
THREADS, _TILE = (8, 4) if simulator_enabled() else (128, 16)

# Every kernel launch goes through _launch; tests set _launch_log to a list to record (kernel name, argument types)
# and compile each recorded signature with cuda.compile_ptx.
_launch_log = None


# The stream kernels are launched on and copies made on: 0, numba's default stream, or within ``launching_on`` the
# stream a GPU input names in its ``__cuda_array_interface__`` (``_gpu.Device``).
_stream = 0


def _launch(kernel, grid, block, *args):
    if _launch_log is not None:
        _launch_log.append((kernel_name(kernel), tuple(_type_string(a) for a in args)))
    kernel[grid, block, _stream](*args)


# What allocates the wrappers' device arrays: numba, or within ``launching_on`` the library a GPU input came from
# (torch's caching allocator, CuPy's pool), so that its memory accounting sees them.
_allocate = None


def _device_array(shape, dtype):
    return cuda.device_array(shape, dtype=dtype) if _allocate is None else _allocate(shape, dtype)


@contextlib.contextmanager
def launching_on(stream, allocate=None):
    """Launch the kernels (and make the copies) of the block on ``stream``; allocate with ``allocate(shape, dtype)``
    (returning a numba device array), if given."""
    global _stream, _allocate
    previous = _stream, _allocate
    _stream, _allocate = stream, allocate
    try:
        yield
    finally:
        _stream, _allocate = previous


def kernel_name(kernel):
    """The Python name of a jitted kernel (on a GPU or in the simulator)."""
    return getattr(kernel, "py_func", getattr(kernel, "fn", None)).__name__


def _type_string(arg):
    """A numba signature string for one launch argument (device arrays are C-contiguous here)."""
    if isinstance(arg, bool | np.bool_):
        return "boolean"
    if isinstance(arg, int | np.integer):
        return "int64"
    if isinstance(arg, float | np.floating):
        return "float64"
    dims = ", ".join([":"] * (arg.ndim - 1) + ["::1"])
    return f"{np.dtype(arg.dtype).name}[{dims}]"


def _grid2(n_rows, n_cols):
    """A launch over the entries of an n_rows × n_cols array, the x index (consecutive threads) along the columns,
    so that the threads of a warp read and write consecutive entries of a row: ``j, i = cuda.grid(2)``."""
    return (max(1, -(-n_cols // _TILE)), max(1, -(-n_rows // _TILE))), (_TILE, _TILE)


def _is_host(a):
    return isinstance(a, np.ndarray)


def _to_device(a):
    """A host array copied to the device; a device array as it is (no copy)."""
    return cuda.to_device(np.ascontiguousarray(a), stream=_stream) if _is_host(a) else a


def _to_host(d_a):
    """A (small) device result copied to a new host array."""
    host = d_a.copy_to_host(stream=_stream)
    if _stream:  # an asynchronous copy (on stream 0 it is synchronous)
        _stream.synchronize()
    return host


def _host_indices(a):
    """Index arrays (class lists, pairs: O(B) or O(pairs), built on the host) as C-contiguous int64."""
    return np.ascontiguousarray(a, dtype=np.int64)


def _indices_to_device(*arrays):
    """Host index arrays (class lists, pairs) on the device as int64, in a tuple."""
    return tuple(_to_device(_host_indices(a)) for a in arrays)


def _floats_to_device(*arrays):
    """Host per-row or per-pair numbers (log-sum-exps, coefficients, slopes) on the device as float64, in a tuple."""
    return tuple(_to_device(np.ascontiguousarray(a, dtype=np.float64)) for a in arrays)


def _store(target, d_result):
    """The device result into the caller's array: copied back to a host array; into a device array on the device
    (nothing to do where the kernels wrote it in place)."""
    if _is_host(target):
        target[...] = _to_host(d_result)
    elif d_result is not target:
        target.copy_to_device(d_result, stream=_stream)


# What @cuda.jit makes (compiling nothing yet): a dispatcher on a GPU, a fake kernel in the simulator.
_KERNEL_TYPE = type(cuda.jit(lambda: None))


def device_kernels(module):
    """The CUDA kernels (``@cuda.jit``) that ``module`` defines, in the order it defines them."""
    return tuple(
        value
        for value in vars(module).values()
        if isinstance(value, _KERNEL_TYPE) and value.__module__ == module.__name__
    )


def host_functions(module):
    """The names of the public host functions (the kernels' wrappers) that ``module`` defines, in its order."""
    return tuple(
        name
        for name, value in vars(module).items()
        if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_")
    )
