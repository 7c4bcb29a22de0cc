"""GPU arrays taken in place: the one place that knows the array libraries whose device arrays metricloss reads.

An array exposing ``__cuda_array_interface__`` (a torch CUDA tensor, a CuPy array, a numba device array) is a GPU
array. A loss that takes GPU arrays (see ``docs/cuda.md`` for which) runs its kernels on numba views of their
memory (no copy), computes its GEMMs with the library the input came from (cuBLAS, through ``torch.matmul`` or
``cupy.matmul``; a numba device array borrows torch, else CuPy, for them, viewing the same memory), and returns
its value and gradients as arrays of the input's kind on the input's device. Only O(B) things cross to the host:
the labels (the class lists are built there) and the per-anchor totals and indices the kernels return.

Streams: kernels are launched on the library's current stream (torch's, CuPy's; numba's default stream for numba
arrays), so they are ordered with the library's own work without a synchronisation; the numba views keep the
arrays they view alive (numba holds the owner of the memory it was given).

In Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the simulator's device arrays (``cuda.to_device``) are the
GPU arrays, and their GEMM is NumPy's on the simulated device memory, the simulator's stand-in for cuBLAS; the
rest of the path (kernels on the device arrays, no host copies but the O(B) ones) is the one a GPU runs.
"""

import numpy as np

from ._cuda import cuda_module


def as_numba(a):
    """A numba device array over the GPU array ``a``'s memory (no copy); a numba device array as it is."""
    if not hasattr(a, "__cuda_array_interface__"):  # already a numba device array (the simulator's)
        return a
    if hasattr(a, "detach"):  # a torch tensor that requires grad exports no interface
        a = a.detach()
    # sync=False: the kernels run on the library's current stream, after the work that produced ``a``
    return cuda_module().as_cuda_array(a, sync=False)


def gpu_rows(value, backend, name="embeddings"):
    """A GPU array of rows (embeddings) given as ``name``: its :class:`GpuArrays` and its checked numba view.

    Raises
    ------
    TypeError
        If ``backend`` names a CPU backend (GPU arrays run on the GPU: None or "cuda").
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
    arrays = GpuArrays(value)
    return arrays, _validation.check_gpu_embeddings(arrays, value, name)


def _kind(value):
    """The library of a GPU array: "torch", "cupy", "numba", or "simulator" (the one GPU array without an
    interface: a device array of numba's simulator, see :func:`metricloss._validation.is_gpu_array`)."""
    module = type(value).__module__.split(".")[0]
    if module in ("torch", "cupy"):
        return module
    return "numba" if hasattr(value, "__cuda_array_interface__") else "simulator"


def _gemm_library(kind):
    """The library whose matmul (cuBLAS) a GPU array of ``kind`` uses: its own, or for numba arrays torch, else
    CuPy (both view numba's memory through ``__cuda_array_interface__``)."""
    if kind in ("torch", "cupy", "simulator"):
        return kind
    try:
        import torch

        if torch.cuda.is_available():  # a CPU-only build of torch has no cuBLAS
            return "torch"
    except ImportError:
        pass
    try:
        import cupy  # noqa: F401

        return "cupy"
    except ImportError:
        pass
    raise ImportError(
        "a numba device array's GEMMs run on cuBLAS through torch (a CUDA build) or CuPy, and neither is installed: "
        "pip install torch (or cupy-cuda12x), or pass a torch CUDA tensor or a CuPy array"
    )


class GpuArrays:
    """The few array operations the GPU path needs, done by the library a GPU input came from.

    ``view`` and ``wrap`` convert between that library's arrays and numba device arrays without copying; ``empty``
    allocates with the library's allocator (torch's caching allocator, CuPy's pool); ``matmul`` is the library's
    (cuBLAS); ``stream`` is the numba stream the kernels are launched on, the library's current one.
    """

    def __init__(self, like):
        self.cuda = cuda_module()
        self.kind = _kind(like)
        self.gemm = _gemm_library(self.kind)
        if self.gemm == "torch":
            import torch

            self._lib = torch
            # the input's device; a numba array's GEMMs on the current device, where numba allocated it
            device = like.device if self.kind == "torch" else torch.device("cuda", self.cuda.get_current_device().id)
            self._torch_device = device
            self.stream = self.cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
        elif self.gemm == "cupy":
            import cupy

            self._lib = cupy
            self.stream = self.cuda.external_stream(cupy.cuda.get_current_stream().ptr)
        else:
            self._lib = np
            self.stream = self.cuda.default_stream()

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
        """``view`` (a numba device array) as an array of the input's kind, on its device (no copy): itself, or
        the torch tensor or CuPy array over it (for those inputs the GEMM library is the input's own)."""
        return view if self.kind in ("numba", "simulator") else self._library_array(view)

    def _library_array(self, view):
        """``view`` as an array of the GEMM library (for numba arrays: torch or CuPy over the same memory)."""
        if self.gemm == "simulator":
            return view.copy_to_host()  # the simulator's device memory is host memory: NumPy stands in for cuBLAS
        if self.gemm == "torch":
            return self._lib.as_tensor(view, device=self._torch_device)
        return self._lib.asarray(view)

    def _as_view(self, array):
        if self.gemm == "simulator":
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
        if self.gemm == "simulator":
            return self.cuda.to_device(np.zeros(shape, dtype)) if zeros else self.cuda.device_array(shape, dtype)
        make = self._lib.zeros if zeros else self._lib.empty
        if self.gemm == "torch":  # torch names its dtypes as NumPy does: torch.float32, torch.int64, torch.bool
            return self._as_view(make(shape, dtype=getattr(self._lib, dtype.name), device=self._torch_device))
        return self._as_view(make(shape, dtype=dtype))

    def copy(self, a):
        """A new device array equal to the view ``a``."""
        if self.gemm == "simulator":
            return self.cuda.to_device(a.copy_to_host())
        return self._as_view(self._library_array(a).copy() if self.gemm == "cupy" else self._library_array(a).clone())

    def kernels(self):
        """The CUDA kernel module, each of its functions launching on this library's stream and allocating with
        its allocator."""
        from . import cuda as cuda_kernels

        return _OnStream(cuda_kernels, self.stream, self.empty)

    def matmul(self, a, b, transpose_b=False):
        """a @ b (or a @ bᵀ) for numba views, on cuBLAS through the library: a new device array."""
        left, right = self._library_array(a), self._library_array(b)
        return self._as_view(left @ (right.T if transpose_b else right))

    def largest_magnitude(self, a):
        """max |a| as a Python float (one number to the host)."""
        if a.size == 0:
            return 0.0
        array = self._library_array(a)
        return float(abs(array).max())

    def all_finite(self, a):
        """Whether every entry of the numba view ``a`` is finite (one boolean to the host)."""
        return bool(self._lib.isfinite(self._library_array(a)).all())


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
