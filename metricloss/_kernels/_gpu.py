"""GPU arrays taken in place: what the GPU path does with the arrays of the library a GPU input came from.

An array exposing ``__cuda_array_interface__`` (a torch CUDA tensor, a CuPy array) is a GPU array. A loss that
takes GPU arrays (see ``docs/cuda.md`` for which) runs its kernels on numba views of their memory (no copy),
computes its GEMMs and its few reductions with the input's own library through the Python array API
(``array_api_compat.array_namespace``: ``matmul`` is cuBLAS's), and returns its gradients as arrays of the input's
kind on the input's device. Only O(B) things cross to the host: the labels (the class lists are built there), the
per-anchor totals and indices the kernels return, and the value. No array library is imported here.

Streams: kernels are launched on the stream the input's ``__cuda_array_interface__`` names (version 3 of the
interface: the producer's stream, on which its work on the array is ordered; 1 and 2 are CUDA's legacy and
per-thread default streams), so they are ordered with the library's own work without a synchronisation; the numba
views keep the arrays they view alive (numba holds the owner of the memory it was given).

A numba device array has no GEMM of its own: on a GPU it is refused by name (``torch.as_tensor`` or
``cupy.asarray`` view it without a copy). In Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the simulator's
device arrays (``cuda.to_device``) are the GPU arrays, their memory is host memory, and NumPy's namespace stands in
for cuBLAS; the rest of the path (kernels on the device arrays, no host copies but the O(B) ones) is the one a GPU
runs.
"""

import array_api_compat
import numpy as np

from ._cuda import cuda_module


def as_numba(a):
    """A numba device array over the GPU array ``a``'s memory (no copy); a numba device array as it is."""
    if not hasattr(a, "__cuda_array_interface__"):  # already a numba device array (the simulator's)
        return a
    if hasattr(a, "detach"):  # a torch tensor that requires grad exports no interface
        a = a.detach()
    # sync=False: the kernels run on the producer's stream, after the work that produced ``a``
    return cuda_module().as_cuda_array(a, sync=False)


def gpu_rows(value, backend, name="embeddings"):
    """A GPU array of rows (embeddings) given as ``name``: its :class:`GpuArrays` and its checked numba view.

    Raises
    ------
    TypeError
        If ``backend`` names a CPU backend (GPU arrays run on the GPU: None or "cuda"), or ``value`` is a numba
        device array on a GPU (no library of its own for the GEMMs).
    ImportError, RuntimeError
        Without numba-cuda, or without a usable GPU (and no simulator).
    """
    if backend not in (None, "cuda"):
        raise TypeError(
            f"{name} is a GPU array ({type(value).__name__}), which backend={backend!r} (the CPU) does not take: "
            "leave backend at None (or 'cuda') to run on the GPU, or copy it to the host yourself"
        )
    from .. import _validation
    from . import get_kernels

    get_kernels("cuda")  # numba-cuda installed, a GPU (or the simulator) usable: else a clear error
    arrays = GpuArrays(value, name)
    return arrays, _validation.check_gpu_embeddings(arrays, value, name)


def _producer_stream(cuda, value):
    """The numba stream that ``value``'s ``__cuda_array_interface__`` names (numba's default stream where it
    names none)."""
    if hasattr(value, "detach"):  # a torch tensor that requires grad exports no interface
        value = value.detach()
    pointer = value.__cuda_array_interface__.get("stream")
    if pointer is None:
        return cuda.default_stream()
    if pointer in (1, 2):
        return cuda.legacy_default_stream() if pointer == 1 else cuda.per_thread_default_stream()
    return cuda.external_stream(pointer)


class GpuArrays:
    """The few array operations the GPU path needs, done by the library a GPU input came from, through its array
    API namespace.

    ``view`` and ``wrap`` convert between that library's arrays and numba device arrays without copying; ``empty``
    allocates with the library's allocator (torch's caching allocator, CuPy's pool); ``matmul`` is the library's
    (cuBLAS); ``stream`` is the numba stream the kernels are launched on, the input's own (see the module
    docstring).
    """

    def __init__(self, like, name="embeddings"):
        self.cuda = cuda_module()
        self.simulated = not hasattr(like, "__cuda_array_interface__")  # the simulator's device array
        if self.simulated:
            self.xp, self.device = array_api_compat.array_namespace(np.empty(0)), "cpu"
            self.stream = self.cuda.default_stream()
        elif array_api_compat.is_array_api_obj(like):
            self.xp, self.device = array_api_compat.array_namespace(like), array_api_compat.device(like)
            self.stream = _producer_stream(self.cuda, like)
        else:
            raise TypeError(
                f"{name} is a numba device array, which has no GEMM of its own: pass a torch CUDA tensor or a CuPy "
                f"array (torch.as_tensor({name}, device='cuda') or cupy.asarray({name}) view it without a copy)"
            )

    # --- between the input's kind and numba views ------------------------------------------------------------

    def view(self, a):
        """A numba device array over the GPU array ``a``'s memory (no copy)."""
        return as_numba(a)

    def to_host(self, a):
        """The GPU array ``a`` copied to a new NumPy array (for O(B) things: labels)."""
        view = self.view(a)
        host = view.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        return host

    def wrap(self, view):
        """``view`` (a numba device array) as an array of the input's kind, on its device (no copy): itself in the
        simulator, else the library's array over it."""
        return view if self.simulated else self._library_array(view)

    def _library_array(self, view):
        """``view`` as an array of the input's library (in the simulator: NumPy, over a copy of host memory)."""
        if self.simulated:
            return view.copy_to_host()
        return self.xp.asarray(view, device=self.device)

    def _as_view(self, array):
        if self.simulated:
            return self.cuda.to_device(array)
        return self.cuda.as_cuda_array(array, sync=False)

    # --- the library's operations -----------------------------------------------------------------------------

    def empty(self, shape, dtype):
        """A new device array (a numba view of a library allocation) of any NumPy ``dtype``."""
        return self._new(shape, dtype, zeros=False)

    def zeros(self, shape, dtype):
        """A new device array of zeros."""
        return self._new(shape, dtype, zeros=True)

    def _new(self, shape, dtype, zeros):
        dtype = np.dtype(dtype)
        if self.simulated:
            return self.cuda.to_device(np.zeros(shape, dtype)) if zeros else self.cuda.device_array(shape, dtype)
        make = self.xp.zeros if zeros else self.xp.empty
        # the array API names its dtypes as NumPy does: float32, int64, bool
        return self._as_view(make(shape, dtype=getattr(self.xp, dtype.name), device=self.device))

    def copy(self, a):
        """A new device array equal to the view ``a``."""
        if self.simulated:
            return self.cuda.to_device(a.copy_to_host())
        return self._as_view(self.xp.asarray(self._library_array(a), copy=True))

    def kernels(self):
        """The CUDA kernel module, each of its functions launching on this library's stream and allocating with
        its allocator."""
        from . import cuda as cuda_kernels

        return _OnStream(cuda_kernels, self.stream, self.empty)

    def matmul(self, a, b, transpose_b=False):
        """a @ b (or a @ bᵀ) for numba views, on cuBLAS through the library: a new device array."""
        left, right = self._library_array(a), self._library_array(b)
        return self._as_view(self.xp.matmul(left, right.T if transpose_b else right))

    def largest_magnitude(self, a):
        """max |a| as a Python float (one number to the host)."""
        if a.size == 0:
            return 0.0
        return float(self.xp.max(self.xp.abs(self._library_array(a))))

    def all_finite(self, a):
        """Whether every entry of the numba view ``a`` is finite (one boolean to the host)."""
        return bool(self.xp.all(self.xp.isfinite(self._library_array(a))))


class _OnStream:
    """A kernel module whose functions run within ``module.launching_on(stream, allocate)``."""

    def __init__(self, module, stream, allocate):
        self._module, self._stream, self._allocate = module, stream, allocate

    def __getattr__(self, name):
        function = getattr(self._module, name)
        if not callable(function):
            return function

        def on_stream(*args, **kwargs):
            with self._module.launching_on(self._stream, self._allocate):
                return function(*args, **kwargs)

        return on_stream
